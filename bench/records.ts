import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { pino } from 'pino';
import supertest from 'supertest';
import { createApp, entities } from '../src/app.ts';
import { parseConfig } from '../src/config.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { Database } from '../src/db/database.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { TestIssuer } from '../test/support/issuer.ts';
import { baselineRecordsApp } from './baseline-records.ts';
import { load, serve, type LoadResult } from './load.ts';
import { measurement, type Measurement } from './report.ts';

export const benchRecordCount = 100_000;

/** Fills a workspace's Task structure with generated records, straight through SQL (as the owner). */
export async function seedTasks(ownerUrl: string, workspaceId: string, count = benchRecordCount): Promise<void> {
  const client = new pg.Client({ connectionString: ownerUrl });
  await client.connect();
  try {
    await client.query(
      `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
       select gen_random_uuid(), $1, 'Task',
              jsonb_build_object('title', 'Task ' || i, 'status', (array['todo', 'doing', 'done'])[1 + i % 3],
                                 'priority', 1 + i % 5, 'assignee', 'user_' || (i % 50)),
              'user_' || (i % 50), stamp, stamp
       from generate_series(1, $2::int) as i,
            lateral (select date_trunc('milliseconds', now() - make_interval(secs => $2::int - i)) as stamp) t`,
      [workspaceId, count],
    );
    await client.query('analyze records');
  } finally {
    await client.end();
  }
}

const taskFields = {
  title: { type: 'text', required: true },
  status: { type: 'text', enum: ['todo', 'doing', 'done'] },
  priority: { type: 'integer', min: 1, max: 5 },
  assignee: { type: 'text' },
};

/**
 * Loopback load on three shapes — a list of 50 from 100k records, a single-record read, a create —
 * each with a real token, against the hand-rolled Express + CASL + pg baseline in the same run.
 */
export async function recordsBench(
  database: { ownerUrl: string; appUrl: string },
  seconds: number,
): Promise<Measurement[]> {
  const logger = pino({ level: 'silent' });
  const config = { ...parseConfig({ NODE_ENV: 'test' }), adminApiKey: randomBytes(32).toString('hex') };
  const served = await Database.open({ url: database.appUrl, poolSize: 5, entities }, logger);
  const changes = new ChangeBus(undefined, logger);
  const issuer = await TestIssuer.start('ES256');
  const cordon = createApp({ config, database: served, changes, logger, signingKey: generateSigningKey() });
  const admin = supertest.agent(cordon.app).auth(config.adminApiKey, { type: 'bearer' });
  const slug = `bench-records-${randomBytes(3).toString('hex')}`;
  const workspace = (await admin.post('/v1/workspaces').send({ slug, name: 'Bench' }).expect(201)).body as {
    id: string;
  };
  await admin
    .post(`/v1/workspaces/${slug}/identity-providers`)
    .send({ name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId: 'org_bench_records' })
    .expect(201);
  await admin.post(`/v1/workspaces/${slug}/structures`).send({ name: 'Task', fields: taskFields }).expect(201);
  await seedTasks(database.ownerUrl, workspace.id);
  const baseline = baselineRecordsApp({
    databaseUrl: database.ownerUrl,
    issuer: issuer.url,
    jwksUri: issuer.jwksUri,
    workspaceId: workspace.id,
  });
  const token = await issuer.sign(
    { v: 2, sub: 'user_1', o: { id: 'org_bench_records', rol: 'member' } },
    { expiresInSeconds: 3600 },
  );
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const someTask = (
    await supertest(cordon.app).get(`/v1/workspaces/${slug}/records/Task?limit=1`).set(headers).expect(200)
  ).body.data[0].id as string;
  const body = JSON.stringify({ data: { title: 'Benchmarked', status: 'todo', priority: 3, assignee: 'user_1' } });

  const shapes: { name: string; cordonPath: string; baselinePath: string; method: 'GET' | 'POST' }[] = [
    {
      name: 'list 50 of 100k records',
      cordonPath: `/v1/workspaces/${slug}/records/Task?limit=50`,
      baselinePath: '/records/Task?limit=50',
      method: 'GET',
    },
    {
      name: 'read one record',
      cordonPath: `/v1/workspaces/${slug}/records/Task/${someTask}`,
      baselinePath: `/records/Task/${someTask}`,
      method: 'GET',
    },
    {
      name: 'create a record',
      cordonPath: `/v1/workspaces/${slug}/records/Task`,
      baselinePath: '/records/Task',
      method: 'POST',
    },
  ];
  const results: Measurement[] = [];
  const run = (app: typeof cordon.app, path: string, method: 'GET' | 'POST') =>
    serve(app, (url) =>
      load({ url: url + path, method, headers, ...(method === 'POST' ? { body } : {}), connections: 64, seconds }),
    );
  const failures = (result: LoadResult) => result.errors + result.non2xx;
  try {
    for (const shape of shapes) {
      // Interleaved, best of two rounds each: noise on this shared machine should not land on one side only.
      const rounds: { cordon: LoadResult; baseline: LoadResult }[] = [];
      for (let round = 0; round < 2; round++) {
        rounds.push({
          baseline: await run(baseline.app, shape.baselinePath, shape.method),
          cordon: await run(cordon.app, shape.cordonPath, shape.method),
        });
      }
      const best = (side: 'cordon' | 'baseline') =>
        rounds.map((round) => round[side]).reduce((a, b) => (b.requestsPerSecond > a.requestsPerSecond ? b : a));
      const ours = best('cordon');
      const theirs = best('baseline');
      if (failures(ours) || failures(theirs))
        throw new Error(
          `${shape.name}: ${failures(ours)} failed requests on Cordon, ${failures(theirs)} on the baseline`,
        );
      const reference = { name: 'Express + CASL + pg, hand-rolled', value: theirs.requestsPerSecond };
      results.push(
        measurement(
          `records: ${shape.name}, 64 connections`,
          'req/s',
          ours.requestsPerSecond,
          reference,
          'ratio >= 0.7',
        ),
        measurement(`records: ${shape.name}, p50`, 'ms', ours.p50, { name: 'baseline p50', value: theirs.p50 }),
        measurement(
          `records: ${shape.name}, p99`,
          'ms',
          ours.p99,
          { name: 'baseline p99', value: theirs.p99 },
          shape.name === 'read one record' ? 'value < 5' : undefined,
        ),
      );
    }
  } finally {
    await baseline.close();
    await issuer.close();
    await served.close();
  }
  return results;
}
