import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import supertest from 'supertest';
import { createApp } from '../src/app.ts';
import { Background } from '../src/background.ts';
import { EventSecrets } from '../src/events/secrets.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { TestIssuer } from '../test/support/issuer.ts';
import { benchServing } from './database.ts';
import { load, serve } from './load.ts';
import { compared, interleaved, measurement, type Measurement } from './report.ts';

const connections = 64;
const rounds = 16;

/** A receiver that answers 204 at once and notes when each event arrived (no verification: its CPU is the bench's). */
async function quickReceiver(): Promise<{
  url: string;
  arrivals: { at: number; committedAt: number }[];
  server: Server;
}> {
  const arrivals: { at: number; committedAt: number }[] = [];
  const server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const at = Date.now();
      response.writeHead(204).end();
      const body = JSON.parse(Buffer.concat(chunks).toString()) as { data: { at: string } };
      arrivals.push({ at, committedAt: Date.parse(body.data.at) });
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`, arrivals, server };
}

const quantile = (values: number[], q: number) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? 0;
};

/**
 * Webhook triggers, on one instance with its background running (dispatcher, job queue) and a
 * receiver on loopback that answers at once:
 * - record creates in a workspace whose Task structure has one webhook trigger, against creates
 *   in one without, in interleaved rounds; after each side the background is let finish (every
 *   delivery made), so neither side inherits the other's work while the trigger side pays for
 *   its deliveries as they happen;
 * - deliveries per second: a backlog of creates made while the background was stopped, drained
 *   from its start (matching, queueing, signing, posting, logging);
 * - commit to delivery at a steady 100 creates a second: the event's time (taken just before its
 *   insert, so a little before its commit) to its arrival at the receiver.
 */
export async function triggersBench(
  database: { ownerUrl: string; appUrl: string },
  millis: number,
): Promise<Measurement[]> {
  const { logger, config, served, changes } = await benchServing(database.appUrl);
  const issuer = await TestIssuer.start('ES256');
  const cordon = createApp({ config, database: served, changes, logger, signingKey: generateSigningKey() });
  const secrets = new EventSecrets(config.adminApiKey);
  const newBackground = () =>
    new Background({
      config,
      database: served,
      events: cordon.events,
      changes,
      secrets,
      logger,
      functions: cordon.functions,
    });
  let background = newBackground();
  const owner = new pg.Client({ connectionString: database.ownerUrl });
  await owner.connect();
  const receiver = await quickReceiver();
  const admin = () => supertest.agent(cordon.app).auth(config.adminApiKey, { type: 'bearer' });

  async function workspace(name: string): Promise<{ id: string; slug: string; token: string }> {
    const slug = `bench-triggers-${name}-${randomBytes(3).toString('hex')}`;
    const { id } = (await admin().post('/v1/workspaces').send({ slug, name, plan: 'enterprise' }).expect(201)).body as {
      id: string;
    };
    const orgId = `org_bench_${name}`;
    await admin()
      .post(`/v1/workspaces/${slug}/identity-providers`)
      .send({ name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId })
      .expect(201);
    await admin()
      .post(`/v1/workspaces/${slug}/structures`)
      .send({ name: 'Task', fields: { title: { type: 'text' }, status: { type: 'text' } } })
      .expect(201);
    const token = await issuer.sign(
      { v: 2, sub: 'user_1', o: { id: orgId, rol: 'member' } },
      { expiresInSeconds: 3600 },
    );
    return { id, slug, token };
  }
  const hooked = await workspace('hooked');
  const plain = await workspace('plain');
  await admin()
    .post(`/v1/workspaces/${hooked.slug}/triggers`)
    .send({
      name: 'bench',
      events: ['record_created'],
      structure: 'Task',
      action: { type: 'webhook', url: receiver.url },
    })
    .expect(201);
  const body = JSON.stringify({ data: { title: 'Benchmarked', status: 'todo' } });

  /** Until every committed event is matched and every delivery made. */
  async function settled(): Promise<void> {
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (Date.now() > deadline) throw new Error('deliveries still pending after two minutes');
      const { rows } = await owner.query<{ busy: boolean }>(
        `select exists (select 1 from deliveries where status = 'pending')
             or exists (select 1 from events e where e.workspace_id = $1 and e.seq > coalesce(
                  (select through_seq from event_progress where workspace_id = $1 and consumer = 'triggers'), 0)) as busy`,
        [hooked.id],
      );
      if (!rows[0]!.busy) return;
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  const results: Measurement[] = [];
  try {
    await background.start();
    await serve(cordon.app, async (url) => {
      const create =
        (target: { slug: string; token: string }, settle = true) =>
        async () => {
          const result = await load({
            url: `${url}/v1/workspaces/${target.slug}/records/Task`,
            method: 'POST',
            headers: { authorization: `Bearer ${target.token}`, 'content-type': 'application/json' },
            body,
            connections,
            millis: millis / 4,
          });
          if (result.errors + result.non2xx) throw new Error(`${result.errors + result.non2xx} failed creates`);
          if (settle) await settled();
          return result;
        };
      const sides = { none: create(plain), trigger: create(hooked) };
      await interleaved(1, sides);
      const measured = await interleaved(rounds, sides);
      results.push(
        compared(
          `triggers: record create with one webhook trigger, ${connections} connections`,
          'req/s',
          measured.map((round) => ({
            subject: round.trigger.requestsPerSecond,
            baseline: round.none.requestsPerSecond,
          })),
          'record create without a trigger',
          'ratio >= 0.85',
        ),
      );

      // A backlog made while the background is stopped, then drained from its start.
      await background.stop();
      const before = receiver.arrivals.length;
      let backlog = 0;
      while (backlog < 2_000) {
        await create(hooked, false)();
        backlog = Number(
          (
            await owner.query<{ count: string }>(
              `select count(*) from events e where e.workspace_id = $1 and e.seq > coalesce(
                 (select through_seq from event_progress where workspace_id = $1 and consumer = 'triggers'), 0)`,
              [hooked.id],
            )
          ).rows[0]!.count,
        );
      }
      background = newBackground();
      const started = performance.now();
      await background.start();
      while (receiver.arrivals.length - before < backlog) {
        if (performance.now() - started > 120_000) throw new Error('the backlog was not delivered in two minutes');
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
      const seconds = (performance.now() - started) / 1000;
      results.push(
        measurement(`triggers: deliveries of a ${backlog}-event backlog`, 'deliveries/s', [backlog / seconds]),
      );
      await settled();

      // A steady 100 creates a second.
      const steady = receiver.arrivals.length;
      const count = Math.max(200, Math.round((10 * millis) / 1_000) * 100);
      const pending: Promise<unknown>[] = [];
      for (let index = 0; index < count; index++) {
        pending.push(
          fetch(`${url}/v1/workspaces/${hooked.slug}/records/Task`, {
            method: 'POST',
            headers: { authorization: `Bearer ${hooked.token}`, 'content-type': 'application/json' },
            body,
          }).then((response) => response.arrayBuffer()),
        );
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      await Promise.all(pending);
      await settled();
      const latencies = receiver.arrivals.slice(steady).map((arrival) => arrival.at - arrival.committedAt);
      results.push(
        measurement('triggers: commit to delivery at 100 events/s, p50', 'ms', [quantile(latencies, 0.5)]),
        measurement(
          'triggers: commit to delivery at 100 events/s, p99',
          'ms',
          [quantile(latencies, 0.99)],
          'value < 200',
        ),
      );
    });
  } finally {
    await background.stop();
    await cordon.functions.close();
    receiver.server.closeAllConnections();
    await new Promise((resolve) => receiver.server.close(resolve));
    await owner.end();
    await issuer.close();
    await served.close();
  }
  return results;
}
