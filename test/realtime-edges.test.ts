import { once } from 'node:events';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import type pg from 'pg';
import { pino } from 'pino';
import { purgeExpired } from '../src/events/retention.ts';
import { ownerClient, startTestApp, type TestApp, type TestAppOptions } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { addMember, membersWorkspace } from './support/members.ts';
import { SseClient, type ReceivedEvent } from './support/sse.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Realtime at its edges, over real HTTP against real PostgreSQL: resuming past what retention
 * deleted, token expiry, a consumer too slow to keep up, stream limits, two instances on one
 * database, two workspaces side by side (randomized), the query token kept out of the logs, a
 * member's role change, and shutdown. test/realtime.test.ts covers the core.
 */

interface Instance {
  cordon: TestApp;
  server: Server;
  base: string;
  close: () => Promise<void>;
}

interface Workspace {
  tenant: TestTenant;
  admin: string;
  member: string;
  viewer: string;
}

let issuer: TestIssuer;
let owner: pg.Client;
/** Most tests share this one; its log lines are kept to look for tokens in them. */
let main: Instance;
const logLines: string[] = [];
const instances: Instance[] = [];

async function serve(options: TestAppOptions = {}): Promise<Instance> {
  const cordon = await startTestApp(options);
  const server = cordon.app.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let closed: Promise<void> | undefined;
  const instance: Instance = {
    cordon,
    server,
    base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () =>
      (closed ??= (async () => {
        await cordon.realtime.close();
        server.closeAllConnections();
        await new Promise((resolve) => server.close(resolve));
        await cordon.close();
      })()),
  };
  instances.push(instance);
  return instance;
}

beforeAll(async () => {
  issuer = await TestIssuer.start();
  owner = await ownerClient();
  main = await serve({ logLines });
}, 60_000);
afterAll(async () => {
  for (const instance of instances.splice(0)) await instance.close();
  await owner.end();
  await issuer.close();
});

const streams: SseClient[] = [];
afterEach(() => {
  for (const stream of streams.splice(0)) stream.close();
});

const as = (
  instance: Instance,
  workspace: { slug: string },
  token: string,
  method: 'get' | 'post' | 'patch' | 'delete',
  path: string,
) => instance.cordon.http()[method](`/v1/workspaces/${workspace.slug}${path}`).auth(token, { type: 'bearer' });

/** A workspace with a Task structure, a contractor policy (reads its own tasks) and three tokens. */
async function workspaceWithTasks(instance: Instance, prefix: string): Promise<Workspace> {
  const tenant = await createTenant(instance.cordon, issuer, prefix);
  const admin = await tenant.token('user_admin', 'admin');
  await as(instance, tenant, admin, 'post', '/structures')
    .send({
      name: 'Task',
      fields: { title: { type: 'text', required: true }, assigneeId: { type: 'text' }, payload: { type: 'text' } },
    })
    .expect(201);
  await as(instance, tenant, admin, 'post', '/policies')
    .send({
      name: 'contractor',
      roles: ['contractor'],
      rules: [{ action: 'read', subject: 'Task', conditions: { assigneeId: '${principal.id}' } }],
    })
    .expect(201);
  return {
    tenant,
    admin,
    member: await tenant.token('user_member', 'member'),
    viewer: await tenant.token('user_viewer', 'viewer'),
  };
}

const createTask = async (
  instance: Instance,
  workspace: { slug: string },
  token: string,
  data: Record<string, unknown>,
) =>
  (
    await as(instance, workspace, token, 'post', '/records/Task')
      .send({ data: { title: 'a task', ...data } })
      .expect(201)
  ).body as { id: string; version: number };

/** A stream as the server answered it (any status); closed after the test. */
async function connect(
  instance: Instance,
  workspace: { slug: string },
  token: string | undefined,
  options: { structures?: string; headers?: Record<string, string>; query?: string } = {},
): Promise<SseClient> {
  const stream = await SseClient.open(
    `${instance.base}/v1/workspaces/${workspace.slug}/events?structures=${options.structures ?? 'Task'}${options.query ?? ''}`,
    { ...(token !== undefined && { authorization: `Bearer ${token}` }), ...options.headers },
  );
  streams.push(stream);
  return stream;
}

/** A stream that started and said where it is. */
async function opened(
  instance: Instance,
  workspace: { slug: string },
  token: string,
  options?: { structures?: string; headers?: Record<string, string> },
): Promise<SseClient> {
  const stream = await connect(instance, workspace, token, options);
  expect(stream.status).toBe(200);
  await stream.waitFor((client) => client.lastEventId !== undefined);
  return stream;
}

const records = (client: SseClient) => client.events.filter((event) => event.event.startsWith('record_'));
const pause = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const summary = (events: ReceivedEvent[]) => events.map((event) => [event.event, event.data.recordId]);
const inOrder = (events: ReceivedEvent[]) =>
  events.every((event, index) => index === 0 || BigInt(event.id!) > BigInt(events[index - 1]!.id!));

async function metric(instance: Instance, pattern: RegExp): Promise<number> {
  const text = (await instance.cordon.admin().get('/metrics').expect(200)).text;
  return Number(pattern.exec(text)?.[1] ?? 0);
}
const openStreams = (instance: Instance) => metric(instance, /^cordon_realtime_streams (\d+)/m);

/** The decisions a request left, found by the request id its problem carries. */
const decisionsOf = async (problem: Record<string, unknown> | undefined) =>
  (
    await owner.query('select subject, operation, allowed, reason from decisions where request_id = $1', [
      problem?.requestId,
    ])
  ).rows;

describe('resuming past retention', () => {
  let workspace: Workspace;
  /** The six tasks' creation events; retention deleted the first three. */
  let written: { seq: string; recordId: string }[];

  beforeAll(async () => {
    workspace = await workspaceWithTasks(main, 'rt-retention');
    for (let index = 0; index < 6; index++)
      await createTask(main, workspace.tenant, workspace.member, { title: `task ${index}` });
    written = (
      await owner.query<{ seq: string; recordId: string }>(
        `select seq, record_id as "recordId" from events where workspace_id = $1 order by seq`,
        [workspace.tenant.id],
      )
    ).rows;
    expect(written).toHaveLength(6);
    // Only these three are old enough for the retention run below (no other file's events are).
    await owner.query(`update events set at = now() - interval '10 years' where workspace_id = $1 and seq <= $2`, [
      workspace.tenant.id,
      written[2]!.seq,
    ]);
    await purgeExpired(main.cordon.database, pino({ level: 'silent' }), {
      eventHours: 5 * 365 * 24,
      deliveryDays: 36_500,
      billingEventDays: 36_500,
    });
    const mark = await owner.query(
      `select through_seq from event_progress where workspace_id = $1 and consumer = 'retention'`,
      [workspace.tenant.id],
    );
    expect(mark.rows).toEqual([{ through_seq: written[2]!.seq }]);
    const left = await owner.query(`select seq from events where workspace_id = $1 order by seq`, [
      workspace.tenant.id,
    ]);
    expect(left.rows.map((row) => row.seq)).toEqual(written.slice(3).map((event) => event.seq));
  });

  it.each([
    ['the Last-Event-ID header', (seq: string) => ({ headers: { 'last-event-id': seq } })],
    ['the lastEventId parameter', (seq: string) => ({ query: `&lastEventId=${seq}` })],
  ])(
    'sends reset at the current position to a client whose last event (%s) is below the mark, then live events',
    async (_how, resume) => {
      const stream = await connect(main, workspace.tenant, workspace.viewer, resume(written[1]!.seq));
      expect(stream.status).toBe(200);
      await stream.waitForEvents(1);
      const [reset] = stream.events;
      expect(reset).toMatchObject({ event: 'reset', data: { event: 'reset', seq: reset!.id } });
      expect(BigInt(reset!.id!) >= BigInt(written[5]!.seq)).toBe(true);
      const live = await createTask(main, workspace.tenant, workspace.member, { title: 'live' });
      await stream.waitForEvents(2);
      await pause(150);
      expect(summary(stream.events)).toEqual([
        ['reset', undefined],
        ['record_created', live.id],
      ]);
      expect(BigInt(stream.events[1]!.id!) > BigInt(reset!.id!)).toBe(true);
    },
  );

  it.each([
    ['at the mark (it had the last deleted event)', 2],
    ['above the mark', 3],
  ])('sends exactly the events after a client’s last one %s', async (_where, index) => {
    const from = written[index]!.seq;
    const expected = (
      await owner.query(`select record_id from events where workspace_id = $1 and seq > $2 order by seq`, [
        workspace.tenant.id,
        from,
      ])
    ).rows.map((row) => ['record_created', row.record_id]);
    expect(expected.length).toBeGreaterThanOrEqual(5 - index);
    const stream = await connect(main, workspace.tenant, workspace.viewer, { headers: { 'last-event-id': from } });
    expect(stream.status).toBe(200);
    await stream.waitForEvents(expected.length);
    await pause(150);
    expect(summary(stream.events)).toEqual(expected);
    expect(inOrder(stream.events)).toBe(true);
    expect(BigInt(stream.events[0]!.id!) > BigInt(from)).toBe(true);
  });
});

describe('token expiry', () => {
  it('ends the stream with token_expired when the token expires, and not before', async () => {
    const workspace = await workspaceWithTasks(main, 'rt-expiry');
    const exp = Math.floor(Date.now() / 1000) + 2;
    const brief = await workspace.tenant.token('user_brief', 'viewer', { exp });
    const stream = await opened(main, workspace.tenant, brief);
    const task = await createTask(main, workspace.tenant, workspace.member, { title: 'before expiry' });
    await stream.waitForEvents(1);
    expect(stream.ended).toBe(false);
    await stream.waitFor((client) => client.ended, 5_000);
    expect(Date.now()).toBeGreaterThanOrEqual(exp * 1000);
    expect(summary(stream.events)).toEqual([
      ['record_created', task.id],
      ['token_expired', undefined],
    ]);
    expect(stream.events[1]).toMatchObject({ event: 'token_expired', data: { event: 'token_expired' } });
  });
});

describe('a slow consumer', () => {
  let instance: Instance;
  let workspace: Workspace;
  beforeAll(async () => {
    instance = await serve({ env: { BODY_LIMIT: '1mb' }, realtime: { maxBufferBytes: 16 * 1024 } });
    workspace = await workspaceWithTasks(instance, 'rt-slow');
  });
  const titleOf = (event: ReceivedEvent) => {
    const data = event.data.data as { data?: { title: string }; after?: { data: { title: string } } };
    return (data.after ?? data)!.data!.title;
  };

  it('is dropped with a final too_slow event, while another subscriber of its group receives every event, in order', async () => {
    // Two viewers: one group, one formatted message each event for both.
    const slow = await opened(instance, workspace.tenant, workspace.viewer);
    const steady = await opened(instance, workspace.tenant, await workspace.tenant.token('user_steady', 'viewer'));
    slow.pause();
    // Updates carry the record twice (before, after): ~400 KB per event, to fill loopback buffers quickly.
    const task = await createTask(instance, workspace.tenant, workspace.member, {
      title: 'step 0',
      payload: 'x'.repeat(200_000),
    });
    const titles = ['step 0'];
    let dropped = 0;
    while (!dropped && titles.length < 200) {
      const title = `step ${titles.length}`;
      await as(instance, workspace.tenant, workspace.member, 'patch', `/records/Task/${task.id}`)
        .send({ data: { title, payload: (titles.length % 2 ? 'y' : 'x').repeat(200_000) } })
        .expect(200);
      titles.push(title);
      // The paused consumer never holds the other one back, nor is the other one dropped.
      await steady.waitFor((client) => client.ended || records(client).length === titles.length, 2_000);
      expect(steady.of('error')).toEqual([]);
      dropped = await metric(instance, /^cordon_realtime_dropped_total\{reason="too_slow"\} (\d+)/m);
    }
    expect(dropped).toBe(1);
    slow.resume();
    await slow.waitFor((client) => client.ended, 4_000);
    const last = slow.events.at(-1);
    expect(last).toMatchObject({ event: 'error', data: { event: 'error', code: 'too_slow' } });
    const received = slow.events.slice(0, -1);
    expect(received.length).toBeLessThan(titles.length);
    expect(received.map(titleOf)).toEqual(titles.slice(0, received.length));
    expect(steady.events.map(titleOf)).toEqual(titles);
    expect(inOrder(steady.events)).toBe(true);
    expect(steady.ended).toBe(false);
    // Reconnecting where it stopped brings exactly the rest.
    const again = await connect(instance, workspace.tenant, workspace.viewer, {
      headers: { 'last-event-id': slow.lastEventId! },
    });
    await again.waitForEvents(titles.length - received.length);
    await pause(150);
    expect(again.events.map(titleOf)).toEqual(titles.slice(received.length));
  });

  it('is not one that keeps up: resuming over more than the bound, in small events, brings them all', async () => {
    const first = await opened(instance, workspace.tenant, workspace.viewer);
    const task = await createTask(instance, workspace.tenant, workspace.member, { title: 'step 0' });
    await first.waitForEvents(1);
    first.close();
    // ~2.5 KB per event, ~100 KB in all: more than the 16 KB bound, but never more than a reader lets wait.
    const titles: string[] = [];
    for (let step = 1; step <= 40; step++) {
      titles.push(`step ${step}`);
      await as(instance, workspace.tenant, workspace.member, 'patch', `/records/Task/${task.id}`)
        .send({ data: { title: `step ${step}`, payload: 'z'.repeat(1_000) } })
        .expect(200);
    }
    const again = await connect(instance, workspace.tenant, workspace.viewer, {
      headers: { 'last-event-id': first.lastEventId! },
    });
    await again.waitFor((client) => client.ended || records(client).length === titles.length);
    expect(again.of('error')).toEqual([]);
    expect(again.events.map(titleOf)).toEqual(titles);
  });
});

describe('stream limits', () => {
  let instance: Instance;
  let workspace: Workspace;
  beforeAll(async () => {
    instance = await serve({ realtime: { maxStreams: 3, maxStreamsPerPrincipal: 2 } });
    workspace = await workspaceWithTasks(instance, 'rt-limits');
  });
  afterEach(async () => {
    for (const stream of streams.splice(0)) stream.close();
    await eventually(async () => (await openStreams(instance)) === 0);
  });

  const expectRefused = async (stream: SseClient, reason: RegExp) => {
    expect(stream.status).toBe(429);
    expect(stream.headers['retry-after']).toMatch(/^\d+$/);
    expect(stream.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(stream.problem).toMatchObject({
      status: 429,
      code: 'too_many_streams',
      detail: expect.stringMatching(reason),
    });
    expect(await decisionsOf(stream.problem)).toEqual([
      {
        subject: 'Task',
        operation: 'list',
        allowed: true,
        reason: expect.stringMatching(/not done: 429 too_many_streams$/),
      },
    ]);
  };

  /** Connects until admitted: the server learns of a closed stream a moment after the client closes it. */
  const admittedSoon = async (token: string) => {
    let stream: SseClient | undefined;
    await eventually(async () => {
      stream = await connect(instance, workspace.tenant, token);
      return stream.status === 200;
    }, 3_000);
    return stream!;
  };

  it('refuses a principal past maxStreamsPerPrincipal (429 too_many_streams, Retry-After, logged as not done); closing one lets a new one in', async () => {
    const first = await opened(instance, workspace.tenant, workspace.viewer);
    await opened(instance, workspace.tenant, workspace.viewer);
    await expectRefused(await connect(instance, workspace.tenant, workspace.viewer), /principal/);
    first.close();
    const third = await admittedSoon(workspace.viewer);
    await third.waitFor((client) => client.lastEventId !== undefined);
    const task = await createTask(instance, workspace.tenant, workspace.member, {});
    await third.waitForEvents(1);
    expect(third.events[0]!.data.recordId).toBe(task.id);
  });

  it('refuses anyone past maxStreams, even a principal under its own limit; closing one lets a new one in', async () => {
    const other = await workspace.tenant.token('user_other', 'viewer');
    const third = await workspace.tenant.token('user_third', 'viewer');
    await opened(instance, workspace.tenant, workspace.viewer);
    await opened(instance, workspace.tenant, workspace.viewer);
    const others = await opened(instance, workspace.tenant, other);
    await expectRefused(await connect(instance, workspace.tenant, other), /instance/);
    await expectRefused(await connect(instance, workspace.tenant, third), /instance/);
    others.close();
    const admitted = await admittedSoon(third);
    await admitted.waitFor((client) => client.lastEventId !== undefined);
  });

  it('admits no more than the limit when connects race, and logs each refusal as not done', async () => {
    const racing = await Promise.all(
      Array.from({ length: 4 }, () => connect(instance, workspace.tenant, workspace.viewer)),
    );
    expect(racing.map((stream) => stream.status).sort()).toEqual([200, 200, 429, 429]);
    for (const stream of racing.filter((candidate) => candidate.status === 429)) await expectRefused(stream, /./);
  });
});

describe('two instances on one database', () => {
  it('carries a write through A to a subscriber on B by NOTIFY alone; each instance reads each event once', async () => {
    const first = await serve({ listen: true });
    // B never polls during the test: only the news of A's commits can wake it.
    const second = await serve({ listen: true, realtime: { pollMs: 60_000 } });
    const workspace = await workspaceWithTasks(first, 'rt-instances');
    const carl = await workspace.tenant.token('user_carl', 'contractor');
    // On B two groups: the viewers (one), the contractor (a placeholder of its own).
    const viewers = [
      await opened(second, workspace.tenant, workspace.viewer),
      await opened(second, workspace.tenant, await workspace.tenant.token('user_vera', 'viewer')),
    ];
    const contractor = await opened(second, workspace.tenant, carl);
    const onFirst = await opened(first, workspace.tenant, workspace.viewer);
    const before = { first: first.cordon.realtime.evaluationCount, second: second.cordon.realtime.evaluationCount };
    const written: string[][] = [];
    for (const assigneeId of ['user_carl', 'user_bob', 'user_carl', 'user_bob']) {
      const task = await createTask(first, workspace.tenant, workspace.member, { assigneeId });
      written.push(['record_created', task.id]);
    }
    const renamed = written[0]![1]!;
    await as(first, workspace.tenant, workspace.member, 'patch', `/records/Task/${renamed}`)
      .send({ data: { title: 'renamed' } })
      .expect(200);
    written.push(['record_updated', renamed]);
    for (const stream of [...viewers, onFirst]) await stream.waitForEvents(written.length, 5_000);
    await contractor.waitForEvents(3, 5_000);
    // News with nothing new behind it, more of it than there were commits: nothing read twice.
    for (let index = 0; index < 3; index++)
      await owner.query(`select pg_notify('cordon_events', $1)`, [workspace.tenant.id]);
    await pause(300);
    for (const stream of [...viewers, onFirst]) {
      expect(summary(stream.events)).toEqual(written);
      expect(inOrder(stream.events)).toBe(true);
    }
    expect(summary(contractor.events)).toEqual([written[0], written[2], written[4]]);
    expect(second.cordon.realtime.evaluationCount - before.second).toBe(written.length * 2);
    expect(first.cordon.realtime.evaluationCount - before.first).toBe(written.length);

    // Then commits at once, with stray news among them: still every event once, evaluated once per group.
    const carls = new Set([written[0]![1], written[2]![1]]);
    const burst = await Promise.all([
      ...Array.from({ length: 12 }, async (_, index) => {
        const task = await createTask(first, workspace.tenant, workspace.member, {
          assigneeId: index % 3 ? 'user_bob' : 'user_carl',
        });
        if (index % 3 === 0) carls.add(task.id);
        return task.id;
      }),
      ...Array.from({ length: 6 }, () =>
        owner.query(`select pg_notify('cordon_events', $1)`, [workspace.tenant.id]).then(() => undefined),
      ),
    ]);
    const all = [...written.map(([, id]) => id), ...burst.filter((id) => id !== undefined)].sort();
    for (const stream of [...viewers, onFirst]) await stream.waitForEvents(all.length, 5_000);
    await contractor.waitForEvents(carls.size + 1, 5_000);
    await pause(300);
    for (const stream of [...viewers, onFirst]) {
      expect(stream.events.map((event) => event.data.recordId).sort()).toEqual(all);
      expect(inOrder(stream.events)).toBe(true);
    }
    expect(contractor.events).toHaveLength(carls.size + 1);
    expect(contractor.events.every((event) => carls.has(event.data.recordId as string))).toBe(true);
    expect(inOrder(contractor.events)).toBe(true);
    expect(second.cordon.realtime.evaluationCount - before.second).toBe(all.length * 2);
    expect(first.cordon.realtime.evaluationCount - before.first).toBe(all.length);
  });
});

describe('two workspaces', () => {
  let workspaces: Workspace[];
  beforeAll(async () => {
    workspaces = [await workspaceWithTasks(main, 'rt-side-a'), await workspaceWithTasks(main, 'rt-side-b')];
  });

  const operation = fc.record({
    workspace: fc.constantFrom(0, 1),
    kind: fc.constantFrom('create', 'create', 'update', 'delete'),
    writer: fc.constantFrom('admin', 'member', 'other'),
    pick: fc.nat(),
  });

  it('never lets an event of one reach a subscriber of the other, whatever the interleaving of writes', async () => {
    const otherTokens = await Promise.all(
      workspaces.map((workspace) => workspace.tenant.token('user_other', 'member')),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { minLength: 6, maxLength: 24 }), async (operations) => {
        // In each workspace: a viewer and an admin, with the same user ids in both.
        const before = streams.length;
        try {
          const subscribers = await Promise.all(
            workspaces.map(async (workspace) => [
              await opened(main, workspace.tenant, workspace.viewer),
              await opened(main, workspace.tenant, workspace.admin),
            ]),
          );
          const expected: string[][][] = [[], []];
          const live: string[][] = [[], []];
          // The two workspaces write at once, each in its own order.
          await Promise.all(
            [0, 1].map(async (side) => {
              const workspace = workspaces[side]!;
              for (const step of operations.filter((candidate) => candidate.workspace === side)) {
                const token = { admin: workspace.admin, member: workspace.member, other: otherTokens[side]! }[
                  step.writer
                ];
                const ids = live[side]!;
                const target = ids[step.pick % Math.max(ids.length, 1)];
                if (step.kind === 'create' || !target) {
                  const task = await createTask(main, workspace.tenant, token, { title: `side ${side}` });
                  ids.push(task.id);
                  expected[side]!.push(['record_created', task.id]);
                } else if (step.kind === 'update') {
                  await as(main, workspace.tenant, token, 'patch', `/records/Task/${target}`)
                    .send({ data: { title: `side ${side}, again`, assigneeId: `user_${step.pick % 7}` } })
                    .expect(200);
                  expected[side]!.push(['record_updated', target]);
                } else {
                  await as(main, workspace.tenant, workspace.admin, 'delete', `/records/Task/${target}`).expect(204);
                  ids.splice(ids.indexOf(target), 1);
                  expected[side]!.push(['record_deleted', target]);
                }
              }
            }),
          );
          for (const side of [0, 1]) {
            for (const stream of subscribers[side]!) await stream.waitForEvents(expected[side]!.length);
          }
          await pause(100);
          for (const side of [0, 1]) {
            for (const stream of subscribers[side]!) {
              expect(summary(stream.events)).toEqual(expected[side]);
              expect(inOrder(stream.events)).toBe(true);
              expect(JSON.stringify(stream.events)).not.toContain(`side ${1 - side}`);
            }
          }
        } finally {
          for (const stream of streams.splice(before)) stream.close();
        }
      }),
      { numRuns: 6 },
    );
  });
});

describe('the access_token query parameter', () => {
  it('never reaches a log line, whether the stream is served or refused', async () => {
    const workspace = await workspaceWithTasks(main, 'rt-logs');
    const token = workspace.viewer;
    const signature = token.split('.')[2]!;
    const nobody = await workspace.tenant.token('user_nobody', 'nobody');
    const expired = await workspace.tenant.token('user_late', 'viewer', { exp: Math.floor(Date.now() / 1000) - 600 });
    const before = logLines.length;
    const served = await connect(main, workspace.tenant, undefined, { query: `&access_token=${token}` });
    expect(served.status).toBe(200);
    await createTask(main, workspace.tenant, workspace.member, {});
    await served.waitForEvents(1);
    served.close();
    const refusals: [string, string, number][] = [
      ['Task', `&access_token=${nobody}`, 403],
      ['Nope', `&access_token=${token}`, 404],
      ['Task', `&access_token=${token}&lastEventId=abc`, 400],
      ['Task', `&access_token=${token}&colour=blue`, 400],
      ['Task', `&access_token=${expired}`, 401],
      ['Task', `&access_token=${token.slice(0, -4)}AAAA`, 401],
    ];
    for (const [structures, query, status] of refusals)
      expect((await connect(main, workspace.tenant, undefined, { structures, query })).status).toBe(status);
    // Every one of those requests has been logged (the stream once it ended).
    await eventually(
      async () =>
        logLines.slice(before).filter((line) => line.includes('"route":"/v1/workspaces/:ws/events"')).length >=
        refusals.length + 1,
    );
    const lines = logLines.slice(before);
    for (const secret of [token, signature, nobody.split('.')[2]!, expired.split('.')[2]!])
      expect(lines.filter((line) => line.includes(secret))).toEqual([]);
  });
});

describe('a member whose roles change', () => {
  it('stops receiving at the next event once its member roles no longer read, and receives again once they do', async () => {
    const team = await membersWorkspace(main.cordon, issuer, 'rt-members');
    await addMember(main.cordon, team, 'user_boss', ['admin']);
    await addMember(main.cordon, team, 'user_watch', ['viewer']);
    await addMember(main.cordon, team, 'user_peer', ['viewer']);
    const boss = await team.token('user_boss');
    await as(main, team, boss, 'post', '/structures')
      .send({ name: 'Task', fields: { title: { type: 'text', required: true } } })
      .expect(201);
    const watcher = await opened(main, team, await team.token('user_watch'));
    const peer = await opened(main, team, await team.token('user_peer'));
    const setRoles = (roles: string[]) =>
      main.cordon.admin().patch(`/v1/workspaces/${team.slug}/members/user_watch`).send({ roles }).expect(200);
    const titles: string[] = [];
    const write = async (title: string) => {
      await createTask(main, team, boss, { title });
      titles.push(title);
    };
    await write('seen');
    await watcher.waitForEvents(1);
    await setRoles(['auditor']);
    await write('unseen');
    // Its group has seen it, so has every group: the next change cannot be what decided it.
    await peer.waitForEvents(2);
    await setRoles(['viewer']);
    await write('seen again');
    await peer.waitForEvents(3);
    await watcher.waitForEvents(2);
    await pause(200);
    const titleOf = (event: ReceivedEvent) => (event.data.data as { data: { title: string } }).data.title;
    expect(peer.events.map(titleOf)).toEqual(titles);
    expect(watcher.events.map(titleOf)).toEqual(['seen', 'seen again']);
    expect(watcher.ended).toBe(false);
  });
});

describe('shutdown', () => {
  it('ends every open stream, so the server can close', async () => {
    const instance = await serve();
    const workspaces = [
      await workspaceWithTasks(instance, 'rt-close-a'),
      await workspaceWithTasks(instance, 'rt-close-b'),
    ];
    const open = [
      await opened(instance, workspaces[0]!.tenant, workspaces[0]!.viewer),
      await opened(instance, workspaces[0]!.tenant, workspaces[0]!.admin),
      await opened(instance, workspaces[1]!.tenant, workspaces[1]!.viewer),
    ];
    await instance.cordon.realtime.close();
    for (const stream of open) await stream.waitFor((client) => client.ended, 2_000);
    // No closeAllConnections: the server closes only once every stream has ended.
    const closed = new Promise((resolve, reject) =>
      instance.server.close((error) => (error ? reject(error) : resolve(true))),
    );
    const stillOpen = new Promise((resolve) => setTimeout(() => resolve(false), 2_000).unref());
    expect(await Promise.race([closed, stillOpen])).toBe(true);
  });
});
