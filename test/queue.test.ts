import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import type pg from 'pg';
import { sql } from 'kysely';
import { addJobs, JobQueue } from '../src/events/queue.ts';
import { drainJob } from '../src/features/triggers/delivery-jobs.ts';
import { purgeExpired } from '../src/events/retention.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';

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

const logger = pino({ level: 'silent' });

describe('the job queue', () => {
  it('runs a job added in a committed transaction, and never one whose transaction rolled back', async () => {
    const queue = new JobQueue(cordon.database, logger, { concurrency: 2 });
    const ran: string[] = [];
    const task = `test_${randomUUID().slice(0, 8)}`;
    queue.task(task, async (payload) => void ran.push((payload as { name: string }).name));
    await queue.start();
    try {
      await queue.addNow([{ task, payload: { name: 'committed' } }]);
      await expect(
        cordon.database.outsideWorkspaces(async (transaction) => {
          await queue.add(transaction, [{ task, payload: { name: 'rolled back' } }]);
          throw new Error('roll back');
        }),
      ).rejects.toThrow('roll back');
      await eventually(async () => ran.includes('committed'));
      await new Promise((resolve) => setTimeout(resolve, 300));
      expect(ran).toEqual(['committed']);
    } finally {
      await queue.stop();
    }
  });

  it('frees the jobs of a worker whose heartbeat stopped, and runs them again', async () => {
    const task = `test_${randomUUID().slice(0, 8)}`;
    const dead = `pool-dead-${randomUUID().slice(0, 8)}`;
    await cordon.database.query(sql`select graphile_worker.add_job(${task}::text, '{}'::json)`);
    // A worker that was killed while running the job: it holds the lock, and said it was alive long ago.
    await owner.query(
      `update graphile_worker._private_jobs set locked_by = $1, locked_at = now() where task_id = (select id from graphile_worker._private_tasks where identifier = $2)`,
      [dead, task],
    );
    await owner.query(`insert into worker_heartbeats (pool_id, seen_at) values ($1, now() - interval '1 hour')`, [
      dead,
    ]);
    const queue = new JobQueue(cordon.database, logger, { concurrency: 1, heartbeatMs: 100 });
    let ran = 0;
    queue.task(task, async () => void (ran += 1));
    await queue.start();
    try {
      await eventually(async () => ran === 1, 10_000);
      const { rows } = await owner.query('select count(*)::int as n from worker_heartbeats where pool_id = $1', [dead]);
      expect(rows[0].n).toBe(0);
    } finally {
      await queue.stop();
    }
  });
});

describe('retention', () => {
  const newWorkspace = async () =>
    (
      await cordon
        .admin()
        .post('/v1/workspaces')
        .send({ slug: `retention-${randomUUID().slice(0, 8)}`, name: 'R' })
        .expect(201)
    ).body.id as string;

  it('deletes events older than EVENT_RETENTION_HOURS and keeps the rest', async () => {
    const workspace = await newWorkspace();
    await owner.query(
      `insert into events (workspace_id, id, type, data, actor, at) values
         ($1, gen_random_uuid(), 'test.old', '{}', '{"id":"t","kind":"system"}', now() - interval '73 hours'),
         ($1, gen_random_uuid(), 'test.new', '{}', '{"id":"t","kind":"system"}', now() - interval '71 hours')`,
      [workspace],
    );
    await purgeExpired(cordon.database, logger, { eventHours: 72, deliveryDays: 30, billingEventDays: 36_500 });
    const { rows } = await owner.query('select type from events where workspace_id = $1 order by seq', [workspace]);
    expect(rows.map((row) => row.type)).toEqual(['test.new']);
  });

  it('deletes the ids of Stripe events applied more than BILLING_EVENT_RETENTION_DAYS ago', async () => {
    const workspace = await newWorkspace();
    const old = `evt_old_${randomUUID()}`;
    const recent = `evt_recent_${randomUUID()}`;
    await owner.query(
      `insert into billing_events (event_id, workspace_id, type, received_at) values
         ($2, $1, 'customer.subscription.updated', now() - interval '91 days'),
         ($3, $1, 'customer.subscription.updated', now() - interval '89 days')`,
      [workspace, old, recent],
    );
    const purged = await purgeExpired(cordon.database, logger, {
      eventHours: 36_500 * 24,
      deliveryDays: 36_500,
      billingEventDays: 90,
    });
    expect(purged.billingEvents).toBeGreaterThanOrEqual(1);
    const { rows } = await owner.query('select event_id from billing_events where workspace_id = $1', [workspace]);
    expect(rows.map((row) => row.event_id)).toEqual([recent]);
  });

  it('deletes finished deliveries and function runs older than DELIVERY_RETENTION_DAYS, never a pending delivery', async () => {
    const workspace = await newWorkspace();
    const trigger = randomUUID();
    await owner.query(
      `insert into triggers (workspace_id, id, name, events, action) values ($1, $2, 'kept', '{record_created}', '{}')`,
      [workspace, trigger],
    );
    const delivery = (status: string, days: number) =>
      owner.query(
        `insert into deliveries (workspace_id, id, trigger_id, event_seq, event_type, stream, status, event, created_at)
         values ($1, gen_random_uuid(), $2, 1, 'record_created', $3, $4, '{}', now() - make_interval(days => $5))`,
        [workspace, trigger, `${status} ${days}`, status, days],
      );
    for (const [status, days] of [
      ['delivered', 31],
      ['failed', 31],
      ['discarded', 31],
      ['pending', 31],
      ['delivered', 29],
    ] as const)
      await delivery(status, days);
    for (const days of [31, 29])
      await owner.query(
        `insert into function_runs (workspace_id, id, function_name, function_version, status, duration_ms, started_at)
         values ($1, gen_random_uuid(), $2, 1, 'succeeded', 1, now() - make_interval(days => $3))`,
        [workspace, `run ${days}`, days],
      );
    await purgeExpired(cordon.database, logger, {
      eventHours: 36_500 * 24,
      deliveryDays: 30,
      billingEventDays: 36_500,
    });
    const deliveries = await owner.query('select stream from deliveries where workspace_id = $1 order by stream', [
      workspace,
    ]);
    expect(deliveries.rows.map((row) => row.stream)).toEqual(['delivered 29', 'pending 31']);
    const runs = await owner.query('select function_name from function_runs where workspace_id = $1', [workspace]);
    expect(runs.rows.map((row) => row.function_name)).toEqual(['run 29']);
  });
});

describe("a stream's drain job", () => {
  // Trigger and record ids are unique only within a workspace (an import keeps them): two
  // workspaces' streams of the same ids must each keep a job of their own, never share one.
  it('is keyed by its workspace too', async () => {
    const triggerId = randomUUID();
    const stream = randomUUID();
    const workspaces = [randomUUID(), randomUUID()];
    const later = new Date(Date.now() + 3_600_000);
    for (const workspaceId of workspaces) {
      await cordon.database.outsideWorkspaces((transaction) =>
        addJobs(transaction, [drainJob({ workspaceId, triggerId, stream }, { runAt: later })]),
      );
    }
    try {
      const { rows } = await owner.query<{ key: string; payload: { workspaceId: string } }>(
        'select key, payload from graphile_worker._private_jobs where key like $1 order by id',
        [`%${triggerId}:${stream}`],
      );
      expect(rows.map((row) => row.payload.workspaceId)).toEqual(workspaces);
      expect(new Set(rows.map((row) => row.key)).size).toBe(2);
    } finally {
      await owner.query('select graphile_worker.remove_job(key) from graphile_worker._private_jobs where key like $1', [
        `%${triggerId}:${stream}`,
      ]);
    }
  });
});
