import { randomBytes, randomUUID } from 'node:crypto';
import pg from 'pg';
import { sql } from 'kysely';
import supertest from 'supertest';
import { createApp } from '../src/app.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import type { StoredPolicy } from '../src/policy/ability.ts';
import { InputsWriter, planOf } from '../src/policy/decision-inputs.ts';
import { appendDecisions, type DecisionBatch, type DecisionEntry } from '../src/policy/decision-log.ts';
import { benchServing } from './database.ts';
import { compared, interleaved, measurement, opsPerSecond, type Measurement } from './report.ts';

export const benchDecisionCount = 100_000;
const principals = 500;
const roles = ['member', 'viewer', 'lead', 'member'];
const allow = { allowed: true, policyId: null, policyVersion: null, ruleIndex: null, reason: 'bench' };

const taskFields = {
  title: { type: 'text' },
  status: { type: 'text' },
  priority: { type: 'integer' },
  assignee: { type: 'text' },
  team: { type: 'text' },
};
const leads = {
  name: 'leads',
  roles: ['lead'],
  rules: [
    { action: ['read', 'update'], subject: 'Task', conditions: { team: '${principal.claims.team}' } },
    { action: 'update', subject: 'Task', conditions: { status: 'done' }, inverted: true },
  ],
};

const documentOf = (index: number, status: string) => ({
  title: `Task ${index}`,
  status,
  priority: 1 + (index % 5),
  assignee: `user_${index % 50}`,
  team: ['red', 'blue', 'green'][index % 3],
  id: randomUUID(),
  createdBy: `user_${index % 50}`,
  createdAt: '2026-11-01T10:00:00.000Z',
  updatedAt: '2026-11-01T10:00:00.000Z',
});

/** One logged request's decision: the mix of a record API's traffic (reads, updates, lists, checks, creates). */
function entryOf(index: number): DecisionEntry {
  const kind = index % 20;
  const status = ['todo', 'doing', 'done'][index % 3]!;
  if (kind < 10) {
    const document = documentOf(index, status);
    return {
      action: 'read',
      operation: 'get',
      subject: 'Task',
      resourceId: document.id,
      documents: [document],
      decision: allow,
    };
  }
  if (kind < 14) {
    const before = documentOf(index, status);
    const after = { ...before, status: 'doing', updatedAt: '2026-11-02T10:00:00.000Z' };
    return {
      action: 'update',
      operation: 'update',
      subject: 'Task',
      resourceId: before.id,
      fields: ['status'],
      documents: [before, after],
      decision: allow,
    };
  }
  if (kind < 17) return { action: 'read', operation: 'list', subject: 'Task', decision: allow };
  if (kind < 19)
    return {
      action: 'delete',
      operation: 'check',
      subject: 'Task',
      decision: { ...allow, allowed: false, reason: 'default deny' },
    };
  const created = documentOf(index, 'todo');
  return {
    action: 'create',
    operation: 'create',
    subject: 'Task',
    resourceId: created.id,
    fields: ['title', 'status', 'priority', 'assignee', 'team'],
    documents: [created],
    decision: allow,
  };
}

/**
 * What-if replay over 100k logged decisions of 500 principals (four roles, one of them with a
 * placeholder policy), appended through the decision log's own statement with their inputs. The
 * replay runs over HTTP, drafts = the stored set plus a deny rule and a changed condition. Also:
 * what the inputs cost in bytes per row and in CPU per decision on the write path.
 */
export async function whatIfBench(database: { ownerUrl: string; appUrl: string }): Promise<Measurement[]> {
  const { logger, config, served, changes } = await benchServing(database.appUrl, 5);
  const cordon = createApp({ config, database: served, changes, logger, signingKey: generateSigningKey() });
  const admin = supertest.agent(cordon.app).auth(config.adminApiKey, { type: 'bearer' });
  const slug = `bench-whatif-${randomBytes(3).toString('hex')}`;
  const workspace = (await admin.post('/v1/workspaces').send({ slug, name: 'Bench', plan: 'enterprise' }).expect(201))
    .body as { id: string };
  const base = `/v1/workspaces/${slug}`;
  await admin.post(`${base}/structures`).send({ name: 'Task', fields: taskFields }).expect(201);
  await admin.post(`${base}/policies`).send(leads).expect(201);
  const stored = (await admin.get(`${base}/policies`).expect(200)).body.data as (StoredPolicy & {
    description: string;
  })[];
  const plan = planOf(stored.flatMap((policy) => policy.rules));
  const results: Measurement[] = [];
  try {
    const from = new Date().toISOString();
    const contexts = Array.from({ length: principals }, (_, index) => {
      const principal = {
        id: `user_${index}`,
        roles: [roles[index % roles.length]!],
        provider: 'clerk',
        claims: { team: ['red', 'blue', 'green'][index % 3] },
      };
      return {
        workspaceId: workspace.id,
        requestId: `bench-${index}`,
        principal,
        ip: '127.0.0.1',
        userAgent: 'bench',
        startedAt: process.hrtime.bigint(),
        attributes: { plan, placeholders: { principal, workspaceId: workspace.id } },
      };
    });
    const perStatement = 2_000;
    let tenth = from;
    for (let start = 0; start < benchDecisionCount; start += perStatement) {
      if (start === benchDecisionCount / 10) tenth = new Date().toISOString();
      const batches: DecisionBatch[] = [];
      for (let index = start; index < start + perStatement; index++)
        batches.push({ context: contexts[index % principals]!, entries: [entryOf(index)] });
      await served.inWorkspace(workspace.id, (scope) => sql`with ${scope} ${appendDecisions(batches)}`);
    }
    const to = new Date(Date.now() + 1).toISOString();

    const owner = new pg.Client({ connectionString: database.ownerUrl });
    await owner.connect();
    try {
      await owner.query('vacuum (analyze) decisions');
      const { rows } = await owner.query<{ inputs: string; row: string; plain: string }>(
        `select avg(pg_column_size(d.inputs)) as inputs, avg(pg_column_size(d.*)) as row,
           avg(pg_column_size(d.*) - coalesce(pg_column_size(d.inputs), 0)) as plain
         from decisions d where workspace_id = $1`,
        [workspace.id],
      );
      results.push(
        measurement('decision row, bytes on disk (average)', 'bytes', [Number(rows[0]!.row)]),
        measurement('  of which inputs (documents, placeholder values)', 'bytes', [Number(rows[0]!.inputs)]),
      );
    } finally {
      await owner.end();
    }

    const drafts = [
      ...stored.map(({ id, name, description, roles: draftRoles, rules }) =>
        name === 'leads'
          ? { id, name, description, roles: draftRoles, rules: [{ ...rules[0]!, conditions: { team: 'red' } }] }
          : { id, name, description, roles: draftRoles, rules },
      ),
      {
        name: 'freeze',
        roles: ['member'],
        rules: [{ action: 'update', subject: 'Task', conditions: { status: 'todo' }, inverted: true }],
      },
    ];
    const rates: number[] = [];
    const heap: number[] = [];
    for (let round = 0; round < 3; round++) {
      globalThis.gc?.();
      const before = process.memoryUsage().heapUsed;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 20);
      const started = performance.now();
      const { body } = await admin.post(`${base}/policies/what-if`).send({ policies: drafts, from, to }).expect(200);
      const seconds = (performance.now() - started) / 1000;
      clearInterval(sampler);
      const total = body.replayed + body.notReplayable.count;
      if (total < benchDecisionCount) throw new Error(`what-if saw ${total} of ${benchDecisionCount} decisions`);
      rates.push(total / seconds);
      heap.push((peak - before) / 1024 / 1024);
      if (round === 0 && process.env.BENCH_VERBOSE)
        console.error(JSON.stringify({ ...body, samples: body.samples.length }));
    }
    // The same replay over a tenth of the window: if memory held the window, it would grow tenfold.
    const tenthHeap: number[] = [];
    for (let round = 0; round < 3; round++) {
      globalThis.gc?.();
      const before = process.memoryUsage().heapUsed;
      let peak = before;
      const sampler = setInterval(() => (peak = Math.max(peak, process.memoryUsage().heapUsed)), 20);
      await admin.post(`${base}/policies/what-if`).send({ policies: drafts, from, to: tenth }).expect(200);
      clearInterval(sampler);
      tenthHeap.push((peak - before) / 1024 / 1024);
    }
    results.push(
      measurement(`what-if replay, ${benchDecisionCount / 1000}k logged decisions`, 'decisions/s', rates),
      measurement('  heap growth during one replay (peak)', 'MiB', heap),
      measurement('  the same over a tenth of the window (10k)', 'MiB', tenthHeap),
    );

    // The write path: the log's own statement, 500 decisions of the same mix, with and without
    // their inputs, in another workspace (so the replays above are not disturbed).
    const other = (
      await admin
        .post('/v1/workspaces')
        .send({ slug: `${slug}-w`, name: 'Bench', plan: 'enterprise' })
        .expect(201)
    ).body as { id: string };
    const append = (withInputs: boolean) => async () => {
      const batches: DecisionBatch[] = Array.from({ length: 500 }, (_, index) => {
        const entry = entryOf(index);
        const context = { ...contexts[index % principals]!, workspaceId: other.id };
        return withInputs
          ? { context, entries: [entry] }
          : { context: { ...context, attributes: undefined }, entries: [{ ...entry, documents: undefined }] };
      });
      const started = performance.now();
      await served.inWorkspace(other.id, (scope) => sql`with ${scope} ${appendDecisions(batches)}`);
      return 500 / ((performance.now() - started) / 1000);
    };
    const sides = { subject: append(true), baseline: append(false) };
    await interleaved(2, sides);
    results.push(
      compared(
        'decision append (500 a statement) with inputs',
        'decisions/s',
        await interleaved(20, sides),
        'same decisions without inputs',
      ),
    );

    const entries = Array.from({ length: 64 }, (_, index) => entryOf(index * 7));
    const context = contexts[2]!.attributes;
    // As the log writes them: the principal's part once per request, each decision's documents.
    const writer = new InputsWriter(context.plan, context.placeholders);
    const keep = (iteration: number) => writer.json(entries[((iteration % 64) + 64) % 64]!.documents);
    results.push(
      measurement('inputs kept per decision, in process', 'decisions/s', [
        await opsPerSecond(keep, { millis: 200, warmup: 200 }),
        await opsPerSecond(keep, { millis: 200, warmup: 200 }),
        await opsPerSecond(keep, { millis: 200, warmup: 200 }),
      ]),
    );
  } finally {
    await served.close();
  }
  return results;
}
