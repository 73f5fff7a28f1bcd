import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { fillRecords, storedRecords } from './support/stored-records.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Creates far from a records limit skip counting (`LimitHeadroom`, src/features/records/record-limits.ts):
 * within the headroom an instance learned from its last count, a create reads no counts; every
 * record inserted on the platform spends the headroom, another instance's included; at its end
 * the create counts again, and near the limit it counts exactly. On a database of its own: other
 * test files' inserts would spend the headroom at moments this file cannot know.
 */

const plansFile = fileURLToPath(new URL('./fixtures/plans-headroom.json', import.meta.url));
const env = { PLANS_FILE: plansFile };
/** The professional plan's records limits in this file's fixture. */
const limits = { Task: 1500, '*': 2000 };

let cordon: TestApp;
let other: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let margin: number;

beforeAll(async () => {
  cordon = await startTestApp({ env, ownDatabase: true });
  owner = await ownerClient(cordon.ownerUrl);
  // Generic plans from the first execution, as a prepared statement gets after five: the locks
  // must come before the position read in that plan too. The connections open so far are ended
  // (which also makes `cordon` forget its headrooms): the new ones plan generically.
  await owner
    .query(`select format('alter database %I set plan_cache_mode = force_generic_plan', current_database())`)
    .then(({ rows }) => owner.query(rows[0].format));
  await owner.query(
    'select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid()',
  );
  other = await startTestApp({ env, databaseUrl: cordon.appUrl });
  issuer = await TestIssuer.start();
  margin = Number((await owner.query('show max_connections')).rows[0].max_connections);
  expect(limits.Task - 2 * margin).toBeGreaterThan(10);
});

afterAll(async () => {
  // The database is dropped with `cordon`: every connection to it ends first.
  await owner?.end();
  await other?.close();
  await cordon?.close();
  await issuer?.close();
});

async function professionalTenant(): Promise<TestTenant & { admin: string }> {
  const tenant = await createTenant(cordon, issuer, 'headroom', 'professional');
  const admin = await tenant.token('user_admin', 'admin');
  for (const name of ['Task', 'Note'])
    await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/structures`)
      .auth(admin, { type: 'bearer' })
      .send({ name, fields: { title: { type: 'text' } } })
      .expect(201);
  return { ...tenant, admin };
}

const create = (instance: TestApp, tenant: { slug: string; admin: string }, title: string, structure = 'Task') =>
  instance
    .http()
    .post(`/v1/workspaces/${tenant.slug}/records/${structure}`)
    .auth(tenant.admin, { type: 'bearer' })
    .send({ data: { title } });

/** The instance's records-limit checks so far, by the way they were made. */
async function checks(instance: TestApp): Promise<Record<'headroom' | 'counted' | 'exclusive', number>> {
  const text = (await instance.admin().get('/metrics').expect(200)).text;
  const way = (name: string) =>
    Number(new RegExp(`^cordon_record_limit_checks_total\\{way="${name}"\\} (\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { headroom: way('headroom'), counted: way('counted'), exclusive: way('exclusive') };
}

const since = (before: Record<string, number>, after: Record<string, number>) =>
  Object.fromEntries(Object.entries(after).map(([way, value]) => [way, value - before[way]!]));

/** Waits until a create's insert statement waits on a lock (of `locktype`), and returns how many do. */
async function waitingCreates(statement: string, locktype?: string): Promise<number> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const { rows } = await owner.query(
      `select count(*)::int as n from pg_locks l join pg_stat_activity a using (pid)
       where not l.granted and a.datname = current_database() and a.query like $1
         and ($2::text is null or l.locktype = $2::text)`,
      [`%${statement}%`, locktype ?? null],
    );
    if (rows[0].n > 0 || Date.now() > deadline) return rows[0].n;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('records-limit headroom', () => {
  it('skips the count within the headroom of the tighter limit, and counts again once inserts elsewhere spent it', async () => {
    const tenant = await professionalTenant();
    // Three records of headroom under Task's limit (and 503 under "*"): the limit less both
    // margins less what is stored.
    await fillRecords(owner, tenant.id, 'Task', limits.Task - 2 * margin - 3);
    const before = await checks(other);

    await create(other, tenant, 'counted, learns three').expect(201);
    await create(other, tenant, 'within the headroom').expect(201);
    expect(since(before, await checks(other))).toEqual({ headroom: 1, counted: 1, exclusive: 0 });

    // The other instance's insert draws the third position: none is left for this one.
    await create(cordon, tenant, 'elsewhere').expect(201);
    await create(other, tenant, 'headroom spent, so counted').expect(201);
    expect(since(before, await checks(other))).toEqual({ headroom: 2, counted: 2, exclusive: 0 });

    // That count found Task at its limit less both margins: no headroom to learn.
    await create(other, tenant, 'counted again').expect(201);
    expect(since(before, await checks(other))).toEqual({ headroom: 2, counted: 3, exclusive: 0 });
    expect(await storedRecords(owner, tenant.id)).toBe(limits.Task - 2 * margin + 2);
  });

  it('holds the limits’ locks shared: an exact count near the limit waits for a create within its headroom', async () => {
    const tenant = await professionalTenant();
    await create(other, tenant, 'counted, learns the headroom').expect(201);
    const blocker = await ownerClient(cordon.ownerUrl);
    try {
      await blocker.query('begin');
      await blocker.query(`select 1 from structures where workspace_id = $1 and name = 'Task' for no key update`, [
        tenant.id,
      ]);
      // Within its headroom: takes the locks shared, reads the position, then waits for Task's row.
      const withinHeadroom = create(other, tenant, 'stalled within the headroom').then((response) => response);
      expect(await waitingCreates('cordon_insert_record_within_headroom')).toBe(1);
      // Meanwhile every structure's records reach the limit less one.
      await fillRecords(owner, tenant.id, 'Note', limits['*'] - 2);
      const exact = create(cordon, tenant, 'counted exactly', 'Note').then((response) => response);
      expect(await waitingCreates('cordon_insert_record_limited', 'advisory')).toBe(1);
      await blocker.query('commit');
      expect((await withinHeadroom).status).toBe(201);
      const refused = await exact;
      expect(refused.status).toBe(402);
      expect(refused.body).toMatchObject({ code: 'plan_limit_reached' });
    } finally {
      await blocker.end();
    }
    expect(await storedRecords(owner, tenant.id)).toBe(limits['*']);
  });

  it('stops exactly at the limit when creates on two instances race through headroom, count and exclusive count', async () => {
    const tenant = await professionalTenant();
    await fillRecords(owner, tenant.id, 'Task', limits.Task - 2 * margin - 5);
    // Each instance learns a headroom first.
    await create(cordon, tenant, 'learn').expect(201);
    await create(other, tenant, 'learn').expect(201);
    const before = [await checks(cordon), await checks(other)];
    const attempts = 2 * margin + 10;
    const responses = await Promise.all(
      Array.from({ length: attempts }, (_, i) => create(i % 2 ? other : cordon, tenant, `race ${i}`)),
    );
    const statuses = responses.map((response) => response.status);
    expect(statuses.filter((status) => status === 201)).toHaveLength(2 * margin + 3);
    expect(statuses.filter((status) => status === 402)).toHaveLength(7);
    expect(await storedRecords(owner, tenant.id, 'Task')).toBe(limits.Task);
    const ways = [since(before[0]!, await checks(cordon)), since(before[1]!, await checks(other))];
    expect(ways.some((way) => way.headroom! > 0)).toBe(true);
    expect(ways.some((way) => way.counted! > 0)).toBe(true);
    expect(ways.some((way) => way.exclusive! > 0)).toBe(true);
  });
});
