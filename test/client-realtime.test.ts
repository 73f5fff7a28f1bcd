import {
  Cordon,
  CordonError,
  type RealtimeEvent,
  type RealtimeTuning,
  type Token,
} from '../clients/typescript/src/index.ts';
import { eventually } from './support/eventually.ts';
import { EventStreamServer, open, refuse, send, type StreamConnection } from './support/event-stream-server.ts';

/**
 * The client's side of realtime against a stand-in that speaks Cordon's SSE wire format: resume
 * with Last-Event-ID, token renewal, reset, server errors, refusals at connect, stalls, unsubscribe.
 */

let stand: EventStreamServer;
beforeAll(async () => {
  stand = await EventStreamServer.start();
});
afterAll(() => stand.close());

const record = (id: string, data: Record<string, unknown>) => ({
  id,
  structure: 'Task',
  data,
  createdBy: 'user_ann',
  createdAt: '2026-01-01T00:00:00.000Z',
  updatedAt: '2026-01-01T00:00:00.000Z',
  version: 1,
});
const created = (seq: string, id = `task-${seq}`) => ({
  id: seq,
  event: 'record_created',
  data: { event: 'record_created', structure: 'Task', recordId: id, seq, data: record(id, { title: seq }) },
});
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function subscribe(
  script: ((connection: StreamConnection) => void)[],
  options: { token?: Token; tuning?: Partial<RealtimeTuning>; lastEventId?: string; onEvent?: () => void } = {},
) {
  stand.reset(script);
  const events: RealtimeEvent[] = [];
  const errors: { error: Error; retrying: boolean }[] = [];
  const cordon = new Cordon({
    baseUrl: stand.baseUrl,
    workspace: 'acme',
    token: options.token ?? 'token-1',
    realtime: { minDelayMs: 20, maxDelayMs: 100, ...options.tuning },
  });
  const subscription = cordon.realtime.subscribe({
    structures: ['Task', 'Project'],
    onEvent: (event) => {
      events.push(event);
      options.onEvent?.();
    },
    onError: (error, { retrying }) => errors.push({ error, retrying }),
    ...(options.lastEventId !== undefined && { lastEventId: options.lastEventId }),
  });
  subscriptions.push(subscription);
  return { events, errors, subscription };
}
const subscriptions: { unsubscribe(): void }[] = [];
afterEach(() => subscriptions.splice(0).forEach((subscription) => subscription.unsubscribe()));

it('delivers record events in order and resumes with Last-Event-ID after the connection drops', async () => {
  const { events, errors, subscription } = subscribe([
    (connection) => {
      open(connection);
      connection.response.write(': ping\n\n');
      send(connection, created('1'));
      send(connection, {
        id: '2',
        event: 'record_updated',
        data: {
          event: 'record_updated',
          structure: 'Task',
          recordId: 'task-1',
          seq: '2',
          data: { before: record('task-1', { title: '1' }), after: record('task-1', { title: 'one' }) },
        },
      });
      connection.response.end();
    },
    (connection) => {
      open(connection);
      send(connection, {
        id: '3',
        event: 'record_deleted',
        data: {
          event: 'record_deleted',
          structure: 'Task',
          recordId: 'task-1',
          seq: '3',
          data: { before: record('task-1', { title: 'one' }) },
          reason: 'left_view',
        },
      });
    },
  ]);
  await eventually(async () => events.length === 3);
  expect(events.map((event) => [event.event, event.seq])).toEqual([
    ['record_created', '1'],
    ['record_updated', '2'],
    ['record_deleted', '3'],
  ]);
  const [first, second] = [await stand.connection(1), await stand.connection(2)];
  expect(first.url.pathname).toBe('/v1/workspaces/acme/events');
  expect(first.url.searchParams.get('structures')).toBe('Task,Project');
  expect(first.headers).toMatchObject({ authorization: 'Bearer token-1', accept: 'text/event-stream' });
  expect(first.headers['last-event-id']).toBeUndefined();
  expect(second.headers['last-event-id']).toBe('2');
  expect(events[1]).toMatchObject({ data: { after: { data: { title: 'one' } } } });
  expect(events[2]).toMatchObject({ recordId: 'task-1', reason: 'left_view' });
  expect(subscription.lastEventId).toBe('3');
  expect(errors).toEqual([]);
});

it('resumes from the position a stream starts at when it drops before any event', async () => {
  const { events, subscription } = subscribe([
    (connection) => {
      open(connection);
      connection.response.write('id: 4211\n\n');
      connection.response.end();
    },
  ]);
  expect((await stand.connection(2)).headers['last-event-id']).toBe('4211');
  expect(subscription.lastEventId).toBe('4211');
  expect(events).toEqual([]);
});

it('starts after the lastEventId it is given', async () => {
  subscribe([], { lastEventId: '41' });
  expect((await stand.connection(1)).headers['last-event-id']).toBe('41');
});

it('asks for a new token on token_expired and reconnects at once', async () => {
  const calls: unknown[] = [];
  const { events, errors } = subscribe(
    [
      (connection) => {
        open(connection);
        send(connection, created('5'));
        send(connection, { event: 'token_expired', data: { event: 'token_expired' } });
        connection.response.end();
      },
    ],
    {
      token: async (options) => {
        calls.push(options);
        return `token-${calls.length}`;
      },
      tuning: { minDelayMs: 10_000, maxDelayMs: 10_000 },
    },
  );
  const second = await stand.connection(2);
  expect(second.at - (await stand.connection(1)).at).toBeLessThan(2_000);
  expect(second.headers).toMatchObject({ authorization: 'Bearer token-2', 'last-event-id': '5' });
  expect(calls).toEqual([undefined, { skipCache: true }]);
  expect(events).toHaveLength(1);
  expect(errors).toEqual([]);
});

it('reconnects at once, with the same token and Last-Event-ID, when the instance ends the stream with shutdown', async () => {
  const calls: unknown[] = [];
  const { events, errors } = subscribe(
    [
      (connection) => {
        open(connection);
        send(connection, created('8'));
        send(connection, { event: 'shutdown', data: { event: 'shutdown' } });
        connection.response.end();
      },
    ],
    {
      token: async (options) => {
        calls.push(options);
        return 'token-1';
      },
      tuning: { minDelayMs: 10_000, maxDelayMs: 10_000 },
    },
  );
  const second = await stand.connection(2);
  expect(second.at - (await stand.connection(1)).at).toBeLessThan(2_000);
  expect(second.headers).toMatchObject({ authorization: 'Bearer token-1', 'last-event-id': '8' });
  expect(calls.filter((options) => options !== undefined)).toEqual([]);
  expect(events).toHaveLength(1);
  expect(errors).toEqual([]);
});

it('surfaces reset to onEvent and continues from its position', async () => {
  const { events } = subscribe([
    (connection) => {
      open(connection);
      send(connection, created('7'));
      send(connection, { id: '90', event: 'reset', data: { event: 'reset', seq: '90' } });
      connection.response.end();
    },
    (connection) => {
      open(connection);
      send(connection, created('91'));
    },
  ]);
  await eventually(async () => events.length === 3);
  expect(events).toEqual([
    expect.objectContaining({ event: 'record_created', seq: '7' }),
    { event: 'reset', seq: '90' },
    expect.objectContaining({ event: 'record_created', seq: '91' }),
  ]);
  expect((await stand.connection(2)).headers['last-event-id']).toBe('90');
});

it('reports a stream the server ended with an error event, and reconnects after a backoff', async () => {
  const { errors } = subscribe(
    [
      (connection) => {
        open(connection);
        send(connection, created('11'));
        send(connection, { event: 'error', data: { event: 'error', code: 'too_slow', detail: 'buffer full' } });
        connection.response.end();
      },
    ],
    { tuning: { minDelayMs: 300, maxDelayMs: 300 } },
  );
  const second = await stand.connection(2);
  expect(second.at - (await stand.connection(1)).at).toBeGreaterThanOrEqual(140);
  expect(second.headers['last-event-id']).toBe('11');
  expect(errors).toHaveLength(1);
  expect(errors[0]!.retrying).toBe(true);
  expect(errors[0]!.error).toBeInstanceOf(CordonError);
  expect(errors[0]!.error).toMatchObject({ code: 'too_slow', detail: 'buffer full' });
});

describe('refusals at connect', () => {
  it('renews a refused token once and connects with the new one', async () => {
    const calls: unknown[] = [];
    const { errors } = subscribe([(connection) => refuse(connection, 401, 'token_expired')], {
      token: (options) => {
        calls.push(options);
        return `token-${calls.length}`;
      },
    });
    expect((await stand.connection(2)).headers.authorization).toBe('Bearer token-2');
    expect(calls).toEqual([undefined, { skipCache: true }]);
    expect(errors).toEqual([]);
  });

  it('gives up when the renewed token is refused too, or the token is a string', async () => {
    for (const token of [() => 'bad', 'bad'] as const) {
      const refused = (connection: StreamConnection) => refuse(connection, 401, 'token_signature');
      const { errors } = subscribe([refused, refused, refused], { token });
      await eventually(async () => errors.length === 1);
      await sleep(150);
      expect(stand.connections).toHaveLength(typeof token === 'string' ? 1 : 2);
      expect(errors[0]).toEqual({
        error: expect.objectContaining({ status: 401, code: 'token_signature' }),
        retrying: false,
      });
    }
  });

  it.each([
    [403, 'forbidden'],
    [404, 'structure_not_found'],
    [400, 'validation_failed'],
  ])('stops at %i %s instead of retrying forever', async (status, code) => {
    const { errors } = subscribe([(connection) => refuse(connection, status, code)]);
    await eventually(async () => errors.length === 1);
    await sleep(150);
    expect(stand.connections).toHaveLength(1);
    expect(errors[0]!.error).toBeInstanceOf(CordonError);
    expect(errors[0]).toEqual({ error: expect.objectContaining({ status, code }), retrying: false });
  });

  it('backs off on 429 for at least its Retry-After, and on 503', async () => {
    const { errors } = subscribe([
      (connection) => refuse(connection, 429, 'too_many_streams', { 'retry-after': '1' }),
      (connection) => refuse(connection, 503, 'database_unavailable'),
    ]);
    const [first, third] = [await stand.connection(1), await stand.connection(3)];
    expect((await stand.connection(2)).at - first.at).toBeGreaterThanOrEqual(950);
    expect(third.headers.authorization).toBe('Bearer token-1');
    expect(errors.map(({ error, retrying }) => [(error as CordonError).code, retrying])).toEqual([
      ['too_many_streams', true],
      ['database_unavailable', true],
    ]);
  });
});

it('reconnects when the stream goes silent for longer than the heartbeat timeout', async () => {
  const { errors } = subscribe([], { tuning: { heartbeatTimeoutMs: 200 } });
  const second = await stand.connection(2);
  expect(second.at - (await stand.connection(1)).at).toBeGreaterThanOrEqual(190);
  expect(errors[0]).toEqual({
    error: expect.objectContaining({ message: expect.stringMatching(/No data/) }),
    retrying: true,
  });
});

it('keeps the stream when onEvent throws, and reports the exception', async () => {
  const { events, errors } = subscribe(
    [
      (connection) => {
        open(connection);
        send(connection, created('1'));
        send(connection, created('2'));
      },
    ],
    {
      onEvent: () => {
        throw new Error('the app broke');
      },
    },
  );
  await eventually(async () => events.length === 2);
  expect(errors).toEqual([
    { error: new Error('the app broke'), retrying: true },
    { error: new Error('the app broke'), retrying: true },
  ]);
  expect(stand.connections).toHaveLength(1);
});

describe('unsubscribe', () => {
  it('closes an open stream and never reconnects', async () => {
    const { events, errors, subscription } = subscribe([
      (connection) => {
        open(connection);
        send(connection, created('1'));
      },
    ]);
    await eventually(async () => events.length === 1);
    subscription.unsubscribe();
    await (
      await stand.connection(1)
    ).closed;
    await sleep(150);
    expect(stand.connections).toHaveLength(1);
    expect(errors).toEqual([]);
  });

  it('stops a pending reconnection', async () => {
    const { errors, subscription } = subscribe([(connection) => refuse(connection, 503, 'database_unavailable')], {
      tuning: { minDelayMs: 200, maxDelayMs: 200 },
    });
    await eventually(async () => errors.length === 1);
    subscription.unsubscribe();
    await sleep(300);
    expect(stand.connections).toHaveLength(1);
  });

  it('stops before connecting when the token is still being fetched', async () => {
    let release: (token: string) => void = () => undefined;
    const { errors, subscription } = subscribe([], {
      token: () => new Promise<string>((resolve) => (release = resolve)),
    });
    subscription.unsubscribe();
    release('late');
    await sleep(100);
    expect(stand.connections).toHaveLength(0);
    expect(errors).toEqual([]);
  });
});
