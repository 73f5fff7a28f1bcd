import { randomBytes } from 'node:crypto';
import type { RequestListener } from 'node:http';
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
import { compared, interleaved, measurement, opsPerSecond, type Measurement } from './report.ts';
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
  const sides = {
    subject: () =>
      opsPerSecond((iteration) => ours.decide('update', 'Task', record(iteration)), { millis, warmup: 20 }),
    baseline: () =>
      opsPerSecond((iteration) => bare.can('update', subject('Task', { ...record(iteration) })), {
        millis,
        warmup: 20,
      }),
  };
  await interleaved(1, sides);
  return [
    compared(
      'policy evaluation, in process',
      'decisions/s',
      await interleaved(evaluationRounds, sides),
      'bare CASL ability.can',
      'ratio >= 0.5',
    ),
  ];
}

/**
 * The log-off side sends each answer one turn of the event loop later, as the log-on side does
 * at the earliest (its group commit releases a whole flush's answers together). Answering
 * within the same turn is not less work but another rhythm, and a dearer one: on this machine
 * it cost the server's main thread about a quarter more CPU per request (~200–250 µs against
 * ~140–180 µs), more than the log adds, so against it the log looked free or better (ratios of
 * 1.06–1.22). Against this baseline the ratio is the log's own cost.
 */
function answeringNextTurn(app: RequestListener): RequestListener {
  return (request, response) => {
    const end = response.end.bind(response) as (...args: unknown[]) => void;
    response.end = ((...args: unknown[]) => {
      setImmediate(() => end(...args));
      return response;
    }) as typeof response.end;
    app(request, response);
  };
}

/** POST /check over loopback HTTP with a real token: batch of 1 and of 50, and logging off. */
async function checkBench(appUrl: string, millis: number): Promise<Measurement[]> {
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
    const { slug, headers, body } = await checkWorkspace(admin, issuer, 'bench-check');

    // Both apps listen for the whole comparison; rounds alternate which one goes first.
    await serve(apps[0]!.app, (logged) =>
      serve(answeringNextTurn(apps[1]!.app), async (unlogged) => {
        const run =
          (url: string, size: number, window = millis) =>
          () =>
            checkLoad(url, { slug, headers, body }, size, window);
        const sides = { logged: run(logged, 1), unlogged: run(unlogged, 1) };
        await interleaved(1, sides);
        const rounds = await interleaved(checkRounds, sides);
        // Requests of 50 take ten times longer: windows four times as long hold enough of them.
        const fifty: LoadResult[] = [];
        for (let index = 0; index < 3; index++) fifty.push(await run(logged, 50, millis * 4)());
        results.push(
          measurement(
            'POST /check, batch of 1',
            'decisions/s',
            rounds.map((round) => round.logged.requestsPerSecond),
          ),
          measurement(
            'POST /check, batch of 50',
            'decisions/s',
            fifty.map((result) => result.requestsPerSecond * 50),
          ),
          compared(
            'POST /check with the decision log (batch of 1)',
            'req/s',
            rounds.map((round) => ({
              subject: round.logged.requestsPerSecond,
              baseline: round.unlogged.requestsPerSecond,
            })),
            'same, decision log off, answering a turn later',
            'ratio >= 0.85',
          ),
        );
      }),
    );
  } finally {
    await issuer.close();
    await database.close();
  }
  return results;
}

const evaluationRounds = 32;
const checkRounds = 32;

/**
 * A workspace for /check runs: a member of org_bench with a token, and request bodies of `size`
 * update checks, each on a resource of its own (the base comparison in check-against.ts too).
 */
export async function checkWorkspace(admin: supertest.Agent, issuer: TestIssuer, prefix: string) {
  const slug = `${prefix}-${randomBytes(3).toString('hex')}`;
  await admin.post('/v1/workspaces').send({ slug, name: 'Bench', plan: 'enterprise' }).expect(201);
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
  return { slug, headers, body };
}

/** POST /check with batches of `size` at 64 connections for `millis`; any failed request fails the bench. */
export async function checkLoad(
  url: string,
  workspace: Awaited<ReturnType<typeof checkWorkspace>>,
  size: number,
  millis: number,
): Promise<LoadResult> {
  const result = await load({
    url: `${url}/v1/workspaces/${workspace.slug}/check`,
    method: 'POST',
    headers: workspace.headers,
    body: workspace.body(size),
    connections: 64,
    millis,
  });
  if (result.errors || result.non2xx)
    throw new Error(`POST /check: ${result.errors} errors, ${result.non2xx} non-2xx responses`);
  return result;
}

/** With `millis` at 1000, a /check window lasts 250 ms and an evaluation window 50 ms. */
export async function decisionsBench(appUrl: string, millis: number): Promise<Measurement[]> {
  return [...(await evaluationBench(millis / 20)), ...(await checkBench(appUrl, millis / 4))];
}
