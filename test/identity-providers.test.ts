import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import type pg from 'pg';
import { ownerClient, startTestApp, testDatabase, uniqueSlug, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let publicJwk: JWK;
let privateJwk: JWK;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  publicJwk = { ...(await exportJWK(publicKey)), kid: 'key-1', alg: 'ES256', use: 'sig' };
  privateJwk = { ...(await exportJWK(privateKey)), kid: 'key-1', alg: 'ES256', use: 'sig' };
});
afterAll(async () => {
  await owner.end();
  await cordon.close();
});

interface Workspace {
  id: string;
  slug: string;
}

const createWorkspace = async (): Promise<Workspace> => {
  const response = await cordon
    .admin()
    .post('/v1/workspaces')
    .send({ slug: uniqueSlug('idp'), name: 'Acme' })
    .expect(201);
  return response.body as Workspace;
};

/** Organization ids unique to this run, so the `(issuer, orgId)` constraint never couples tests. */
const uniqueOrg = (prefix = 'org') => uniqueSlug(prefix).replace('-', '_');

const providersPath = (workspace: Workspace | string) =>
  `/v1/workspaces/${typeof workspace === 'string' ? workspace : workspace.slug}/identity-providers`;
const providerPath = (workspace: Workspace | string, id: string) => `${providersPath(workspace)}/${id}`;

const clerkBody = (overrides: Record<string, unknown> = {}) => ({
  name: 'Clerk',
  type: 'clerk',
  issuer: 'https://clerk.example.com',
  jwksUri: 'https://clerk.example.com/.well-known/jwks.json',
  orgId: uniqueOrg(),
  ...overrides,
});

const auth0Body = (overrides: Record<string, unknown> = {}) => ({
  name: 'Auth0',
  type: 'auth0',
  issuer: 'https://acme.eu.auth0.com/',
  jwksUri: 'https://acme.eu.auth0.com/.well-known/jwks.json',
  audiences: ['https://api.acme.com'],
  orgId: uniqueOrg(),
  claims: { roles: 'https://acme.com/roles' },
  ...overrides,
});

const oidcBody = (overrides: Record<string, unknown> = {}) => ({
  name: 'Keycloak',
  type: 'oidc',
  issuer: 'https://login.example.org/realms/acme',
  jwks: { keys: [publicJwk] },
  orgId: uniqueOrg(),
  claims: { orgId: 'tenant.id', roles: 'tenant.roles', email: 'https://example.org/email' },
  ...overrides,
});

const defaults = {
  audiences: [],
  authorizedParties: [],
  algorithms: ['RS256', 'ES256', 'EdDSA'],
  clockToleranceSeconds: 5,
  claims: {},
  roleMap: {},
  roleSource: 'claims',
  allowPendingSessions: false,
};

const createProvider = async (workspace: Workspace, body: Record<string, unknown>) => {
  const response = await cordon.admin().post(providersPath(workspace)).send(body).expect(201);
  return response.body as { id: string; version: number; [field: string]: unknown };
};

const storedRow = async (id: string) => {
  const { rows } = await owner.query(
    'select workspace_id, name, issuer, org_id, algorithms, role_map, claims, version, updated_at from identity_providers where id = $1',
    [id],
  );
  return rows[0] as Record<string, unknown> | undefined;
};

const countProviders = async (workspace: Workspace) => {
  const { rows } = await owner.query('select count(*)::int as count from identity_providers where workspace_id = $1', [
    workspace.id,
  ]);
  return (rows[0] as { count: number }).count;
};

describe('identity provider lifecycle', () => {
  it('creates, lists, gets, replaces and deletes a clerk provider', async () => {
    const workspace = await createWorkspace();
    const body = clerkBody({ orgId: 'org_2abc' });

    const created = await cordon.admin().post(providersPath(workspace)).send(body).expect(201);
    expect(created.body).toEqual({
      ...defaults,
      ...body,
      id: expect.any(String),
      workspaceId: workspace.id,
      jwks: null,
      version: 1,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(created.headers.location).toBe(providerPath(workspace, created.body.id));

    const listed = await cordon.admin().get(providersPath(workspace)).expect(200);
    expect(listed.body).toEqual({ data: [created.body], nextCursor: null });

    const fetched = await cordon.admin().get(created.headers.location!).expect(200);
    expect(fetched.body).toEqual(created.body);

    const replacement = {
      ...body,
      name: 'Clerk production',
      authorizedParties: ['https://app.acme.com'],
      roleMap: { admin: ['admin', 'auditor'] },
    };
    const replaced = await cordon.admin().put(providerPath(workspace, created.body.id)).send(replacement).expect(200);
    expect(replaced.body).toMatchObject({
      ...replacement,
      id: created.body.id,
      version: 2,
      createdAt: created.body.createdAt,
    });
    expect(Date.parse(replaced.body.updatedAt)).toBeGreaterThanOrEqual(Date.parse(created.body.updatedAt));
    expect((await cordon.admin().get(providerPath(workspace, created.body.id)).expect(200)).body).toEqual(
      replaced.body,
    );

    await cordon.admin().delete(providerPath(workspace, created.body.id)).expect(204);
    const gone = await cordon.admin().get(providerPath(workspace, created.body.id)).expect(404);
    expect(gone.body.code).toBe('identity_provider_not_found');
    expect(await storedRow(created.body.id)).toBeUndefined();
    expect((await cordon.admin().get(providersPath(workspace)).expect(200)).body).toEqual({
      data: [],
      nextCursor: null,
    });
  });

  it('creates, replaces and deletes an auth0 provider', async () => {
    const workspace = await createWorkspace();
    const body = auth0Body();
    const created = await createProvider(workspace, body);
    expect(created).toMatchObject({ ...defaults, ...body, jwks: null, version: 1 });

    const replaced = await cordon
      .admin()
      .put(providerPath(workspace, created.id))
      .send({ ...body, audiences: ['https://api.acme.com', 'https://admin.acme.com'] })
      .expect(200);
    expect(replaced.body).toMatchObject({ audiences: ['https://api.acme.com', 'https://admin.acme.com'], version: 2 });

    await cordon.admin().delete(providerPath(workspace, created.id)).expect(204);
    expect((await cordon.admin().delete(providerPath(workspace, created.id)).expect(404)).body.code).toBe(
      'identity_provider_not_found',
    );
  });

  it('creates, replaces and deletes an oidc provider with an inline key set', async () => {
    const workspace = await createWorkspace();
    const body = oidcBody({
      algorithms: ['ES256'],
      clockToleranceSeconds: 0,
      roleSource: 'both',
      roleMap: { owner: 'admin' },
    });
    const created = await createProvider(workspace, body);
    expect(created).toMatchObject({ ...body, jwksUri: null, jwks: { keys: [publicJwk] }, version: 1 });

    const replaced = await cordon
      .admin()
      .put(providerPath(workspace, created.id))
      .send({ ...body, clockToleranceSeconds: 300 })
      .expect(200);
    expect(replaced.body).toMatchObject({ clockToleranceSeconds: 300, version: 2 });

    await cordon.admin().delete(providerPath(workspace, created.id)).expect(204);
    expect((await cordon.admin().get(providerPath(workspace, created.id)).expect(404)).body.code).toBe(
      'identity_provider_not_found',
    );
  });

  it('lists every provider of the workspace in creation order', async () => {
    const workspace = await createWorkspace();
    const first = await createProvider(workspace, clerkBody());
    const second = await createProvider(workspace, auth0Body());
    const third = await createProvider(workspace, oidcBody());
    const listed = await cordon.admin().get(providersPath(workspace)).expect(200);
    expect(listed.body.nextCursor).toBeNull();
    expect(listed.body.data.map((provider: { id: string }) => provider.id)).toEqual([first.id, second.id, third.id]);
  });

  it('addresses the workspace by id as well as by slug', async () => {
    const workspace = await createWorkspace();
    const created = await createProvider(workspace, clerkBody());
    const byId = await cordon.admin().get(providerPath(workspace.id, created.id)).expect(200);
    expect(byId.body).toEqual(created);
  });

  it('resets omitted fields to their defaults on PUT, since it replaces the whole configuration', async () => {
    const workspace = await createWorkspace();
    const minimal = clerkBody();
    const created = await createProvider(workspace, {
      ...minimal,
      clockToleranceSeconds: 60,
      algorithms: ['RS256'],
      roleMap: { admin: 'owner' },
      allowPendingSessions: true,
    });
    expect(created).toMatchObject({ clockToleranceSeconds: 60, algorithms: ['RS256'], allowPendingSessions: true });

    const replaced = await cordon.admin().put(providerPath(workspace, created.id)).send(minimal).expect(200);
    expect(replaced.body).toMatchObject({ ...defaults, version: 2 });
    expect(await storedRow(created.id)).toMatchObject({
      algorithms: ['RS256', 'ES256', 'EdDSA'],
      role_map: {},
      version: 2,
    });
  });

  it('moves the version on with every replacement', async () => {
    const workspace = await createWorkspace();
    const body = clerkBody();
    const created = await createProvider(workspace, body);
    for (const expected of [2, 3, 4]) {
      const replaced = await cordon.admin().put(providerPath(workspace, created.id)).send(body).expect(200);
      expect(replaced.body.version).toBe(expected);
    }
    expect(await storedRow(created.id)).toMatchObject({ version: 4 });
  });

  it('stores the configuration in its typed columns', async () => {
    const workspace = await createWorkspace();
    const body = oidcBody({
      algorithms: ['PS256', 'EdDSA'],
      roleMap: { owner: ['admin', 'auditor'], editor: 'member' },
    });
    const created = await createProvider(workspace, body);
    expect(await storedRow(created.id)).toMatchObject({
      workspace_id: workspace.id,
      name: 'Keycloak',
      issuer: body.issuer,
      org_id: body.orgId,
      algorithms: ['PS256', 'EdDSA'],
      role_map: { owner: ['admin', 'auditor'], editor: 'member' },
      claims: body.claims,
      version: 1,
    });
    const { rows } = await owner.query(
      'select pg_typeof(algorithms)::text as algorithms, pg_typeof(role_map)::text as role_map from identity_providers where id = $1',
      [created.id],
    );
    expect(rows).toEqual([{ algorithms: 'text[]', role_map: 'jsonb' }]);
  });

  it('trims the name', async () => {
    const workspace = await createWorkspace();
    const created = await createProvider(workspace, clerkBody({ name: '  Clerk  ' }));
    expect(created.name).toBe('Clerk');
  });

  it('accepts allowPendingSessions on a clerk provider', async () => {
    const workspace = await createWorkspace();
    const created = await createProvider(workspace, clerkBody({ allowPendingSessions: true }));
    expect(created.allowPendingSessions).toBe(true);
  });

  it('accepts an auth0 provider without a roles claim when roles come from the members table', async () => {
    const workspace = await createWorkspace();
    const created = await createProvider(workspace, auth0Body({ claims: {}, roleSource: 'members' }));
    expect(created).toMatchObject({ roleSource: 'members', claims: {} });
  });

  it.each([
    ['http://127.0.0.1:4000', 'http://127.0.0.1:4000/.well-known/jwks.json'],
    ['http://localhost:4000', 'http://localhost:4000/.well-known/jwks.json'],
    ['http://[::1]:4000', 'http://[::1]:4000/.well-known/jwks.json'],
  ])('accepts a plain http loopback issuer %s outside production', async (issuer, jwksUri) => {
    const workspace = await createWorkspace();
    const created = await createProvider(workspace, clerkBody({ issuer, jwksUri }));
    expect(created).toMatchObject({ issuer, jwksUri });
  });
});

describe('validation', () => {
  let workspace: Workspace;
  beforeAll(async () => {
    workspace = await createWorkspace();
  });

  const expectRefused = async (body: Record<string, unknown>, pointer: string) => {
    const response = await cordon.admin().post(providersPath(workspace)).send(body).expect(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.body.code).toBe('validation_failed');
    expect(response.body.errors).toContainEqual(expect.objectContaining({ pointer, in: 'body' }));
    expect(await countProviders(workspace)).toBe(0);
    return response.body as { errors: { pointer: string; detail: string }[] };
  };

  it.each([
    [['none'], '/algorithms/0'],
    [['HS256'], '/algorithms/0'],
    [['hs512'], '/algorithms/0'],
    [['XX1'], '/algorithms/0'],
    [['RS256', 'HS384'], '/algorithms/1'],
    [[], '/algorithms'],
  ])('refuses algorithms %j with a pointer at %s', async (algorithms, pointer) => {
    await expectRefused(clerkBody({ algorithms }), pointer);
  });

  it('says why none and HMAC algorithms are refused', async () => {
    const refused = await expectRefused(clerkBody({ algorithms: ['HS256'] }), '/algorithms/0');
    expect(refused.errors.find((error) => error.pointer === '/algorithms/0')?.detail).toMatch(/HS256 is refused/);
  });

  it('refuses a plain http issuer that is not loopback', async () => {
    await expectRefused(clerkBody({ issuer: 'http://clerk.example.com' }), '/issuer');
  });

  it('refuses a plain http jwksUri that is not loopback', async () => {
    await expectRefused(clerkBody({ jwksUri: 'http://clerk.example.com/.well-known/jwks.json' }), '/jwksUri');
  });

  it('refuses an issuer with a scheme other than https', async () => {
    await expectRefused(clerkBody({ issuer: 'ftp://clerk.example.com' }), '/issuer');
  });

  // Bug: z.url() does not abort the chain, so the refine's `new URL(value)` throws on a non-URL
  // and safeParse rejects with a TypeError: a 500 instead of a 400 (identity-providers.schema.ts:9).
  it.each([['clerk.example.com'], ['not a url'], ['']])('refuses the issuer %j, which is not a URL', async (issuer) => {
    await expectRefused(clerkBody({ issuer }), '/issuer');
  });

  it('refuses a jwksUri that is not a URL', async () => {
    await expectRefused(clerkBody({ jwksUri: 'jwks.json' }), '/jwksUri');
  });

  it('refuses both jwksUri and jwks', async () => {
    await expectRefused(clerkBody({ jwks: { keys: [publicJwk] } }), '/jwksUri');
  });

  it('refuses neither jwksUri nor jwks', async () => {
    await expectRefused(clerkBody({ jwksUri: undefined }), '/jwksUri');
  });

  it('refuses an inline key carrying private key material', async () => {
    expect(privateJwk.d).toEqual(expect.any(String));
    await expectRefused(oidcBody({ jwks: { keys: [publicJwk, privateJwk] } }), '/jwks/keys/1');
  });

  it('refuses a symmetric oct key in an inline key set', async () => {
    await expectRefused(
      oidcBody({ jwks: { keys: [{ kty: 'oct', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0', alg: 'HS256' }] } }),
      '/jwks/keys/0/kty',
    );
  });

  it('refuses inline keys that cannot verify a token, which would answer every request 503', async () => {
    await expectRefused(
      oidcBody({ jwks: { keys: [publicJwk, { kty: 'RSA', n: 'AQAB', e: 'AQAB' }] } }),
      '/jwks/keys/1',
    );
    await expectRefused(
      oidcBody({ jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'AQAB', y: 'AQAB' }] } }),
      '/jwks/keys/0',
    );
    // Keys meant for something else than verifying, which jose refuses to verify with.
    await expectRefused(
      oidcBody({ jwks: { keys: [{ ...publicJwk, key_ops: ['verify', 'encrypt'] }] } }),
      '/jwks/keys/0/key_ops',
    );
    await expectRefused(oidcBody({ jwks: { keys: [{ ...publicJwk, use: 'enc' }] } }), '/jwks/keys/0/use');
    // jose will not make one this small; node:crypto will.
    const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 1024 });
    await expectRefused(oidcBody({ jwks: { keys: [publicKey.export({ format: 'jwk' })] } }), '/jwks/keys/0');
  });

  it('refuses an empty inline key set', async () => {
    await expectRefused(oidcBody({ jwks: { keys: [] } }), '/jwks/keys');
  });

  it.each([[301], [-1], [2.5], ['5']])('refuses clockToleranceSeconds %j', async (clockToleranceSeconds) => {
    await expectRefused(clerkBody({ clockToleranceSeconds }), '/clockToleranceSeconds');
  });

  it('refuses an auth0 provider without audiences', async () => {
    await expectRefused(auth0Body({ audiences: [] }), '/audiences');
  });

  it('refuses an auth0 provider without a roles claim when roles come from claims', async () => {
    await expectRefused(auth0Body({ claims: {} }), '/claims/roles');
    await expectRefused(auth0Body({ claims: {}, roleSource: 'both' }), '/claims/roles');
  });

  it('refuses an oidc provider without an orgId claim path', async () => {
    await expectRefused(oidcBody({ claims: { roles: 'tenant.roles' } }), '/claims/orgId');
  });

  it('refuses an oidc provider without a roles claim path when roles come from claims', async () => {
    await expectRefused(oidcBody({ claims: { orgId: 'tenant.id' } }), '/claims/roles');
  });

  it.each([
    ['auth0', auth0Body],
    ['oidc', oidcBody],
  ])('refuses allowPendingSessions on a %s provider', async (_type, body) => {
    await expectRefused(body({ allowPendingSessions: true }), '/allowPendingSessions');
  });

  it.each([
    ['type', 'okta'],
    ['roleSource', 'tokens'],
    ['orgId', ''],
    ['name', '   '],
  ])('refuses %s %j', async (field, value) => {
    await expectRefused(clerkBody({ [field]: value }), `/${field}`);
  });

  it('refuses a roleMap entry named __proto__ instead of dropping it', async () => {
    await expectRefused(
      clerkBody({ roleMap: JSON.parse('{"__proto__": "admin", "owner": "admin"}') }),
      '/roleMap/__proto__',
    );
  });

  it('refuses a body without an orgId', async () => {
    await expectRefused(clerkBody({ orgId: undefined }), '/orgId');
  });

  it('refuses unknown fields and server-owned fields', async () => {
    for (const extra of [{ secret: 'x' }, { id: randomUUID() }, { version: 7 }, { workspaceId: randomUUID() }]) {
      const refused = await expectRefused(clerkBody(extra), '');
      expect(refused.errors.find((error) => error.pointer === '')?.detail).toContain(Object.keys(extra)[0]);
    }
  });

  it('refuses unknown claim names', async () => {
    await expectRefused(clerkBody({ claims: { organization: 'org_id' } }), '/claims');
  });

  it('refuses an invalid replacement and leaves the stored provider unchanged', async () => {
    const other = await createWorkspace();
    const created = await createProvider(other, clerkBody());
    const before = await storedRow(created.id);
    const response = await cordon
      .admin()
      .put(providerPath(other, created.id))
      .send(clerkBody({ algorithms: ['none'] }))
      .expect(400);
    expect(response.body.code).toBe('validation_failed');
    expect(await storedRow(created.id)).toEqual(before);
  });
});

describe('uniqueness', () => {
  it('answers 409 identity_provider_taken for an (issuer, orgId) pair another workspace already trusts', async () => {
    const first = await createWorkspace();
    const second = await createWorkspace();
    const body = clerkBody();
    await createProvider(first, body);

    const taken = await cordon.admin().post(providersPath(second)).send(body).expect(409);
    expect(taken.body.code).toBe('identity_provider_taken');
    expect(await countProviders(second)).toBe(0);
  });

  it('answers 409 identity_provider_taken for the same pair twice in one workspace', async () => {
    const workspace = await createWorkspace();
    const body = clerkBody();
    await createProvider(workspace, body);
    const taken = await cordon
      .admin()
      .post(providersPath(workspace))
      .send({ ...body, name: 'Clerk again' })
      .expect(409);
    expect(taken.body.code).toBe('identity_provider_taken');
  });

  it('accepts the same issuer for a different organization in another workspace', async () => {
    const first = await createWorkspace();
    const second = await createWorkspace();
    await createProvider(first, clerkBody());
    await createProvider(second, clerkBody());
    expect(await countProviders(second)).toBe(1);
  });

  it('answers 409 identity_provider_name_taken for a duplicate name in one workspace, not across workspaces', async () => {
    const workspace = await createWorkspace();
    await createProvider(workspace, clerkBody({ name: 'Primary' }));
    const taken = await cordon
      .admin()
      .post(providersPath(workspace))
      .send(auth0Body({ name: ' Primary ' }))
      .expect(409);
    expect(taken.body.code).toBe('identity_provider_name_taken');
    expect(await countProviders(workspace)).toBe(1);

    const other = await createWorkspace();
    await createProvider(other, auth0Body({ name: 'Primary' }));
  });

  it('answers 409 when a replacement takes a pair or a name already in use, and keeps the row', async () => {
    const first = await createWorkspace();
    const second = await createWorkspace();
    const trusted = clerkBody();
    await createProvider(first, trusted);
    await createProvider(second, auth0Body({ name: 'Existing' }));
    const target = await createProvider(second, clerkBody({ name: 'Target' }));
    const before = await storedRow(target.id);

    const pairTaken = await cordon
      .admin()
      .put(providerPath(second, target.id))
      .send({ ...trusted, name: 'Target' })
      .expect(409);
    expect(pairTaken.body.code).toBe('identity_provider_taken');
    const nameTaken = await cordon
      .admin()
      .put(providerPath(second, target.id))
      .send(clerkBody({ name: 'Existing' }))
      .expect(409);
    expect(nameTaken.body.code).toBe('identity_provider_name_taken');
    expect(await storedRow(target.id)).toEqual(before);
  });

  it('frees the pair when its provider is deleted', async () => {
    const first = await createWorkspace();
    const second = await createWorkspace();
    const body = clerkBody();
    const created = await createProvider(first, body);
    await cordon.admin().delete(providerPath(first, created.id)).expect(204);
    await createProvider(second, body);
  });
});

describe('tenant isolation', () => {
  let home: Workspace;
  let stranger: Workspace;
  let provider: { id: string };
  let body: Record<string, unknown>;

  beforeAll(async () => {
    home = await createWorkspace();
    stranger = await createWorkspace();
    body = clerkBody({ name: 'Home' });
    provider = await createProvider(home, body);
  });

  const missingLooksAlike = async (
    request: (id: string) => Promise<{ status: number; body: { code: string; title: string } }>,
  ) => {
    const foreign = await request(provider.id);
    const missing = await request(randomUUID());
    expect(foreign.status).toBe(404);
    expect(foreign.body.code).toBe('identity_provider_not_found');
    expect({ status: foreign.status, code: foreign.body.code, title: foreign.body.title }).toEqual({
      status: missing.status,
      code: missing.body.code,
      title: missing.body.title,
    });
  };

  it('returns 404 for a provider id of another workspace, like a missing one, on GET', async () => {
    await missingLooksAlike((id) => cordon.admin().get(providerPath(stranger, id)));
  });

  it('returns 404 for a provider id of another workspace on PUT, and leaves the row unchanged', async () => {
    const before = await storedRow(provider.id);
    await missingLooksAlike((id) =>
      cordon
        .admin()
        .put(providerPath(stranger, id))
        .send({ ...body, name: 'Hijacked', orgId: uniqueOrg() }),
    );
    expect(await storedRow(provider.id)).toEqual(before);
  });

  it('returns 404 for a provider id of another workspace on DELETE, and keeps the row', async () => {
    const before = await storedRow(provider.id);
    await missingLooksAlike((id) => cordon.admin().delete(providerPath(stranger, id)));
    expect(await storedRow(provider.id)).toEqual(before);
    await cordon.admin().get(providerPath(home, provider.id)).expect(200);
  });

  it("lists only the workspace's own providers", async () => {
    const listed = await cordon.admin().get(providersPath(stranger)).expect(200);
    expect(listed.body).toEqual({ data: [], nextCursor: null });
  });

  it.each([['get'], ['put'], ['delete']] as const)(
    'returns 404 identity_provider_not_found for a malformed id on %s',
    async (method) => {
      const response = await cordon
        .admin()
        [method](providerPath(home, 'not-a-uuid'))
        .send(method === 'put' ? clerkBody() : undefined);
      expect(response.status).toBe(404);
      expect(response.body.code).toBe('identity_provider_not_found');
    },
  );

  it('returns 404 workspace_not_found for an unknown workspace', async () => {
    const response = await cordon.admin().get(providersPath('no-such-workspace')).expect(404);
    expect(response.body.code).toBe('workspace_not_found');
    const created = await cordon.admin().post(providersPath(randomUUID())).send(clerkBody()).expect(404);
    expect(created.body.code).toBe('workspace_not_found');
  });
});

describe('who may manage providers', () => {
  let workspace: Workspace;
  let provider: { id: string };
  beforeAll(async () => {
    workspace = await createWorkspace();
    provider = await createProvider(workspace, clerkBody({ name: 'Guarded' }));
  });

  it('answers 401 token_missing on every route without credentials, and changes nothing', async () => {
    const before = await storedRow(provider.id);
    const responses = [
      await cordon.http().get(providersPath(workspace)),
      await cordon
        .http()
        .post(providersPath(workspace))
        .send(clerkBody({ name: 'Sneaky' })),
      await cordon.http().get(providerPath(workspace, provider.id)),
      await cordon
        .http()
        .put(providerPath(workspace, provider.id))
        .send(clerkBody({ name: 'Changed' })),
      await cordon.http().delete(providerPath(workspace, provider.id)),
    ];
    for (const response of responses) {
      expect(response.status).toBe(401);
      expect(response.body.code).toBe('token_missing');
      expect(response.headers['www-authenticate']).toMatch(/^Bearer /);
    }
    expect(await storedRow(provider.id)).toEqual(before);
    expect(await countProviders(workspace)).toBe(1);
  });

  it('answers 401 for a wrong key (taken for a malformed token) on the mutating routes, and changes nothing', async () => {
    const before = await storedRow(provider.id);
    const wrong = (request: ReturnType<ReturnType<TestApp['http']>['post']>) =>
      request.auth('wrong-key', { type: 'bearer' });
    const responses = [
      await wrong(cordon.http().post(providersPath(workspace))).send(clerkBody({ name: 'Sneaky' })),
      await wrong(cordon.http().put(providerPath(workspace, provider.id))).send(clerkBody({ name: 'Changed' })),
      await wrong(cordon.http().delete(providerPath(workspace, provider.id))),
    ];
    for (const response of responses) {
      expect(response.status).toBe(401);
      expect(response.body.code).toBe('token_malformed');
    }
    expect(await storedRow(provider.id)).toEqual(before);
    expect(await countProviders(workspace)).toBe(1);
  });
});

describe('workspace principals, by policy', () => {
  it('lets a workspace admin manage providers and refuses a member, changing nothing', async () => {
    const issuer = await TestIssuer.start();
    try {
      const tenant = await createTenant(cordon, issuer, 'idp-policy');
      const admin = await tenant.token('user_admin', 'admin');
      const member = await tenant.token('user_member', 'member');
      const path = `/v1/workspaces/${tenant.slug}/identity-providers`;
      const listed = await cordon.http().get(path).auth(admin, { type: 'bearer' }).expect(200);
      const [provider] = listed.body.data;
      // A second organization of the same issuer, bound with proof: a token of that organization.
      const secondOrg = `org_second_${Date.now()}`;
      const body = {
        ...clerkBody({ name: 'second', issuer: issuer.url, jwksUri: issuer.jwksUri }),
        orgId: secondOrg,
        proofToken: await issuer.sign({ v: 2, sub: 'user_admin', o: { id: secondOrg, rol: 'admin' } }),
      };
      const second = await cordon.http().post(path).auth(admin, { type: 'bearer' }).send(body).expect(201);
      expect(second.body).not.toHaveProperty('proofToken');

      const denied = await cordon
        .http()
        .put(`${path}/${provider.id}`)
        .auth(member, { type: 'bearer' })
        .send(clerkBody({ name: 'hijack' }))
        .expect(403);
      expect(denied.body.detail).toBe('members do not administer the workspace');
      await cordon.http().delete(`${path}/${provider.id}`).auth(member, { type: 'bearer' }).expect(403);
      await cordon.http().get(path).auth(member, { type: 'bearer' }).expect(403);
      expect((await storedRow(provider.id))?.name).toBe('clerk');

      const { rows } = await owner.query(
        "select principal_id, action, allowed from decisions where workspace_id = $1 and subject = 'IdentityProvider' order by position",
        [tenant.id],
      );
      expect(rows).toEqual([
        // The platform admin's own change (the tenant's first provider) is in the tenant's log too.
        { principal_id: 'platform-admin', action: 'create', allowed: true },
        { principal_id: 'user_admin', action: 'read', allowed: true },
        { principal_id: 'user_admin', action: 'create', allowed: true },
        { principal_id: 'user_member', action: 'update', allowed: false },
        { principal_id: 'user_member', action: 'delete', allowed: false },
        { principal_id: 'user_member', action: 'read', allowed: false },
      ]);
    } finally {
      await issuer.close();
    }
  });
});

describe('binding an organization takes proof (no squatting)', () => {
  it('refuses a workspace admin without a token of the organization, before revealing whether it is bound', async () => {
    const issuer = await TestIssuer.start();
    try {
      const victim = await createTenant(cordon, issuer, 'idp-victim');
      const squatter = await createTenant(cordon, issuer, 'idp-squatter');
      const squatterAdmin = await squatter.token('user_squatter', 'admin');
      const path = `/v1/workspaces/${squatter.slug}/identity-providers`;
      const bind = (orgId: string, proofToken?: string) =>
        cordon
          .http()
          .post(path)
          .auth(squatterAdmin, { type: 'bearer' })
          .send({
            ...clerkBody({ name: `squat-${orgId}`, issuer: issuer.url, jwksUri: issuer.jwksUri, orgId }),
            ...(proofToken && { proofToken }),
          });
      const unbound = uniqueOrg('org_unclaimed');
      // The victim's org (bound) and an org nobody bound yet answer alike: no proof, no answer.
      for (const orgId of [victim.orgId, unbound]) {
        const refused = await bind(orgId).expect(400);
        expect(refused.body.code).toBe('binding_proof_required');
      }
      // The squatter's own session token proves its own org, not the victim's.
      for (const orgId of [victim.orgId, unbound]) {
        const refused = await bind(orgId, squatterAdmin).expect(400);
        expect(refused.body).toMatchObject({ code: 'binding_proof_invalid' });
        expect(refused.body.detail).toMatch(/^proofToken: /);
      }
      // A token claiming the victim's org but signed by another key (a forged one) proves nothing.
      const forger = await TestIssuer.start();
      try {
        const forged = await forger.sign({
          iss: issuer.url,
          v: 2,
          sub: 'user_x',
          o: { id: victim.orgId, rol: 'admin' },
        });
        expect((await bind(victim.orgId, forged).expect(400)).body.code).toBe('binding_proof_invalid');
      } finally {
        await forger.close();
      }
      // An expired token of the org proves nothing either.
      const stale = await issuer.sign(
        { v: 2, sub: 'user_x', o: { id: unbound, rol: 'admin' } },
        { expiresInSeconds: -600 },
      );
      expect((await bind(unbound, stale).expect(400)).body.code).toBe('binding_proof_invalid');
      const { rows } = await owner.query('select count(*)::int as n from identity_providers where workspace_id = $1', [
        squatter.id,
      ]);
      expect(rows[0].n).toBe(1);

      // With a token of the org, the unbound org binds; the victim's stays the victim's (409 only now).
      const proof = (orgId: string) => issuer.sign({ v: 2, sub: 'user_owner', o: { id: orgId, rol: 'admin' } });
      await bind(unbound, await proof(unbound)).expect(201);
      expect((await bind(victim.orgId, await proof(victim.orgId)).expect(409)).body.code).toBe(
        'identity_provider_taken',
      );
    } finally {
      await issuer.close();
    }
  });

  // The proof's keys must be the issuer's own: a binder naming keys of its own (inline, or at
  // another origin) could otherwise sign a "token of the organization" itself.
  it('checks the proof with the keys the issuer publishes, not with keys the binder names', async () => {
    const issuer = await TestIssuer.start();
    const elsewhere = await TestIssuer.start();
    try {
      const victim = await createTenant(cordon, issuer, 'idp-own-keys-victim');
      const squatter = await createTenant(cordon, elsewhere, 'idp-own-keys-squatter');
      const squatterAdmin = await squatter.token('user_squatter', 'admin');
      const path = `/v1/workspaces/${squatter.slug}/identity-providers`;
      const bind = (body: Record<string, unknown>) =>
        cordon.http().post(path).auth(squatterAdmin, { type: 'bearer' }).send(body);
      const ownKeys = [{ jwksUri: undefined, jwks: elsewhere.jwks }, { jwksUri: elsewhere.jwksUri }];
      const forged = (orgId: string) =>
        issuer.sign({ v: 2, sub: 'user_x', o: { id: orgId, rol: 'admin' } }, { key: elsewhere.keys[0]! });
      const unbound = uniqueOrg('org_unclaimed');
      // Bound or not, the organization is not the binder's: the same refusal, and nothing stored.
      for (const orgId of [victim.orgId, unbound]) {
        for (const keys of ownKeys) {
          const refused = await bind({
            ...clerkBody({ name: `squat-${orgId}`, issuer: issuer.url, orgId, ...keys }),
            proofToken: await forged(orgId),
          }).expect(400);
          expect(refused.body).toMatchObject({ code: 'binding_proof_invalid' });
        }
      }
      const { rows } = await owner.query('select count(*)::int as n from identity_providers where workspace_id = $1', [
        squatter.id,
      ]);
      expect(rows[0].n).toBe(1);

      // Keys named inline that are the issuer's (found through its OpenID discovery document)
      // bind with a real token of the organization; without that document there is nothing to
      // check the proof against.
      const proof = await issuer.sign({ v: 2, sub: 'user_owner', o: { id: unbound, rol: 'admin' } });
      const pinned = { ...clerkBody({ issuer: issuer.url, orgId: unbound, jwksUri: undefined, jwks: issuer.jwks }) };
      issuer.discovery = false;
      const undiscovered = await bind({ ...pinned, proofToken: proof }).expect(400);
      expect(undiscovered.body.code).toBe('binding_proof_invalid');
      expect(undiscovered.body.detail).toMatch(/openid-configuration answered 404/);
      issuer.discovery = true;
      await bind({ ...pinned, proofToken: proof }).expect(201);
    } finally {
      await issuer.close();
      await elsewhere.close();
    }
  });

  it('asks a workspace admin for proof on a replacement too, and the platform admin for none', async () => {
    const issuer = await TestIssuer.start();
    try {
      const tenant = await createTenant(cordon, issuer, 'idp-replace');
      const admin = await tenant.token('user_admin', 'admin');
      const path = `/v1/workspaces/${tenant.slug}/identity-providers`;
      const [provider] = (await cordon.http().get(path).auth(admin, { type: 'bearer' }).expect(200)).body.data;
      const elsewhere = uniqueOrg('org_elsewhere');
      const replacement = clerkBody({ name: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId: elsewhere });
      const refused = await cordon
        .http()
        .put(`${path}/${provider.id}`)
        .auth(admin, { type: 'bearer' })
        .send(replacement)
        .expect(400);
      expect(refused.body.code).toBe('binding_proof_required');
      expect((await storedRow(provider.id))?.org_id).toBe(tenant.orgId);
      await cordon.admin().put(`${path}/${provider.id}`).send(replacement).expect(200);
      expect((await storedRow(provider.id))?.org_id).toBe(elsewhere);
    } finally {
      await issuer.close();
    }
  });
});

describe('in production', () => {
  let production: TestApp;
  beforeAll(async () => {
    production = await startTestApp({
      env: {
        NODE_ENV: 'production',
        ADMIN_API_KEY: 'a'.repeat(32),
        DATABASE_URL: testDatabase.ownerUrl(),
        INVITATION_ACCEPT_URL: 'https://app.example.com/join/{token}',
      },
    });
  });
  afterAll(async () => {
    await production.close();
  });

  it('refuses a plain http loopback issuer and jwksUri', async () => {
    const workspace = await createWorkspace();
    const response = await production
      .admin()
      .post(providersPath(workspace))
      .send(clerkBody({ issuer: 'http://127.0.0.1:4000', jwksUri: 'http://127.0.0.1:4000/.well-known/jwks.json' }))
      .expect(400);
    expect(response.body.errors).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ pointer: '/issuer' }),
        expect.objectContaining({ pointer: '/jwksUri' }),
      ]),
    );
    expect(await countProviders(workspace)).toBe(0);
  });

  it('accepts an https issuer', async () => {
    const workspace = await createWorkspace();
    await production.admin().post(providersPath(workspace)).send(clerkBody()).expect(201);
  });
});
