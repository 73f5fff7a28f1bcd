import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { matches, parseConditions } from '../src/policy/conditions.ts';
import { startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { documents, queries } from './support/query-arbitraries.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Two tenants holding look-alike records. Whatever tenant A's admin asks for — generated
 * filters, sorts, page sizes, B's ids, B's cursors, forged cursors — A sees exactly its own
 * matching records, counts only them, and B's ids look like missing ones.
 */
let cordon: TestApp;
let issuer: TestIssuer;
const tenants: Record<
  'a' | 'b',
  { tenant: TestTenant; token: string; records: { id: string; document: Record<string, unknown> }[] }
> = {} as never;

type Data = Record<string, unknown>;
const storableDocuments = documents.map((document) =>
  Object.fromEntries(Object.entries(document).filter(([key]) => /^[a-z]+$/.test(key))),
);
const fields = { a: { type: 'json' }, b: { type: 'json' }, c: { type: 'json' }, tags: { type: 'json' } };

const request = (side: 'a' | 'b') => {
  const { tenant, token } = tenants[side];
  return (path: string) => cordon.http().get(`/v1/workspaces/${tenant.slug}${path}`).auth(token, { type: 'bearer' });
};

beforeAll(async () => {
  cordon = await startTestApp();
  issuer = await TestIssuer.start();
  for (const side of ['a', 'b'] as const) {
    const tenant = await createTenant(cordon, issuer, `iso-${side}`);
    const token = await tenant.token(`user_${side}`, 'admin');
    tenants[side] = { tenant, token, records: [] };
    const post = (path: string, body: unknown) =>
      cordon
        .http()
        .post(`/v1/workspaces/${tenant.slug}${path}`)
        .auth(token, { type: 'bearer' })
        .send(body as object);
    await post('/structures', { name: 'Item', fields }).expect(201);
    for (const data of fc.sample(
      storableDocuments.filter((document) => Object.keys(document).length > 0),
      { numRuns: 30, seed: side === 'a' ? 1 : 2 },
    )) {
      const created = (await post('/records/Item', { data }).expect(201)).body;
      tenants[side].records.push({
        id: created.id,
        document: {
          ...created.data,
          id: created.id,
          createdBy: created.createdBy,
          createdAt: created.createdAt,
          updatedAt: created.updatedAt,
        },
      });
    }
  }
});
afterAll(async () => {
  await issuer.close();
  await cordon.close();
});

const sorts = fc.constantFrom(
  undefined,
  'createdAt',
  '-createdAt',
  'a',
  '-b,createdAt',
  'tags,-a',
  'id',
  '-updatedAt,c',
);

it('never shows tenant A a row or a count of tenant B, whatever the filter, sort, page size or cursor', async () => {
  const bIds = new Set(tenants.b.records.map((record) => record.id));
  const bystanderFilter = fc
    .constantFrom(...tenants.b.records.slice(0, 5))
    .map((record) => ({ $or: [{ id: record.id }, { createdBy: 'user_b' }] }));
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        { weight: 4, arbitrary: queries.filter((query) => !JSON.stringify(query).includes('q\\"')) },
        { weight: 1, arbitrary: bystanderFilter },
      ),
      sorts,
      fc.integer({ min: 1, max: 40 }),
      fc.constantFrom('none', 'from-b', 'forged'),
      async (filter: Data, sort, limit, cursorSource) => {
        const query: Record<string, string> = {
          filter: JSON.stringify(filter),
          limit: String(limit),
          count: 'true',
          ...(sort && { sort }),
        };
        const expected = tenants.a.records
          .filter((record) => matches(parseConditions(filter, '').condition!, record.document))
          .map((record) => record.id);
        if (cursorSource !== 'none') {
          const fromB = (
            await request('b')(`/records/Item?${new URLSearchParams({ ...query, limit: '1' })}`).expect(200)
          ).body.nextCursor;
          const cursor =
            cursorSource === 'from-b' && fromB
              ? fromB
              : Buffer.from(JSON.stringify({ q: 'x', k: [randomUUID()] })).toString('base64url');
          const refused = await request('a')(`/records/Item?${new URLSearchParams({ ...query, cursor })}`).expect(400);
          expect(refused.body.code).toBe('invalid_cursor');
        }
        const seen: string[] = [];
        let cursor: string | null = null;
        let pages = 0;
        do {
          const page: Record<string, string> = cursor ? { ...query, cursor } : query;
          const response: { body: { count: number; data: { id: string }[]; nextCursor: string | null } } =
            await request('a')(`/records/Item?${new URLSearchParams(page)}`).expect(200);
          expect(response.body.count).toBe(expected.length);
          seen.push(...response.body.data.map((record: { id: string }) => record.id));
          cursor = response.body.nextCursor;
        } while (cursor && ++pages < 40);
        expect(seen.filter((id) => bIds.has(id))).toEqual([]);
        expect([...seen].sort()).toEqual([...expected].sort());
      },
    ),
    { numRuns: 120 },
  );
}, 120_000);

it('answers B’s record ids in A exactly like ids that do not exist', async () => {
  const shape = (body: Data) => ({
    ...body,
    requestId: undefined,
    detail: String(body.detail).replace(/"[^"]*"/, '"…"'),
  });
  for (const record of tenants.b.records.slice(0, 10)) {
    const foreign = await request('a')(`/records/Item/${record.id}`).expect(404);
    const missing = await request('a')(`/records/Item/${randomUUID()}`).expect(404);
    expect(shape(foreign.body)).toEqual(shape(missing.body));
  }
});
