import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Creates far from a records limit skip counting (`LimitHeadroom`, src/features/records/record-limits.ts):
 * within the headroom an instance learned from its last count, a create reads no counts; every
 * record inserted on the platform spends the headroom, another instance's included; at its end
 * the create counts again, and near the limit it counts exactly. On a database of its own: other
 * test files' inserts would spend the headroom at moments this file cannot know.
 */

const plansFile = fileURLToPath(new URL('./fixtures/plans.json', import.meta.url));
const env = { PLANS_FILE: plansFile };
/** The professional plan's "*" records limit in the fixture (no limit on Task itself). */
const limit = 2000;

let cordon: TestApp;
let other: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let margin: number;

beforeAll(async () => {
  cordon = await startTestApp({ env, ownDatabase: true });
  other = await startTestApp({ env, databaseUrl: cordon.appUrl });
  owner = await ownerClient(cordon.ownerUrl);
  issuer = await TestIssuer.start();
  margin = Number((await owner.query('show max_connections')).rows[0].max_connections);
  expect(limit - 2 * margin).toBeGreaterThan(10);
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
  await cordon
    .http()
    .post(`/v1/workspaces/${tenant.slug}/structures`)
    .auth(admin, { type: 'bearer' })
    .send({ name: 'Task', fields: { title: { type: 'text' } } })
    .expect(201);
  return { ...tenant, admin };
}

async function fill(workspaceId: string, count: number): Promise<void> {
  await owner.query(
    `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
     select gen_random_uuid(), $1, 'Task', jsonb_build_object('title', 'seeded ' || i), 'seed', now(), now()
     from generate_series(1, $2::int) as i`,
    [workspaceId, count],
  );
}

const create = (instance: TestApp, tenant: { slug: string; admin: string }, title: string) =>
  instance
    .http()
    .post(`/v1/workspaces/${tenant.slug}/records/Task`)
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

const recordCount = async (workspaceId: string) =>
  Number((await owner.query('select count(*) from records where workspace_id = $1', [workspaceId])).rows[0].count);

describe('records-limit headroom', () => {
  it('skips the count within the headroom, and counts again once inserts elsewhere spent it', async () => {
    const tenant = await professionalTenant();
    // Three records of headroom: the limit less both margins less what is stored.
    await fill(tenant.id, limit - 2 * margin - 3);
    const before = await checks(cordon);

    await create(cordon, tenant, 'counted, learns three').expect(201);
    await create(cordon, tenant, 'within the headroom').expect(201);
    expect(since(before, await checks(cordon))).toEqual({ headroom: 1, counted: 1, exclusive: 0 });

    // The other instance's insert draws the third position: none is left for this one.
    await create(other, tenant, 'elsewhere').expect(201);
    await create(cordon, tenant, 'headroom spent, so counted').expect(201);
    expect(since(before, await checks(cordon))).toEqual({ headroom: 2, counted: 2, exclusive: 0 });

    // That count found the workspace at the limit less both margins: no headroom to learn.
    await create(cordon, tenant, 'counted again').expect(201);
    expect(since(before, await checks(cordon))).toEqual({ headroom: 2, counted: 3, exclusive: 0 });
    expect(await recordCount(tenant.id)).toBe(limit - 2 * margin + 2);
  });

  it('stops exactly at the limit when creates on two instances race through headroom, count and exclusive count', async () => {
    const tenant = await professionalTenant();
    await fill(tenant.id, limit - 2 * margin - 5);
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
    expect(await recordCount(tenant.id)).toBe(limit);
    const ways = [since(before[0]!, await checks(cordon)), since(before[1]!, await checks(other))];
    expect(ways.some((way) => way.headroom! > 0)).toBe(true);
    expect(ways.some((way) => way.counted! > 0)).toBe(true);
    expect(ways.some((way) => way.exclusive! > 0)).toBe(true);
  });
});
