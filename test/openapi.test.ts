import { Ajv2020 } from 'ajv/dist/2020.js';
import { identityProviderBody } from '../src/features/identity-providers/identity-providers.schema.ts';
import { openApiPath } from '../src/http/openapi.ts';
import { startTestApp, type TestApp } from './support/app.ts';

let cordon: TestApp;
beforeAll(async () => {
  cordon = await startTestApp();
});
afterAll(() => cordon.close());

interface Layer {
  route?: { path: string; methods: Record<string, boolean> };
}

/** Reads what Express really mounted, not what our route registry believes it mounted. */
function mountedRoutes(): string[] {
  const stack = (cordon.app as unknown as { router: { stack: Layer[] } }).router.stack;
  return stack.flatMap((layer) =>
    layer.route
      ? Object.keys(layer.route.methods)
          .filter((method) => method !== '_all')
          .map((method) => `${method} ${openApiPath(layer.route!.path)}`)
      : [],
  );
}

describe('GET /openapi.json', () => {
  it('is an OpenAPI 3.1 document that describes every mounted route', async () => {
    const { body } = await cordon.http().get('/openapi.json').expect(200);
    expect(body.openapi).toBe('3.1.0');
    const described = Object.entries(body.paths as Record<string, Record<string, unknown>>).flatMap(
      ([path, operations]) => Object.keys(operations).map((method) => `${method} ${path}`),
    );
    const mounted = mountedRoutes();
    expect(mounted.length).toBeGreaterThan(8);
    expect(described.sort()).toEqual(mounted.sort());
  });

  it('describes request bodies and parameters from the zod schemas', async () => {
    const { body } = await cordon.http().get('/openapi.json').expect(200);
    const create = body.paths['/v1/workspaces'].post;
    expect(create.requestBody.content['application/json'].schema.required).toEqual(
      expect.arrayContaining(['slug', 'name']),
    );
    expect(create.security).toEqual([{ adminKey: [] }]);
    const get = body.paths['/v1/workspaces/{ws}'].get;
    expect(get.parameters).toEqual([expect.objectContaining({ name: 'ws', in: 'path', required: true })]);
  });
});

describe('the what-if route in the document', () => {
  it('describes the draft policies and the window it takes, and the flips it answers', async () => {
    const { body } = await cordon.http().get('/openapi.json').expect(200);
    const whatIf = body.paths['/v1/workspaces/{ws}/policies/what-if'].post;
    expect(whatIf.requestBody.content['application/json'].schema.required).toEqual(
      expect.arrayContaining(['policies', 'from', 'to']),
    );
    const answer = whatIf.responses['200'].content['application/json'].schema;
    expect(Object.keys(answer.properties)).toEqual(
      expect.arrayContaining(['window', 'replayed', 'unchanged', 'flips', 'counts', 'notReplayable', 'samples']),
    );
  });
});

describe('references in the document', () => {
  /** JSON pointer (RFC 6901) lookup from the document's root, as `$ref: '#/…'` means in OpenAPI. */
  const resolve = (document: unknown, ref: string) =>
    ref
      .slice(2)
      .split('/')
      .map((token) => token.replaceAll('~1', '/').replaceAll('~0', '~'))
      .reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], document);

  function refs(node: unknown, found: string[] = []): string[] {
    if (Array.isArray(node)) node.forEach((item) => refs(item, found));
    else if (node && typeof node === 'object')
      for (const [key, value] of Object.entries(node)) {
        if (key === '$ref' && typeof value === 'string') found.push(value);
        else refs(value, found);
      }
    return found;
  }

  it('resolves every $ref from the document root, recursive JSON values included', async () => {
    const { body: document } = await cordon.http().get('/openapi.json').expect(200);
    const all = refs(document);
    expect(all).toContain('#/components/schemas/JsonValue');
    expect(all.filter((ref) => !ref.startsWith('#/') || resolve(document, ref) === undefined)).toEqual([]);
  });
});

describe('the identity-provider body in the document', () => {
  /** Every combination of the fields the cross-field rules read, each otherwise valid. */
  function bodies(): Record<string, unknown>[] {
    const key = { kty: 'OKP', crv: 'Ed25519', x: '11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo', kid: 'k1' };
    const jwksUri = { jwksUri: 'https://issuer.example.com/jwks' };
    const jwks = { jwks: { keys: [key] } };
    const keySources: Record<string, unknown>[] = [{}, jwksUri, jwks, { ...jwksUri, ...jwks }];
    const audiences = [{}, { audiences: [] }, { audiences: ['https://api.example.com'] }];
    const claims = [
      {},
      { claims: {} },
      { claims: { roles: 'roles' } },
      { claims: { orgId: 'org' } },
      { claims: { roles: 'roles', orgId: 'org' } },
    ];
    const roleSources = [{}, { roleSource: 'claims' }, { roleSource: 'members' }, { roleSource: 'both' }];
    const pending = [{}, { allowPendingSessions: false }, { allowPendingSessions: true }];
    const all: Record<string, unknown>[] = [];
    for (const type of ['clerk', 'auth0', 'oidc'])
      for (const keySource of keySources)
        for (const audience of audiences)
          for (const claim of claims)
            for (const roleSource of roleSources)
              for (const allowPending of pending)
                all.push({
                  name: 'provider',
                  type,
                  issuer: 'https://issuer.example.com/',
                  orgId: 'org_1',
                  ...keySource,
                  ...audience,
                  ...claim,
                  ...roleSource,
                  ...allowPending,
                });
    return all;
  }

  it('states the cross-field rules the validator enforces, so a generated client knows them', async () => {
    const { body: document } = await cordon.http().get('/openapi.json').expect(200);
    const path = document.paths['/v1/workspaces/{ws}/identity-providers'];
    const schema = path.post.requestBody.content['application/json'].schema;
    expect(
      document.paths['/v1/workspaces/{ws}/identity-providers/{id}'].put.requestBody.content['application/json'].schema,
    ).toEqual(schema);
    const documented = new Ajv2020({ strict: false, validateFormats: false }).compile(schema);
    const validator = identityProviderBody(false);
    const disagreements = bodies().filter((body) => documented(body) !== validator.safeParse(body).success);
    expect(disagreements).toEqual([]);
    // Not vacuous: these rules alone refuse a body that names no key set, and pass one that names one.
    const minimal = { name: 'p', type: 'clerk', issuer: 'https://i.example.com', orgId: 'o' };
    expect(documented(minimal)).toBe(false);
    expect(documented({ ...minimal, jwksUri: 'https://i.example.com/keys' })).toBe(true);
  });
});
