import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import supertest from 'supertest';
import { createApp } from '../src/app.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { TestIssuer } from '../test/support/issuer.ts';
import { benchServing } from './database.ts';
import { load, serve } from './load.ts';
import { machineSeconds } from './machine.ts';
import type { SubscribersRequest, SubscribersSummary } from './realtime-subscribers.ts';
import { compared, interleaved, measurement, type Measurement } from './report.ts';

const subscriberCount = 1_000;
/** Four ability groups of 250: two unrestricted, two restricted by a condition without a placeholder. */
const roles = ['viewer', 'member', 'triage', 'contractor'] as const;
const connections = 64;
const rounds = 10;
const writesPerSecond = 100;
const now = () => performance.timeOrigin + performance.now();

/**
 * The steady stream's records cycle through four shapes: half are high priority (the triage group
 * sees those), half are archived (the contractor group sees the others), so a record reaches
 * 750 subscribers on average — as does the write-path body (low priority, not archived).
 */
const shape = (index: number) => ({
  priority: index % 2 ? 'high' : 'low',
  status: Math.floor(index / 2) % 2 ? 'archived' : 'todo',
});
const audience = (index: number) => {
  const { priority, status } = shape(index);
  return (2 + Number(priority === 'high') + Number(status !== 'archived')) * (subscriberCount / roles.length);
};

/** The subscribers' thread (bench/realtime-subscribers.ts), one request at a time; its crash fails the request. */
function subscribersThread(): { ask: <T>(request: SubscribersRequest) => Promise<T>; stop: () => Promise<number> } {
  const thread = new Worker(new URL('./realtime-subscribers.ts', import.meta.url));
  let crash: Error | undefined;
  let abandon: ((error: Error) => void) | undefined;
  thread.on('error', (error) => {
    crash = error;
    abandon?.(error);
  });
  let queue: Promise<unknown> = Promise.resolve();
  const ask = <T>(request: SubscribersRequest) => {
    const answer = queue.then(
      () =>
        new Promise<T>((resolve, reject) => {
          const fail = (error: unknown) => reject(new Error(`subscribers: ${String(error)}`));
          if (crash) return fail(crash);
          abandon = fail;
          thread.once('message', (message: { reply: T } | { failure: string }) => {
            abandon = undefined;
            if ('failure' in message) fail(message.failure);
            else resolve(message.reply);
          });
          thread.postMessage(request);
        }),
    );
    queue = answer.catch(() => undefined);
    return answer;
  };
  return { ask, stop: () => thread.terminate() };
}

/** The main thread's CPU seconds (the app's; the load generator and the subscribers have threads of their own). */
const threadSeconds = () => {
  const usage = process.threadCpuUsage();
  return (usage.user + usage.system) / 1e6;
};

/**
 * Realtime streams, on one instance with 1,000 subscribers on real SSE connections over loopback
 * (real tokens, 250 principals in each of four roles: viewer, member, and two roles that read
 * only some tasks), read on a thread of the bench's own:
 * - at a steady 100 creates a second through the HTTP API, events delivered per second across all
 *   subscribers and the time from sending the create request to receiving its event (the send
 *   time is in the record: an upper bound on commit to receipt, by the create's own latency),
 *   and the app thread's CPU per event delivered;
 * - record creates (autocannon) in the watched workspace, each event reaching 750 of the
 *   subscribers, against creates in a workspace nobody watches, with the same subscribers
 *   connected to the instance and idle, in interleaved rounds; after each watched side every
 *   subscriber has received every event (a sentinel record reaches all of them), so neither side
 *   inherits the other's work; and the app thread's CPU per create on each side, window and
 *   drain included — what the fan-out costs, whatever else the machine is doing; and the
 *   subscribers' thread's CPU and the whole machine's (/proc/stat) per create, with and without
 *   that thread's share, since the subscribers compete with the app for the same two cores.
 * What the bench's own client costs: about 10 µs of CPU per event received, nearly all of it the
 * socket read each event takes on this VM (a bare net.Socket instead of node:http saves a tenth) —
 * three quarters of a core at the steady 75,000 events/s on a quiet machine, less on a busy one,
 * where reads gather several events. The steady creates (100/s) are sent from the same thread.
 */
export async function realtimeBench(
  database: { ownerUrl: string; appUrl: string },
  millis: number,
): Promise<Measurement[]> {
  const { logger, config, served, changes } = await benchServing(database.appUrl);
  const issuer = await TestIssuer.start('ES256');
  const cordon = createApp({ config, database: served, changes, logger, signingKey: generateSigningKey() });
  const admin = () => supertest.agent(cordon.app).auth(config.adminApiKey, { type: 'bearer' });

  async function workspace(
    name: string,
  ): Promise<{ slug: string; token: (user: string, role: string) => Promise<string> }> {
    const slug = `bench-realtime-${name}-${randomBytes(3).toString('hex')}`;
    await admin().post('/v1/workspaces').send({ slug, name, plan: 'enterprise' }).expect(201);
    const orgId = `org_bench_realtime_${name}`;
    await admin()
      .post(`/v1/workspaces/${slug}/identity-providers`)
      .send({ name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId })
      .expect(201);
    await admin()
      .post(`/v1/workspaces/${slug}/structures`)
      .send({
        name: 'Task',
        fields: {
          title: { type: 'text' },
          status: { type: 'text' },
          priority: { type: 'text' },
          sentAt: { type: 'number' },
        },
      })
      .expect(201);
    for (const [role, conditions] of [
      ['triage', { priority: 'high' }],
      ['contractor', { status: { $ne: 'archived' } }],
    ] as const)
      await admin()
        .post(`/v1/workspaces/${slug}/policies`)
        .send({ name: role, roles: [role], rules: [{ action: 'read', subject: 'Task', conditions }] })
        .expect(201);
    return {
      slug,
      token: (user, role) => issuer.sign({ v: 2, sub: user, o: { id: orgId, rol: role } }, { expiresInSeconds: 3600 }),
    };
  }
  const watched = await workspace('watched');
  const quiet = await workspace('quiet');
  const writers = {
    watched: await watched.token('user_writer', 'member'),
    quiet: await quiet.token('user_writer', 'member'),
  };
  const tokens = await Promise.all(
    Array.from({ length: subscriberCount }, (_, index) => watched.token(`user_${index}`, roles[index % roles.length]!)),
  );
  const subscribers = subscribersThread();
  const results: Measurement[] = [];
  try {
    await serve(cordon.app, async (url) => {
      const create = (slug: string, token: string, data: object) =>
        fetch(`${url}/v1/workspaces/${slug}/records/Task`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify({ data }),
        }).then(async (response) => {
          if (response.status !== 201) throw new Error(`create: ${response.status} ${await response.text()}`);
          await response.arrayBuffer();
        });
      let sentinels = 0;
      /** Until every subscriber has every event so far: a record all four groups see, last in each stream. */
      const settled = async () => {
        sentinels += 1;
        await create(watched.slug, writers.watched, {
          title: 'sentinel',
          priority: 'high',
          status: 'todo',
          sentAt: -sentinels,
        });
        await subscribers.ask({ op: 'sentinel', number: sentinels, timeoutMs: 120_000 });
      };

      await subscribers.ask({ op: 'open', url: `${url}/v1/workspaces/${watched.slug}/events?structures=Task`, tokens });
      await settled();

      // A steady 100 creates a second, sent from the subscribers' thread.
      await subscribers.ask({ op: 'reset' });
      const count = Math.max(200, Math.round((10 * millis) / 1_000) * writesPerSecond);
      const records = Array.from({ length: count }, (_, index) => ({ title: `Task ${index}`, ...shape(index) }));
      const expected = records.reduce((sum, _, index) => sum + audience(index), 0);
      const started = now();
      const cpu = threadSeconds();
      await subscribers.ask({
        op: 'write',
        url: `${url}/v1/workspaces/${watched.slug}/records/Task`,
        token: writers.watched,
        records,
        perSecond: writesPerSecond,
      });
      await settled();
      const steady = await subscribers.ask<SubscribersSummary>({ op: 'summary' });
      if (steady.stamped !== expected) throw new Error(`${expected} deliveries expected, ${steady.stamped} received`);
      const seconds = (steady.lastAt - started) / 1_000;
      const cpuPerEvent = ((threadSeconds() - cpu) / steady.stamped) * 1e6;
      results.push(
        measurement(
          `realtime: events delivered at ${writesPerSecond} creates/s, ${subscriberCount} subscribers in 4 groups`,
          'events/s',
          [steady.stamped / seconds],
        ),
        measurement(`realtime: create request sent to event received at ${writesPerSecond} creates/s, p50`, 'ms', [
          steady.p50,
        ]),
        measurement(
          `realtime: create request sent to event received at ${writesPerSecond} creates/s, p99`,
          'ms',
          [steady.p99],
          'value < 100',
        ),
        measurement(`realtime: app thread CPU per event delivered at ${writesPerSecond} creates/s`, 'µs', [
          cpuPerEvent,
        ]),
      );

      const body = JSON.stringify({ data: { title: 'Benchmarked', priority: 'low', status: 'todo', sentAt: 0 } });
      const side = (slug: string, token: string, watchedSide: boolean) => async () => {
        const cpu = threadSeconds();
        const clientCpu = await subscribers.ask<number>({ op: 'cpu' });
        const machine = machineSeconds();
        const result = await load({
          url: `${url}/v1/workspaces/${slug}/records/Task`,
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body,
          connections,
          // A whole `millis` (not a quarter, as in records): a window holds several of the feed's
          // passes, so most of the fan-out its creates cause falls inside it, not in the drain after.
          millis,
        });
        if (result.errors + result.non2xx) throw new Error(`${result.errors + result.non2xx} failed creates`);
        if (watchedSide) await settled();
        const created = (result.requestsPerSecond * millis) / 1_000;
        const machinePerCreate = ((machineSeconds() - machine) / created) * 1e6;
        const clientCpuPerCreate = (((await subscribers.ask<number>({ op: 'cpu' })) - clientCpu) / created) * 1e6;
        return {
          ...result,
          cpuPerCreate: ((threadSeconds() - cpu) / created) * 1e6,
          clientCpuPerCreate,
          machinePerCreate,
          servingPerCreate: machinePerCreate - clientCpuPerCreate,
        };
      };
      const sides = {
        none: side(quiet.slug, writers.quiet, false),
        subscribed: side(watched.slug, writers.watched, true),
      };
      await interleaved(1, sides);
      const measured = await interleaved(rounds, sides);
      const pairs = (metric: 'requestsPerSecond' | 'cpuPerCreate' | 'machinePerCreate' | 'servingPerCreate') =>
        measured.map((round) => ({ subject: round.subscribed[metric], baseline: round.none[metric] }));
      results.push(
        compared(
          `realtime: record create with ${subscriberCount} subscribers (750 see each), ${connections} connections`,
          'req/s',
          pairs('requestsPerSecond'),
          'record create in a workspace without subscribers',
          'ratio >= 0.9',
        ),
        compared(
          'realtime: app thread CPU per record create, 750 subscribers see each',
          'µs',
          pairs('cpuPerCreate'),
          'without subscribers',
        ),
        // The bench's own subscribers share the machine's two cores with the app and PostgreSQL:
        // what they spend per create is taken from the creates' side of the ratio above.
        measurement(
          "realtime: the bench's subscribers' thread CPU per record create, 750 see each",
          'µs',
          measured.map((round) => round.subscribed.clientCpuPerCreate),
        ),
        compared(
          'realtime: machine CPU per record create, 750 subscribers see each',
          'µs',
          pairs('machinePerCreate'),
          'without subscribers',
        ),
        // What the create costs everything but the bench's subscribers: the app, PostgreSQL, the
        // load generator — the ratio the throughput would show with the subscribers elsewhere.
        compared(
          "realtime: machine CPU per record create less the subscribers' thread, 750 see each",
          'µs',
          pairs('servingPerCreate'),
          'without subscribers',
        ),
      );
      await subscribers.ask({ op: 'close' });
    });
  } finally {
    await subscribers.stop();
    await cordon.realtime.close();
    await cordon.functions.close();
    await issuer.close();
    await served.close();
  }
  return results;
}
