import type pg from 'pg';
import { orderedWalk } from '../src/features/records/record-store.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Lists whose filter names a top-level equality read the first rows in order, then ask the GIN
 * index when those do not fill the page. Both ways must give the same pages: here with more
 * records than the ordered probe reads, so needles lie beyond it and haystacks within it.
 */

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let other: TestTenant;
let token: string;
const total = orderedWalk.probe * 2 + 500;
const statuses = ['todo', 'doing', 'done'];

interface Listed {
  id: string;
  data: { title: string; status: string; n: number };
}

/** Task n, created n seconds after the first: newest first is n descending. */
async function seed(workspaceId: string): Promise<void> {
  await owner.query(
    `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
     select gen_random_uuid(), $1, 'Task',
            jsonb_build_object('title', 'Task ' || i, 'status', (array['todo', 'doing', 'done'])[1 + i % 3], 'n', i),
            'seed', stamp, stamp
     from generate_series(1, $2::int) as i,
          lateral (select timestamptz '2026-01-01' + make_interval(secs => i) as stamp) t`,
    [workspaceId, total],
  );
}

async function all(filter: unknown, limit: number): Promise<Listed[]> {
  const found: Listed[] = [];
  let cursor: string | undefined;
  do {
    const { body } = await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/records/Task`)
      .query({ filter: JSON.stringify(filter), limit, ...(cursor && { cursor }) })
      .auth(token, { type: 'bearer' })
      .expect(200);
    found.push(...body.data);
    cursor = body.nextCursor ?? undefined;
  } while (cursor);
  return found;
}

const newestFirst = (keep: (n: number) => boolean) =>
  Array.from({ length: total }, (_, index) => total - index).filter(keep);

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'needle');
  other = await createTenant(cordon, issuer, 'needle-other');
  token = await tenant.token('user_admin', 'admin');
  for (const workspace of [tenant, other]) {
    await cordon
      .http()
      .post(`/v1/workspaces/${workspace.slug}/structures`)
      .auth(await workspace.token('user_admin', 'admin'), { type: 'bearer' })
      .send({ name: 'Task', fields: { title: { type: 'text' }, status: { type: 'text' }, n: { type: 'integer' } } })
      .expect(201);
    await seed(workspace.id);
  }
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

describe('a list filtered by top-level equality', () => {
  it('finds a needle older than the rows the ordered probe reads, and only in its own workspace', async () => {
    const found = await all({ title: 'Task 7' }, 50);
    expect(found.map((record) => record.data.n)).toEqual([7]);
  });

  it('finds $in values on both sides of the probe, newest first, page by page', async () => {
    const wanted = [3, total - 2, 1200, 9];
    const found = await all({ title: { $in: wanted.map((n) => `Task ${n}`) } }, 1);
    expect(found.map((record) => record.data.n)).toEqual([...wanted].sort((a, b) => b - a));
  });

  it('pages through a haystack exactly as the ordered walk does', async () => {
    const found = await all({ status: 'done' }, 97);
    expect(found.map((record) => record.data.n)).toEqual(newestFirst((n) => statuses[n % 3] === 'done'));
  });

  it('keeps the other conditions beside the equality', async () => {
    const found = await all({ status: 'todo', n: { $lt: 40 }, title: { $ne: 'Task 9' } }, 5);
    expect(found.map((record) => record.data.n)).toEqual(newestFirst((n) => n < 40 && n % 3 === 0 && n !== 9));
  });
});
