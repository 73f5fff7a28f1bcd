import type pg from 'pg';
import { ownerClient, startTestApp, uniqueSlug, type TestApp } from './support/app.ts';

let cordon: TestApp;
let owner: pg.Client;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
});
afterAll(async () => {
  await owner.end();
  await cordon.close();
});

const createWorkspace = async (slug = uniqueSlug('ws'), name = 'Acme') => {
  const response = await cordon.admin().post('/v1/workspaces').send({ slug, name }).expect(201);
  return response.body as { id: string; slug: string };
};

describe('workspace lifecycle', () => {
  it('creates, reads by slug and by id, updates and deletes a workspace', async () => {
    const slug = uniqueSlug('life');
    const created = await cordon.admin().post('/v1/workspaces').send({ slug, name: 'Acme Inc' }).expect(201);
    expect(created.body).toMatchObject({
      slug,
      name: 'Acme Inc',
      plan: 'free',
      status: 'active',
      memberCount: 0,
      recordCount: 0,
    });
    expect(created.headers.location).toBe(`/v1/workspaces/${created.body.id}`);

    const bySlug = await cordon.admin().get(`/v1/workspaces/${slug}`).expect(200);
    const byId = await cordon.admin().get(`/v1/workspaces/${created.body.id}`).expect(200);
    expect(bySlug.body).toEqual(byId.body);

    const updated = await cordon
      .admin()
      .patch(`/v1/workspaces/${slug}`)
      .send({ name: 'Acme Corp', status: 'suspended' })
      .expect(200);
    expect(updated.body).toMatchObject({ name: 'Acme Corp', status: 'suspended' });

    await cordon.admin().delete(`/v1/workspaces/${slug}`).expect(204);
    const gone = await cordon.admin().get(`/v1/workspaces/${created.body.id}`).expect(404);
    expect(gone.body.code).toBe('workspace_not_found');
  });

  it('installs the default policies in the same transaction as the workspace', async () => {
    const workspace = await createWorkspace();
    const { rows } = await owner.query('select name, roles from policies where workspace_id = $1 order by name', [
      workspace.id,
    ]);
    expect(rows).toEqual([
      { name: 'admin', roles: ['admin'] },
      { name: 'auditor', roles: ['auditor'] },
      { name: 'member', roles: ['member'] },
      { name: 'viewer', roles: ['viewer'] },
    ]);
  });

  it('delete removes every row the workspace owns and nothing of another workspace', async () => {
    const doomed = await createWorkspace();
    const kept = await createWorkspace();
    for (const id of [doomed.id, kept.id]) {
      await owner.query("insert into members (workspace_id, user_id, roles) values ($1, 'user_1', '{member}')", [id]);
      await owner.query("insert into structures (workspace_id, name) values ($1, 'Task')", [id]);
      await owner.query(
        "insert into records (id, workspace_id, structure, data, created_by) values (gen_random_uuid(), $1, 'Task', '{}', 'user_1')",
        [id],
      );
    }
    const listed = await cordon.admin().get(`/v1/workspaces/${doomed.slug}`).expect(200);
    expect(listed.body).toMatchObject({ memberCount: 1, recordCount: 1 });

    await cordon.admin().delete(`/v1/workspaces/${doomed.slug}`).expect(204);
    for (const table of ['policies', 'members', 'structures', 'records']) {
      const doomedRows = await owner.query(`select count(*)::int as n from ${table} where workspace_id = $1`, [
        doomed.id,
      ]);
      const keptRows = await owner.query(`select count(*)::int as n from ${table} where workspace_id = $1`, [kept.id]);
      expect({ table, n: doomedRows.rows[0].n }).toEqual({ table, n: 0 });
      expect(keptRows.rows[0].n).toBeGreaterThan(0);
    }
  });

  it('returns 404 for a missing slug and for a missing id alike', async () => {
    const bySlug = await cordon.admin().get('/v1/workspaces/no-such-workspace').expect(404);
    const byId = await cordon.admin().get('/v1/workspaces/00000000-0000-7000-8000-000000000000').expect(404);
    expect(bySlug.body.code).toBe(byId.body.code);
    await cordon.admin().patch('/v1/workspaces/no-such-workspace').send({ name: 'x' }).expect(404);
    await cordon.admin().delete('/v1/workspaces/no-such-workspace').expect(404);
  });
});

describe('slugs', () => {
  it.each([
    ['a', 'too short'],
    ['-acme', 'leading dash'],
    ['Acme', 'upper case'],
    ['acme_inc', 'underscore'],
    ['a'.repeat(64), 'too long'],
    ['0192f3a4-1b2c-7d3e-8f40-123456789abc', 'uuid-shaped'],
  ])('refuses %s (%s) with a pointer at /slug', async (slug) => {
    const response = await cordon.admin().post('/v1/workspaces').send({ slug, name: 'x' }).expect(400);
    expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(response.body.code).toBe('validation_failed');
    expect(response.body.errors).toEqual([expect.objectContaining({ pointer: '/slug', in: 'body' })]);
  });

  it('accepts the longest legal slug', async () => {
    const slug = `z${uniqueSlug('').slice(1)}`.padEnd(63, 'x');
    await cordon.admin().post('/v1/workspaces').send({ slug, name: 'Long' }).expect(201);
  });

  it('answers 409 slug_taken for a duplicate slug, on create and on rename', async () => {
    const first = await createWorkspace();
    const duplicate = await cordon.admin().post('/v1/workspaces').send({ slug: first.slug, name: 'Other' }).expect(409);
    expect(duplicate.body.code).toBe('slug_taken');

    const second = await createWorkspace();
    const renamed = await cordon.admin().patch(`/v1/workspaces/${second.slug}`).send({ slug: first.slug }).expect(409);
    expect(renamed.body.code).toBe('slug_taken');
    await cordon.admin().get(`/v1/workspaces/${second.slug}`).expect(200);
  });

  it('refuses unknown fields and server-owned fields in the body', async () => {
    const response = await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug: uniqueSlug('x'), name: 'x', id: 'forged' })
      .expect(400);
    expect(response.body.code).toBe('validation_failed');
  });
});

describe('listing', () => {
  it('pages through every workspace exactly once with an opaque cursor', async () => {
    const mine = new Set<string>();
    for (let index = 0; index < 5; index += 1) mine.add((await createWorkspace()).id);

    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: Record<string, string | number> = cursor ? { limit: 2, cursor } : { limit: 2 };
      const page: { data: { id: string }[]; nextCursor: string | null } = (
        await cordon.admin().get('/v1/workspaces').query(query).expect(200)
      ).body;
      expect(page.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.map((workspace) => workspace.id));
      cursor = page.nextCursor;
    } while (cursor);

    expect(new Set(seen).size).toBe(seen.length);
    for (const id of mine) expect(seen).toContain(id);
  });

  it('carries member and record counts', async () => {
    const workspace = await createWorkspace();
    await owner.query("insert into members (workspace_id, user_id, roles) values ($1, 'a', '{}'), ($1, 'b', '{}')", [
      workspace.id,
    ]);
    type Page = { data: { id: string }[]; nextCursor: string | null };
    let page: Page = (await cordon.admin().get('/v1/workspaces').query({ limit: 200 }).expect(200)).body;
    let found = page.data.find((item) => item.id === workspace.id);
    while (!found && page.nextCursor) {
      page = (await cordon.admin().get('/v1/workspaces').query({ limit: 200, cursor: page.nextCursor })).body;
      found = page.data.find((item: { id: string }) => item.id === workspace.id);
    }
    expect(found).toMatchObject({ memberCount: 2, recordCount: 0 });
  });

  it('counts every workspace on request, across pages, and still ignores unknown parameters', async () => {
    for (let index = 0; index < 3; index += 1) await createWorkspace();
    const stored = async () => (await owner.query('select count(*)::int as count from workspaces')).rows[0].count;
    // Other files create and delete workspaces in the shared database: compare with a count that held still.
    let page: { data: unknown[]; nextCursor: string | null; count: number };
    let before: number;
    do {
      before = await stored();
      page = (await cordon.admin().get('/v1/workspaces').query({ limit: 2, count: true, unknown: 'x' }).expect(200))
        .body;
    } while (before !== (await stored()));
    expect(page.count).toBe(before);
    expect(page.count).toBeGreaterThan(2);
    expect(page.data).toHaveLength(2);
    expect(page.nextCursor).toEqual(expect.any(String));
    expect((await cordon.admin().get('/v1/workspaces').expect(200)).body).not.toHaveProperty('count');
    await cordon.admin().get('/v1/workspaces').query({ count: 'yes' }).expect(400);
  });

  it.each([
    ['not-base64!'],
    [Buffer.from('{"after":"x"}').toString('base64url')],
    [Buffer.from('[]').toString('base64url')],
  ])('answers 400 invalid_cursor for a forged cursor %s', async (cursor) => {
    const response = await cordon.admin().get('/v1/workspaces').query({ cursor }).expect(400);
    expect(response.body.code).toBe('invalid_cursor');
  });

  it('refuses a limit outside 1–200', async () => {
    await cordon.admin().get('/v1/workspaces').query({ limit: 0 }).expect(400);
    await cordon.admin().get('/v1/workspaces').query({ limit: 201 }).expect(400);
  });
});

describe('platform admin key', () => {
  it('answers 401 admin_key_missing with a Bearer challenge when no key is sent', async () => {
    const response = await cordon.http().get('/v1/workspaces').expect(401);
    expect(response.headers['www-authenticate']).toMatch(/^Bearer /);
    expect(response.body).toMatchObject({ status: 401, code: 'admin_key_missing' });
  });

  it('answers 401 admin_key_invalid with error="invalid_token" for a wrong key, and stores nothing', async () => {
    const slug = uniqueSlug('nokey');
    const response = await cordon
      .http()
      .post('/v1/workspaces')
      .auth('wrong-key', { type: 'bearer' })
      .send({ slug, name: 'x' })
      .expect(401);
    expect(response.headers['www-authenticate']).toContain('error="invalid_token"');
    expect(response.body.code).toBe('admin_key_invalid');
    const { rowCount } = await owner.query('select 1 from workspaces where slug = $1', [slug]);
    expect(rowCount).toBe(0);
  });

  it('refuses a wrong key on every mutating route and leaves the row unchanged', async () => {
    const workspace = await createWorkspace(undefined, 'Unchanged');
    await cordon
      .http()
      .patch(`/v1/workspaces/${workspace.slug}`)
      .auth('nope', { type: 'bearer' })
      .send({ name: 'Changed' })
      .expect(401);
    await cordon.http().delete(`/v1/workspaces/${workspace.slug}`).expect(401);
    const { rows } = await owner.query('select name from workspaces where id = $1', [workspace.id]);
    expect(rows).toEqual([{ name: 'Unchanged' }]);
  });
});
