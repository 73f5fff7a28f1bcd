import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { Webhook } from 'standardwebhooks';
import { eventually } from './support/eventually.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';
import { WebhookReceiver } from './support/webhook-receiver.ts';

/**
 * Deliveries end to end: records written through the API, the dispatcher and the job queue of
 * this app (on a database of its own, with a retry schedule of milliseconds), and receivers on
 * loopback that verify every signature with the standardwebhooks library over the raw body.
 */

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let admin: string;
const receivers: WebhookReceiver[] = [];

beforeAll(async () => {
  cordon = await startTestApp({
    ownDatabase: true,
    background: true,
    tuning: { delivery: { retrySchedule: [50, 100, 150] }, dispatcher: { intervalMs: 50 } },
  });
  owner = await ownerClient(cordon.ownerUrl);
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'deliver');
  admin = await tenant.token('user_admin', 'admin');
  await as('post', '/structures')
    .send({
      name: 'Task',
      fields: { title: { type: 'text', required: true }, status: { type: 'text' }, step: { type: 'integer' } },
    })
    .expect(201);
}, 60_000);
afterAll(async () => {
  for (const receiver of receivers) await receiver.close();
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const as = (method: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string, token = admin, on = tenant) =>
  cordon.http()[method](`/v1/workspaces/${on.slug}${path}`).auth(token, { type: 'bearer' });

async function receiver(): Promise<WebhookReceiver> {
  const started = await WebhookReceiver.start();
  receivers.push(started);
  return started;
}

/** A webhook trigger to `to`, whose secret the receiver then verifies with. */
async function webhook(to: WebhookReceiver, body: Record<string, unknown> = {}, on = tenant, token = admin) {
  const response = await as('post', '/triggers', token, on)
    .send({
      name: `hook-${randomUUID().slice(0, 8)}`,
      events: ['record_created'],
      ...body,
      action: { type: 'webhook', url: to.url },
    })
    .expect(201);
  to.secret = response.body.secret;
  return response.body as { id: string; secret: string };
}

const createTask = async (data: Record<string, unknown>, on = tenant, token = admin) =>
  (
    await as('post', '/records/Task', token, on)
      .send({ data: { title: 'a task', ...data } })
      .expect(201)
  ).body as { id: string };

const deliveriesOf = async (triggerId: string) =>
  (await as('get', `/triggers/${triggerId}/deliveries`).expect(200)).body.data as {
    id: string;
    status: string;
    attemptCount: number;
    eventType: string;
    attempts: { attempt: number; statusCode: number | null; error: string | null; nextAttemptAt: string | null }[];
  }[];

describe('a webhook delivery', () => {
  it('is signed by Standard Webhooks and carries { type, timestamp, data: <event> }', async () => {
    const to = await receiver();
    const trigger = await webhook(to, { structure: 'Task' });
    expect(trigger.secret).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    const task = await createTask({ status: 'todo' });
    await to.waitFor(1);
    const [delivery] = to.received;
    const [logged] = await deliveriesOf(trigger.id);
    expect(delivery!.id).toBe(logged!.id);
    expect(Number(delivery!.timestamp)).toBeCloseTo(Date.now() / 1000, -1);
    expect(delivery!.payload).toEqual({
      type: 'record_created',
      timestamp: expect.any(String),
      data: {
        id: expect.any(String),
        seq: expect.stringMatching(/^\d+$/),
        type: 'record_created',
        workspaceId: tenant.id,
        structure: 'Task',
        recordId: task.id,
        data: {
          after: expect.objectContaining({ id: task.id, title: 'a task', status: 'todo', createdBy: 'user_admin' }),
        },
        actor: { id: 'user_admin', kind: 'user' },
        requestId: expect.any(String),
        at: delivery!.payload.timestamp,
      },
    });
    expect(logged).toMatchObject({ status: 'delivered', attemptCount: 1, attempts: [{ attempt: 1, statusCode: 204 }] });
  });

  it('fires only for events matching the condition: { status: "done" } for done tasks only', async () => {
    const to = await receiver();
    await webhook(to, {
      events: ['record_created', 'record_updated'],
      structure: 'Task',
      condition: { status: 'done' },
    });
    const todo = await createTask({ status: 'todo', title: 'todo' });
    const done = await createTask({ status: 'done', title: 'done' });
    await as('patch', `/records/Task/${todo.id}`)
      .send({ data: { status: 'done' } })
      .expect(200);
    await as('patch', `/records/Task/${done.id}`)
      .send({ data: { status: 'todo' } })
      .expect(200);
    await to.waitFor(2);
    await new Promise((resolve) => setTimeout(resolve, 500));
    // Two records, two streams: their order between them is not promised.
    expect(
      to
        .events()
        .map((event) => `${event.type} ${event.recordId}`)
        .sort(),
    ).toEqual([`record_created ${done.id}`, `record_updated ${todo.id}`].sort());
    const updated = to.events('record_updated')[0]!;
    expect(updated.data).toMatchObject({ before: { status: 'todo' }, after: { status: 'done' } });
  });

  it('retries a receiver that fails twice, and the log shows all three attempts', async () => {
    const to = await receiver();
    to.answer = (_delivery, index) =>
      index < 2 ? { status: 503, body: `down ${index}` } : { status: 200, body: 'ok' };
    const trigger = await webhook(to);
    await createTask({});
    await to.waitFor(3);
    expect(new Set(to.received.map((delivery) => delivery.id)).size).toBe(1);
    await eventually(async () => (await deliveriesOf(trigger.id))[0]?.status === 'delivered');
    const [logged] = await deliveriesOf(trigger.id);
    expect(logged!.attemptCount).toBe(3);
    expect(logged!.attempts).toEqual([
      expect.objectContaining({
        attempt: 1,
        statusCode: 503,
        error: 'the receiver answered 503',
        responseBody: 'down 0',
      }),
      expect.objectContaining({ attempt: 2, statusCode: 503, responseBody: 'down 1' }),
      expect.objectContaining({ attempt: 3, statusCode: 200, error: null, responseBody: 'ok', nextAttemptAt: null }),
    ]);
    expect(logged!.attempts[0]!.nextAttemptAt).not.toBeNull();
  });
});

describe('Retry-After', () => {
  it('waits as long as a 429 asks, beyond the schedule', async () => {
    const to = await receiver();
    to.answer = (_delivery, index) =>
      index === 0 ? { status: 429, headers: { 'retry-after': '2' } } : { status: 204 };
    await webhook(to);
    await createTask({});
    await to.waitFor(2, 15_000);
    expect(to.received[1]!.at - to.received[0]!.at).toBeGreaterThanOrEqual(1_900);
  });
});

describe('disabling', () => {
  it('disables the trigger at once on 410, discards what was pending and says so in a trigger.disabled event', async () => {
    const gone = await receiver();
    gone.answer = () => ({ status: 410, body: 'gone for good' });
    const watcher = await receiver();
    const watching = await webhook(watcher, { events: ['trigger.disabled'] });
    const trigger = await webhook(gone, { structure: 'Task' });
    await createTask({});
    await watcher.waitFor(1, 10_000, 'trigger.disabled');
    const stored = (await as('get', `/triggers/${trigger.id}`).expect(200)).body;
    expect(stored).toMatchObject({ enabled: false, disabledReason: 'the receiver answered 410 Gone' });
    expect(watcher.events('trigger.disabled')[0]).toMatchObject({
      type: 'trigger.disabled',
      actor: { id: 'cordon', kind: 'system' },
      data: { triggerId: trigger.id, reason: 'the receiver answered 410 Gone' },
    });
    const [logged] = await deliveriesOf(trigger.id);
    expect(logged).toMatchObject({ status: 'failed', attemptCount: 1, attempts: [{ statusCode: 410 }] });
    // Disabled: later events go nowhere.
    await createTask({});
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(gone.received).toHaveLength(1);
    expect(await deliveriesOf(trigger.id)).toHaveLength(1);
    expect((await deliveriesOf(watching.id))[0]).toMatchObject({ eventType: 'trigger.disabled', status: 'delivered' });
  });

  it('disables the trigger when a delivery has failed every attempt of the schedule', async () => {
    const down = await receiver();
    down.answer = () => ({ status: 500 });
    const trigger = await webhook(down);
    await createTask({});
    await eventually(async () => !(await as('get', `/triggers/${trigger.id}`).expect(200)).body.enabled, 15_000);
    const stored = (await as('get', `/triggers/${trigger.id}`).expect(200)).body;
    expect(stored.disabledReason).toBe(
      'every attempt of a delivery failed (4 attempts); the last: the receiver answered 500',
    );
    expect(down.received).toHaveLength(4);
    const [logged] = await deliveriesOf(trigger.id);
    expect(logged).toMatchObject({ status: 'failed', attemptCount: 4 });
    expect(logged!.attempts.map((attempt) => attempt.nextAttemptAt === null)).toEqual([false, false, false, true]);
    const { rows } = await owner.query(
      "select data from events where workspace_id = $1 and type = 'trigger.disabled' and data ->> 'triggerId' = $2",
      [tenant.id, trigger.id],
    );
    expect(rows).toHaveLength(1);
  });
});

describe('order', () => {
  it('delivers 20 quick updates of one record in seq order to a slow receiver, a failure included', async () => {
    const to = await receiver();
    to.answer = (_delivery, index) => (index === 5 ? { status: 503 } : { status: 204, delayMs: 40 });
    await webhook(to, { events: ['record_created', 'record_updated'], structure: 'Task' });
    const task = await createTask({ step: 0 });
    for (let step = 1; step <= 20; step++) {
      await as('patch', `/records/Task/${task.id}`).send({ data: { step } }).expect(200);
    }
    await to.waitFor(22, 20_000);
    const delivered = to.received.filter((_delivery, index) => index !== 5).map((delivery) => delivery.payload.data);
    const seqs = delivered.map((event) => BigInt(event.seq as string));
    expect(seqs).toEqual([...seqs].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
    expect(new Set(seqs).size).toBe(21);
    expect(delivered.map((event) => (event.data.after as { step: number }).step)).toEqual(
      Array.from({ length: 21 }, (_item, step) => step),
    );
  });
});

describe('secret rotation', () => {
  it('signs with both secrets for 24 h, each signature verifying with its own secret', async () => {
    const to = await receiver();
    const trigger = await webhook(to);
    const rotated = (await as('post', `/triggers/${trigger.id}/rotate-secret`).expect(200)).body;
    expect(rotated.secret).toMatch(/^whsec_/);
    expect(rotated.secret).not.toBe(trigger.secret);
    expect(Date.parse(rotated.previousSecretExpiresAt) - Date.now()).toBeGreaterThan(23.9 * 3_600_000);
    await createTask({});
    await to.waitFor(1);
    const [delivery] = to.received;
    const signatures = delivery!.signature.split(' ');
    expect(signatures).toHaveLength(2);
    const headers = (signature: string) => ({
      'webhook-id': delivery!.id,
      'webhook-timestamp': delivery!.timestamp,
      'webhook-signature': signature,
    });
    expect(() => new Webhook(trigger.secret).verify(delivery!.body, headers(signatures[0]!))).not.toThrow();
    expect(() => new Webhook(rotated.secret).verify(delivery!.body, headers(signatures[1]!))).not.toThrow();
    expect(() => new Webhook(rotated.secret).verify(delivery!.body, headers(signatures[0]!))).toThrow();
    expect(() => new Webhook(trigger.secret).verify(delivery!.body, headers(delivery!.signature))).not.toThrow();

    // 24 hours later: the old secret no longer signs.
    await owner.query(
      `update trigger_secrets set expires_at = now() - interval '1 second' where trigger_id = $1 and expires_at is not null`,
      [trigger.id],
    );
    to.secret = rotated.secret;
    await createTask({});
    await to.waitFor(2);
    const later = to.received[1]!;
    expect(later.signature.split(' ')).toHaveLength(1);
    const laterHeaders = {
      'webhook-id': later.id,
      'webhook-timestamp': later.timestamp,
      'webhook-signature': later.signature,
    };
    expect(() => new Webhook(trigger.secret).verify(later.body, laterHeaders)).toThrow();
  });
});
