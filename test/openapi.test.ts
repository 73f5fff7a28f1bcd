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
