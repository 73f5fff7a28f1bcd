import { randomBytes } from 'node:crypto';
import supertest from 'supertest';
import { createApp } from '../src/app.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { Plans, type Plan } from '../src/policy/plans.ts';
import { TestIssuer } from '../test/support/issuer.ts';
import { benchServing } from './database.ts';
import { load, serve, type LoadResult } from './load.ts';
import { seedTasks } from './records.ts';
import { compared, interleaved, type Measurement } from './report.ts';

const connections = 64;
/** Records already in each workspace: the shared path's bounded count reads up to this many. */
export const billingRecordCount = 10_000;

const plan = (id: Plan['id'], limits: Plan['limits']): Plan => ({
  id,
  name: id,
  prices: { month: 0, year: 0 },
  currency: 'usd',
  features: [],
  limits,
});

/**
 * Limits far from reached: a quota no run spends, on both plans, and records limits on one of them,
 * so the create comparison isolates the records limits (the read comparison measures metering).
 */
const plans = new Plans([
  plan('free', { members: 3, records: { '*': 1000 }, apiCallsPerMonth: 1000 }),
  plan('professional', {
    members: null,
    records: { '*': 10_000_000, Task: 5_000_000 },
    apiCallsPerMonth: 1_000_000_000_000,
  }),
  plan('enterprise', { members: null, records: { '*': null }, apiCallsPerMonth: 1_000_000_000_000 }),
]);

const taskFields = { title: { type: 'text', required: true } };

/**
 * What billing costs on the hot paths, each against itself without it in the same run: a record
 * read with API-call metering and a quota (limited plan) vs an app that meters nothing; a create
 * under a records limit on the structure and "*" (far from reached: after the first, counted,
 * create the shared locks and the last insert position within the headroom, see `LimitHeadroom`) vs a workspace with the same quota and no records limits.
 */
export async function billingBench(
  database: { ownerUrl: string; appUrl: string },
  millis: number,
): Promise<Measurement[]> {
  const { logger, config, served, changes } = await benchServing(database.appUrl, 5);
  const issuer = await TestIssuer.start('ES256');
  const app = (meterUsage: boolean) =>
    createApp({ config, database: served, changes, logger, signingKey: generateSigningKey(), plans, meterUsage });
  const metered = app(true);
  const unmetered = app(false);
  const admin = supertest.agent(metered.app).auth(config.adminApiKey, { type: 'bearer' });

  async function workspace(planId: string, orgId: string) {
    const slug = `bench-billing-${randomBytes(3).toString('hex')}`;
    const created = (await admin.post('/v1/workspaces').send({ slug, name: 'Bench', plan: planId }).expect(201))
      .body as { id: string };
    await admin
      .post(`/v1/workspaces/${slug}/identity-providers`)
      .send({ name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId })
      .expect(201);
    await admin.post(`/v1/workspaces/${slug}/structures`).send({ name: 'Task', fields: taskFields }).expect(201);
    await seedTasks(database.ownerUrl, created.id, billingRecordCount);
    const token = await issuer.sign(
      { v: 2, sub: 'user_1', o: { id: orgId, rol: 'member' } },
      { expiresInSeconds: 3600 },
    );
    return { slug, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' } };
  }

  const limited = await workspace('professional', 'org_bench_limited');
  const unlimited = await workspace('enterprise', 'org_bench_unlimited');
  const someTask = (
    await supertest(metered.app)
      .get(`/v1/workspaces/${limited.slug}/records/Task?limit=1`)
      .set(limited.headers)
      .expect(200)
  ).body.data[0].id as string;
  const body = JSON.stringify({ data: { title: 'Benchmarked' } });
  const results: Measurement[] = [];
  const failures = (result: LoadResult) => result.errors + result.non2xx;
  const run =
    (url: string, headers: Record<string, string>, method: 'GET' | 'POST') => async (): Promise<LoadResult> => {
      const result = await load({
        url,
        method,
        headers,
        ...(method === 'POST' ? { body } : {}),
        connections,
        millis: millis / 4,
      });
      if (failures(result)) throw new Error(`${failures(result)} failed requests on ${url}`);
      return result;
    };
  const ratio = async (
    name: string,
    sides: { cordon: () => Promise<LoadResult>; baseline: () => Promise<LoadResult> },
    baselineName: string,
    target: string,
  ) => {
    await interleaved(1, sides);
    const measured = await interleaved(20, sides);
    results.push(
      compared(
        name,
        'req/s',
        measured.map((round) => ({
          subject: round.cordon.requestsPerSecond,
          baseline: round.baseline.requestsPerSecond,
        })),
        baselineName,
        target,
      ),
    );
  };
  try {
    await serve(metered.app, (meteredUrl) =>
      serve(unmetered.app, async (unmeteredUrl) => {
        const readPath = `/v1/workspaces/${limited.slug}/records/Task/${someTask}`;
        await ratio(
          `billing: read one record, metered with a quota, ${connections} connections`,
          {
            cordon: run(meteredUrl + readPath, limited.headers, 'GET'),
            baseline: run(unmeteredUrl + readPath, limited.headers, 'GET'),
          },
          'the same read, no metering',
          'ratio >= 0.95',
        );
        await ratio(
          `billing: create a record under a records limit (far from it), ${connections} connections`,
          {
            cordon: run(`${meteredUrl}/v1/workspaces/${limited.slug}/records/Task`, limited.headers, 'POST'),
            baseline: run(`${meteredUrl}/v1/workspaces/${unlimited.slug}/records/Task`, unlimited.headers, 'POST'),
          },
          'the same create, no limits',
          'ratio >= 0.9',
        );
      }),
    );
  } finally {
    await metered.usage.close();
    await unmetered.usage.close();
    await metered.realtime.close();
    await unmetered.realtime.close();
    await metered.functions.close();
    await unmetered.functions.close();
    await issuer.close();
    await served.close();
  }
  return results;
}
