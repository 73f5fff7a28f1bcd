import type pg from 'pg';
import { withWorkspace } from '../src/db/scope.ts';
import { ownerClient, startTestApp, uniqueSlug, type TestApp } from './support/app.ts';

let cordon: TestApp;
let owner: pg.Client;
let workspaceA: string;
let workspaceB: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  const create = async () =>
    (
      await cordon
        .admin()
        .post('/v1/workspaces')
        .send({ slug: uniqueSlug('rls'), name: 'RLS' })
        .expect(201)
    ).body.id as string;
  workspaceA = await create();
  workspaceB = await create();
  for (const [id, user] of [
    [workspaceA, 'alice'],
    [workspaceB, 'bob'],
  ]) {
    await owner.query("insert into members (workspace_id, user_id, roles) values ($1, $2, '{admin}')", [id, user]);
    await owner.query("insert into structures (workspace_id, name) values ($1, 'Task')", [id]);
    await owner.query(
      "insert into records (id, workspace_id, structure, data, created_by) values (gen_random_uuid(), $1, 'Task', '{}', $2)",
      [id, user],
    );
  }
});
afterAll(async () => {
  await owner.end();
  await cordon.close();
});

const tenantTables = ['policies', 'members', 'records'];

describe('row-level security for the serving role', () => {
  it.each(tenantTables)('inside workspace A’s scope, a query on %s without WHERE sees only A’s rows', async (table) => {
    const workspaces = await withWorkspace(cordon.orm, workspaceA, (em) =>
      em.execute<{ workspace_id: string }[]>(`select distinct workspace_id from ${table}`),
    );
    expect(workspaces).toEqual([{ workspace_id: workspaceA }]);
  });

  it.each(tenantTables)('outside any scope, %s shows no rows at all', async (table) => {
    const rows = await cordon.orm.em.fork().execute(`select * from ${table}`);
    expect(rows).toEqual([]);
  });

  it('refuses to write a row of workspace B from inside workspace A’s scope', async () => {
    await expect(
      withWorkspace(cordon.orm, workspaceA, (em) =>
        em.execute("insert into members (workspace_id, user_id, roles) values (?, 'mallory', '{admin}')", [workspaceB]),
      ),
    ).rejects.toThrow(/row-level security/);
    const { rowCount } = await owner.query("select 1 from members where user_id = 'mallory'");
    expect(rowCount).toBe(0);
  });

  it('cannot move a row into another workspace, nor update or delete B’s rows from A’s scope', async () => {
    await expect(
      withWorkspace(cordon.orm, workspaceA, (em) =>
        em.execute('update members set workspace_id = ? where user_id = ?', [workspaceB, 'alice']),
      ),
    ).rejects.toThrow(/row-level security/);
    const touched = await withWorkspace(cordon.orm, workspaceA, async (em) => {
      const updated = await em.execute("update members set roles = '{owned}' where user_id = 'bob'", [], 'run');
      const deleted = await em.execute("delete from records where created_by = 'bob'", [], 'run');
      return [updated, deleted].map((result) => (result as unknown as { affectedRows: number }).affectedRows);
    });
    expect(touched).toEqual([0, 0]);
    const { rows } = await owner.query("select roles from members where user_id = 'bob' and workspace_id = $1", [
      workspaceB,
    ]);
    expect(rows).toEqual([{ roles: ['admin'] }]);
  });

  it('does not leak the scope to the next transaction on the same pooled connection', async () => {
    await withWorkspace(cordon.orm, workspaceA, (em) => em.execute('select 1'));
    const rows = await cordon.orm.em.fork().transactional((em) => em.execute('select * from members'));
    expect(rows).toEqual([]);
  });

  it('serves through a role that owns no table, is no superuser and cannot bypass RLS', async () => {
    const [role] = await cordon.orm.em
      .fork()
      .execute<{ rolname: string; rolsuper: boolean; rolbypassrls: boolean }[]>(
        'select rolname, rolsuper, rolbypassrls from pg_roles where rolname = current_user',
      );
    expect(role).toMatchObject({ rolsuper: false, rolbypassrls: false });
    const { rows } = await owner.query(
      "select tablename from pg_tables where schemaname = 'public' and tableowner = $1",
      [role!.rolname],
    );
    expect(rows).toEqual([]);
    await expect(cordon.orm.em.fork().execute('alter table members disable row level security')).rejects.toThrow(
      /owner/,
    );
  });
});
