import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import supertest from 'supertest';
import { createApp } from '../src/app.ts';
import type { StoredEvent } from '../src/events/event-log.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import type { FunctionRunner } from '../src/features/functions/function-runner.ts';
import { benchServing } from './database.ts';
import { measurement, type Measurement } from './report.ts';

/** The seed tutorial's function, verbatim (issue #12). */
const seedCode = `async function run(event, context) {
  const { api } = context;
  if (event.type !== 'record_updated') return;
  const before = event.data.before; const after = event.data.after;
  if (before.assigneeId === after.assigneeId) return;
  if (!after.assigneeId) return;
  const project = await api.getRecord(after.projectId);
  await api.sendNotification({ type: 'email', to: after.assigneeId, template: 'task-assigned',
    data: { taskTitle: after.title, projectName: project.data.name, priority: after.priority } });
  return { notified: after.assigneeId };
}`;

const rounds = 12;

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

/**
 * Per round, p50 and p99 of the runs in a window of `window` ms, one run after another; each
 * figure is the median of the rounds'. Runs go through the delivery task's door
 * (`FunctionAction.run`): the function from its catalog, a warm sandbox thread (a fresh QuickJS
 * runtime per run), its api calls as decisions, the run logged. Each durable commit costs about
 * half a millisecond here: the seed function makes three (its read's decision, the notification
 * with its decision, the run log).
 */
async function latencies(run: () => Promise<void>, window: number): Promise<{ p50: number[]; p99: number[] }> {
  for (let warm = 0; warm < 50; warm += 1) await run();
  const result = { p50: [] as number[], p99: [] as number[] };
  for (let round = 0; round < rounds; round += 1) {
    const times: number[] = [];
    const deadline = performance.now() + window;
    while (performance.now() < deadline) {
      const started = performance.now();
      await run();
      times.push(performance.now() - started);
    }
    times.sort((a, b) => a - b);
    result.p50.push(quantile(times, 0.5));
    result.p99.push(quantile(times, 0.99));
  }
  return result;
}

export async function functionsBench(
  database: { ownerUrl: string; appUrl: string },
  millis: number,
): Promise<Measurement[]> {
  const { logger, config, served, changes } = await benchServing(database.appUrl, 5);
  const cordon = createApp({
    config,
    database: served,
    changes,
    logger,
    signingKey: generateSigningKey(),
  });
  const admin = supertest.agent(cordon.app).auth(config.adminApiKey, { type: 'bearer' });
  const slug = `bench-functions-${randomBytes(3).toString('hex')}`;
  const workspace = (await admin.post('/v1/workspaces').send({ slug, name: 'Bench', plan: 'enterprise' }).expect(201))
    .body as {
    id: string;
  };
  const base = `/v1/workspaces/${slug}`;
  await admin
    .post(`${base}/structures`)
    .send({ name: 'Project', fields: { name: { type: 'text' } } })
    .expect(201);
  await admin
    .post(`${base}/functions`)
    .send({ name: 'notify-assignee', code: seedCode, roles: ['member'], timeoutMs: 5_000 })
    .expect(201);
  await admin
    .post(`${base}/functions`)
    .send({
      name: 'one-call',
      code: 'async function run(event, { api }) { return (await api.getRecord(event.data.after.projectId)).data }',
      roles: ['member'],
    })
    .expect(201);
  await admin
    .post(`${base}/functions`)
    .send({ name: 'no-call', code: 'async function run(event) { return { type: event.type } }', roles: [] })
    .expect(201);
  // The platform admin writes no records: the project goes in as the owner.
  const projectId = randomUUID();
  const owner = new pg.Client({ connectionString: database.ownerUrl });
  await owner.connect();
  await owner.query(
    `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
     values ($1, $2, 'Project', '{"name": "Apollo"}', 'bench', now(), now())`,
    [projectId, workspace.id],
  );
  await owner.end();

  const event = (assigneeId: string): StoredEvent => ({
    workspaceId: workspace.id,
    seq: '1',
    id: randomUUID(),
    type: 'record_updated',
    structure: 'Task',
    recordId: randomUUID(),
    data: {
      before: { title: 'Docs', assigneeId: 'u1', projectId, priority: 'high' },
      after: { title: 'Docs', assigneeId, projectId, priority: 'high' },
    },
    actor: { id: 'user_1', kind: 'user' },
    requestId: null,
    at: new Date().toISOString(),
    depth: 0,
    fireTriggers: true,
  });
  const attempt = (functions: FunctionRunner, name: string) => async () => {
    const outcome = await functions.run(name, {
      workspaceId: workspace.id,
      triggerId: randomUUID(),
      deliveryId: randomUUID(),
      attempt: 1,
      event: event('u2'),
      signal: new AbortController().signal,
    });
    if (!outcome.ok) throw new Error(`the bench's function run failed: ${outcome.error}`);
  };

  try {
    const seed = await latencies(attempt(cordon.functions, 'notify-assignee'), millis / 4);
    const oneCall = await latencies(attempt(cordon.functions, 'one-call'), millis / 4);
    const noCall = await latencies(attempt(cordon.functions, 'no-call'), millis / 4);
    return [
      measurement('function run: seed function, warm (getRecord + sendNotification), p50', 'ms', seed.p50, 'value < 5'),
      measurement('function run: seed function, warm, p99', 'ms', seed.p99),
      measurement('function run: one api call (getRecord), p50', 'ms', oneCall.p50),
      measurement('function run: one api call (getRecord), p99', 'ms', oneCall.p99),
      measurement('function run: no api call (sandbox and run log only), p50', 'ms', noCall.p50),
    ];
  } finally {
    await cordon.functions.close();
    await served.close();
  }
}
