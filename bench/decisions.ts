import { randomBytes } from 'node:crypto';
import { createMongoAbility, subject } from '@casl/ability';
import { pino } from 'pino';
import supertest from 'supertest';
import { createApp, entities } from '../src/app.ts';
import { parseConfig } from '../src/config.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { Database } from '../src/db/database.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { buildAbility, type PolicyRule } from '../src/policy/ability.ts';
import { TestIssuer } from '../test/support/issuer.ts';
import { compareOps, measurement, type Measurement } from './report.ts';
import { load, serve, type LoadResult } from './load.ts';

const rules: PolicyRule[] = [
  { action: ['create', 'read', 'update'], subject: 'Task', conditions: { createdBy: 'user_1' } },
  { action: 'read', subject: 'Task', conditions: { status: { $in: ['open', 'review'] } } },
  { action: 'update', subject: 'Task', conditions: { amount: { $lte: 1000 } } },
  { action: 'delete', subject: 'Task', inverted: true },
];

/** In-process evaluation against bare CASL with its default matcher and the same rules. */
async function evaluationBench(millis: number): Promise<Measurement[]> {
  const ours = buildAbility(
    [{ id: '0192f3a4-0000-7000-8000-000000000001', name: 'bench', version: 1, roles: ['member'], rules }],
    {
      principal: { id: 'user_1', roles: ['member'], claims: {} },
      workspaceId: '0192f3a4-0000-7000-8000-0000000000aa',
    },
  );
  const bare = createMongoAbility(rules as never);
  const records = Array.from({ length: 64 }, (_, index) => ({
    createdBy: index % 3 ? 'user_2' : 'user_1',
    status: ['open', 'done', 'review'][index % 3],
    amount: index * 37,
  }));
  const record = (iteration: number) => records[(iteration + 64) % 64]!;
  const result = await compareOps(
    (iteration) => ours.decide('update', 'Task', record(iteration)),
    (iteration) => bare.can('update', subject('Task', { ...record(iteration) })),
    { millis },
  );
  return [
    measurement(
      'policy evaluation, in process',
      'decisions/s',
      result.subject,
      { name: 'bare CASL ability.can', value: result.baseline },
      'ratio >= 0.5',
    ),
  ];
}

/** POST /check over loopback HTTP with a real token: batch of 1 and of 50, and logging off. */
async function checkBench(appUrl: string, seconds: number): Promise<Measurement[]> {
  const logger = pino({ level: 'silent' });
  const config = { ...parseConfig({ NODE_ENV: 'test' }), adminApiKey: randomBytes(32).toString('hex') };
  const database = await Database.open({ url: appUrl, poolSize: 10, entities }, logger);
  const changes = new ChangeBus(undefined, logger);
  const issuer = await TestIssuer.start('ES256');
  const results: Measurement[] = [];
  const apps = [true, false].map((enabled) =>
    createApp({
      config,
      database,
      changes,
      logger,
      signingKey: generateSigningKey(),
      logDecisions: enabled,
    }),
  );
  try {
    const admin = supertest.agent(apps[0]!.app).auth(config.adminApiKey, { type: 'bearer' });
    const slug = `bench-check-${randomBytes(3).toString('hex')}`;
    await admin.post('/v1/workspaces').send({ slug, name: 'Bench' }).expect(201);
    await admin
      .post(`/v1/workspaces/${slug}/identity-providers`)
      .send({ name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId: 'org_bench' })
      .expect(201);
    const token = await issuer.sign(
      { v: 2, sub: 'user_1', o: { id: 'org_bench', rol: 'member' } },
      { expiresInSeconds: 3600 },
    );
    const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
    const body = (size: number) =>
      JSON.stringify({
        checks: Array.from({ length: size }, (_, index) => ({
          action: 'update',
          subject: 'Task',
          resource: { createdBy: 'user_2', amount: index * 50 },
        })),
      });

    const run = (index: number, size: number) =>
      serve(apps[index]!.app, (url) =>
        load({
          url: `${url}/v1/workspaces/${slug}/check`,
          method: 'POST',
          headers,
          body: body(size),
          connections: 64,
          seconds,
        }),
      );
    // Interleaved, best of two rounds each, so a burst of noise does not land on one side only.
    let loggedOne = await run(0, 1);
    let unloggedOne = await run(1, 1);
    const better = (a: LoadResult, b: LoadResult) => (b.requestsPerSecond > a.requestsPerSecond ? b : a);
    loggedOne = better(loggedOne, await run(0, 1));
    unloggedOne = better(unloggedOne, await run(1, 1));
    const loggedFifty = await run(0, 50);
    results.push(
      measurement('POST /check, batch of 1', 'decisions/s', loggedOne.requestsPerSecond),
      measurement('POST /check, batch of 50', 'decisions/s', loggedFifty.requestsPerSecond * 50),
      measurement(
        'POST /check with the decision log (batch of 1)',
        'req/s',
        loggedOne.requestsPerSecond,
        { name: 'same, decision log off', value: unloggedOne.requestsPerSecond },
        'ratio >= 0.85',
      ),
    );
  } finally {
    await issuer.close();
    await database.close();
  }
  return results;
}

export async function decisionsBench(appUrl: string, millis: number): Promise<Measurement[]> {
  return [...(await evaluationBench(millis * 2)), ...(await checkBench(appUrl, Math.max(2, Math.round(millis / 500))))];
}
