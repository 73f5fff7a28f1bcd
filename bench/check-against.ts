import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import supertest from 'supertest';
import { createApp, entities } from '../src/app.ts';
import { parseConfig } from '../src/config.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { Database } from '../src/db/database.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { TestIssuer } from '../test/support/issuer.ts';
import { benchDatabase } from './database.ts';
import { checkLoad, checkWorkspace } from './decisions.ts';
import { serve } from './load.ts';
import { compared, interleaved, printTable } from './report.ts';

/**
 * `node bench/check-against.ts --base <checkout>`: POST /check (batch of 1, and of 50) served by
 * this checkout against the same route served by another checkout's code (e.g. `git worktree
 * add /tmp/base main`, with node_modules linked), both apps in this process on one database,
 * measured in interleaved rounds. Answers whether a change left /check's hot path as it was.
 */
const { values } = parseArgs({ options: { base: { type: 'string' }, rounds: { type: 'string', default: '24' } } });
if (!values.base) throw new Error('usage: node bench/check-against.ts --base <checkout of the code to compare with>');
// A /check window of 250 ms, as `npm run bench` measures /check at its default BENCH_MILLIS.
const millis = 250;
const base = (await import(path.resolve(values.base, 'src/app.ts'))) as typeof import('../src/app.ts');
const BaseDatabase = (
  (await import(path.resolve(values.base, 'src/db/database.ts'))) as typeof import('../src/db/database.ts')
).Database;

const database = await benchDatabase();
const logger = pino({ level: 'silent' });
const config = { ...parseConfig({ NODE_ENV: 'test' }), adminApiKey: randomBytes(32).toString('hex') };
const ours = await Database.open({ url: database.appUrl, poolSize: 10, entities }, logger);
const theirs = await BaseDatabase.open({ url: database.appUrl, poolSize: 10, entities: base.entities }, logger);
const issuer = await TestIssuer.start('ES256');
try {
  const shared = { config, logger, signingKey: generateSigningKey() };
  const subject = createApp({ ...shared, database: ours, changes: new ChangeBus(undefined, logger) });
  const baseline = base.createApp({ ...shared, database: theirs, changes: new ChangeBus(undefined, logger) } as never);
  const admin = supertest.agent(subject.app).auth(config.adminApiKey, { type: 'bearer' });
  const { slug, headers, body } = await checkWorkspace(admin, issuer, 'bench-against');
  const rounds = Number(values.rounds);
  const results = await serve(subject.app, (subjectUrl) =>
    serve(baseline.app, async (baselineUrl) => {
      const run = (url: string, size: number, window: number) => async () =>
        (await checkLoad(url, { slug, headers, body }, size, window)).requestsPerSecond;
      const one = { subject: run(subjectUrl, 1, millis), baseline: run(baselineUrl, 1, millis) };
      const fifty = { subject: run(subjectUrl, 50, millis * 4), baseline: run(baselineUrl, 50, millis * 4) };
      // CPU time per request (server and client share this process), which other work on a busy
      // machine disturbs far less than throughput: requests one at a time over one keep-alive connection.
      const perCpuSecond = (url: string, size: number) => async () => {
        const request = () =>
          fetch(`${url}/v1/workspaces/${slug}/check`, { method: 'POST', headers, body: body(size) }).then(
            async (response) => {
              await response.arrayBuffer();
              if (response.status !== 200) throw new Error(`POST /check: ${response.status}`);
            },
          );
        const started = process.cpuUsage();
        for (let index = 0; index < 200; index++) await request();
        const used = process.cpuUsage(started);
        return 200 / ((used.user + used.system) / 1e6);
      };
      const cpu = { subject: perCpuSecond(subjectUrl, 1), baseline: perCpuSecond(baselineUrl, 1) };
      await interleaved(2, cpu);
      await interleaved(1, one);
      return [
        compared(
          'POST /check, batch of 1, explain off, per CPU second',
          'req/CPU-s',
          await interleaved(rounds, cpu),
          `--base ${values.base}`,
          'ratio >= 0.98',
        ),
        compared(
          'POST /check, batch of 1, explain off',
          'req/s',
          await interleaved(rounds, one),
          `--base ${values.base}`,
          'ratio >= 0.98',
        ),
        compared(
          'POST /check, batch of 50, explain off',
          'req/s',
          await interleaved(Math.ceil(rounds / 3), fifty),
          `--base ${values.base}`,
          'ratio >= 0.98',
        ),
      ];
    }),
  );
  printTable(results);
  await Promise.all([
    subject.usage.close(),
    baseline.usage.close(),
    subject.realtime.close(),
    baseline.realtime.close(),
  ]);
  await Promise.all([subject.functions.close(), baseline.functions.close()]);
} finally {
  await issuer.close();
  await ours.close();
  await theirs.close();
  await database.stop();
}
