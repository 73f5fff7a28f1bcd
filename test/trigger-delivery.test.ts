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

/** Another workspace with its admin's token and a Task structure of its own. */
async function anotherTenant(prefix: string) {
  const other = await createTenant(cordon, issuer, prefix);
  const otherAdmin = await other.token('user_admin', 'admin');
  await as('post', '/structures', otherAdmin, other)
    .send({ name: 'Task', fields: { title: { type: 'text' } } })
    .expect(201);
  return { other, otherAdmin };
}

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
    // The attempt is logged once the receiver's answer is back, which can be after it got the request.
    await eventually(async () => (await deliveriesOf(trigger.id))[0]?.status !== 'pending');
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
          version: 1,
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

describe('a trigger changed while its stream drains', () => {
  // One drain job attempts many deliveries of a stream; each goes where the trigger points when it
  // is attempted, not where it pointed when the job began (an endpoint given up, say).
  it('sends the rest of the stream to the new URL', async () => {
    const [before, after] = [await receiver(), await receiver()];
    before.answer = () => ({ status: 204, delayMs: 300 });
    const body = { name: `moved-${randomUUID().slice(0, 8)}`, events: ['record_created', 'record_updated'] };
    const { id, secret } = await webhook(before, { ...body, structure: 'Task' });
    after.secret = secret;
    const task = await createTask({ step: 0 });
    for (let step = 1; step <= 5; step++)
      await as('patch', `/records/Task/${task.id}`).send({ data: { step } }).expect(200);
    await before.waitFor(1);
    await as('put', `/triggers/${id}`)
      .send({ ...body, structure: 'Task', action: { type: 'webhook', url: after.url } })
      .expect(200);
    await eventually(async () => before.received.length + after.received.length >= 6);
    // The attempt in flight when the trigger changed may still reach the old URL; none after it.
    expect(before.received.length).toBeLessThanOrEqual(2);
    const steps = [...before.events(), ...after.events()].map((event) => (event.data.after as { step: number }).step);
    expect(steps).toEqual([0, 1, 2, 3, 4, 5]);
  });
});

describe('a secret sealed under another key (ADMIN_API_KEY changed)', () => {
  it('fails its deliveries at once, not for ever pending; a rotated secret signs again', async () => {
    const to = await receiver();
    const { id } = await webhook(to, { events: ['record_created'], structure: 'Task' });
    await owner.query(`update trigger_secrets set secret = 'sealed-under-another-key' where trigger_id = $1`, [id]);
    await createTask({ title: 'unsigned' });
    await eventually(async () => (await deliveriesOf(id))[0]?.status === 'failed');
    expect((await deliveriesOf(id))[0]!.attempts[0]!.error).toMatch(/no signing secret could be opened/);
    to.secret = (await as('post', `/triggers/${id}/rotate-secret`).expect(200)).body.secret;
    await createTask({ title: 'signed' });
    await to.waitFor(1);
    expect((to.events()[0]!.data.after as { title: string }).title).toBe('signed');
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

describe('workspaces', () => {
  it("never delivers another workspace's events to a trigger", async () => {
    const { other, otherAdmin } = await anotherTenant('deliver-other');
    const ours = await receiver();
    const theirs = await receiver();
    await webhook(ours, { events: ['record_created', 'invitation.created'] });
    await webhook(theirs, { events: ['record_created'] }, other, otherAdmin);
    const created = [];
    for (let index = 0; index < 3; index++) {
      created.push((await createTask({})).id);
      await createTask({}, other, otherAdmin);
    }
    await as('post', '/invitations', otherAdmin, other)
      .send({ email: 'elsewhere@example.com', roles: ['viewer'] })
      .expect(201);
    await theirs.waitFor(3);
    await ours.waitFor(3);
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(ours.events().map((event) => event.workspaceId)).toEqual([tenant.id, tenant.id, tenant.id]);
    expect(
      ours
        .events()
        .map((event) => event.recordId)
        .sort(),
    ).toEqual(created.sort());
    expect(theirs.events().every((event) => event.workspaceId === other.id)).toBe(true);
  });
});

describe('other events', () => {
  it('delivers invitation.created with its accept URL opened, for the app to email', async () => {
    const to = await receiver();
    await webhook(to, { events: ['invitation.created'] });
    const invitation = (
      await as('post', '/invitations')
        .send({ email: 'new@example.com', roles: ['viewer'] })
        .expect(201)
    ).body;
    await to.waitFor(1);
    const [event] = to.events();
    expect(event).toMatchObject({
      type: 'invitation.created',
      workspaceId: tenant.id,
      data: { email: 'new@example.com', roles: ['viewer'], acceptUrl: invitation.acceptUrl },
    });
    expect(event).not.toHaveProperty('recordId');
  });

  // Only what Cordon sealed is opened for receivers: a function's notification data is sent as the
  // function wrote it, even shaped { sealed }, so no ciphertext (another tenant's webhook secret
  // copied from a backup, say) comes out decrypted, and such data never stalls its delivery.
  it('sends a notification whose data looks sealed exactly as the function wrote it', async () => {
    const { other, otherAdmin } = await anotherTenant('sealed-victim');
    const victim = (
      await as('post', '/triggers', otherAdmin, other)
        .send({ name: 'v', events: ['invitation.created'], action: { type: 'webhook', url: 'https://example.com/v' } })
        .expect(201)
    ).body;
    const {
      rows: [copied],
    } = await owner.query('select secret from trigger_secrets where trigger_id = $1', [victim.id]);
    // Each as a notification's whole `data`: the shape a sealed value has in Cordon's own events.
    const letters = [{ sealed: copied.secret }, { sealed: 'yes' }];
    const name = `sealed-${randomUUID().slice(0, 8)}`;
    await as('post', '/functions')
      .send({
        name,
        roles: ['admin'],
        code: `async function run(event, context) {
          for (const data of ${JSON.stringify(letters)})
            await context.api.sendNotification({ type: 'letter', to: 'u1', template: 'post', data });
        }`,
      })
      .expect(201);
    await as('post', '/triggers')
      .send({ name, events: ['record_created'], structure: 'Task', action: { type: 'function', function: name } })
      .expect(201);
    const to = await receiver();
    const hook = await webhook(to, { events: ['notification.requested'] });
    await createTask({ title: 'letter' });
    await to.waitFor(2, 15_000);
    // Two events, two streams: in no particular order.
    const received = to.events().map((event) => event.data.data);
    expect(received).toHaveLength(2);
    expect(received).toEqual(expect.arrayContaining(letters));
    await eventually(async () => (await deliveriesOf(hook.id)).every((delivery) => delivery.status === 'delivered'));
  });

  it('runs a function trigger’s function once per event; a run that throws is logged and not retried', async () => {
    await as('post', '/functions')
      .send({
        name: 'count-tasks',
        code: `async function run(event) {
          if (event.data.after.title === 'boom') throw new Error('no tasks called boom');
          return { title: event.data.after.title };
        }`,
      })
      .expect(201);
    const trigger = (
      await as('post', '/triggers')
        .send({ name: 'run-count', events: ['record_created'], action: { type: 'function', function: 'count-tasks' } })
        .expect(201)
    ).body;
    expect(trigger).not.toHaveProperty('secret');
    await createTask({ title: 'fine' });
    await createTask({ title: 'boom' });
    // Both events' deliveries, settled (the second may not be dispatched yet when the first is).
    await eventually(async () => {
      const deliveries = await deliveriesOf(trigger.id);
      return deliveries.length === 2 && deliveries.every((delivery) => delivery.status !== 'pending');
    });
    await new Promise((resolve) => setTimeout(resolve, 300));
    const logged = await deliveriesOf(trigger.id);
    expect(logged.map(({ status, attemptCount }) => ({ status, attemptCount }))).toEqual(
      expect.arrayContaining([
        { status: 'delivered', attemptCount: 1 },
        { status: 'failed', attemptCount: 1 },
      ]),
    );
    expect(logged).toHaveLength(2);
    const failed = logged.find((delivery) => delivery.status === 'failed')!;
    expect(failed.attempts[0]).toMatchObject({ attempt: 1, statusCode: null, nextAttemptAt: null });
    expect(failed.attempts[0]!.error).toContain('no tasks called boom');
    const runs = (await as('get', '/functions/count-tasks/runs').expect(200)).body.data as {
      status: string;
      triggerId: string;
      result: unknown;
    }[];
    expect(
      runs.map(({ status, triggerId }) => ({ status, triggerId })).sort((a, b) => a.status.localeCompare(b.status)),
    ).toEqual([
      { status: 'failed', triggerId: trigger.id },
      { status: 'succeeded', triggerId: trigger.id },
    ]);
    expect(runs.find((run) => run.status === 'succeeded')!.result).toEqual({ title: 'fine' });
    await as('delete', `/triggers/${trigger.id}`).expect(204);
  });

  it('stops function triggers at FUNCTION_CHAIN_DEPTH and fires nothing for events that fire no triggers', async () => {
    await as('post', '/functions').send({ name: 'notify', code: 'async function run() {}' }).expect(201);
    const to = await receiver();
    const hook = await webhook(to);
    const run = (
      await as('post', '/triggers')
        .send({ name: 'chain', events: ['record_created'], action: { type: 'function', function: 'notify' } })
        .expect(201)
    ).body;
    const append = async (depth: number, fireTriggers: boolean, title: string) => {
      await cordon.database.withWorkspace(tenant.id, (scope) =>
        cordon.events.appendIn(
          scope,
          { actor: { id: 'function:notify', kind: 'function' }, requestId: null, depth, fireTriggers },
          [{ type: 'record_created', structure: 'Task', recordId: randomUUID(), data: { after: { title } } }],
        ),
      );
      cordon.events.committed(tenant.id);
    };
    await append(2, true, 'deep');
    await append(3, true, 'deepest');
    await append(0, false, 'invoked by hand');
    await to.waitFor(2);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const titles = (deliveries: Awaited<ReturnType<typeof deliveriesOf>>) =>
      deliveries.map((delivery) => delivery.eventType);
    // Two records, two streams: in either order.
    expect(
      to
        .events()
        .map((event) => (event.data.after as { title: string }).title)
        .sort(),
    ).toEqual(['deep', 'deepest']);
    expect(titles(await deliveriesOf(hook.id))).toHaveLength(2);
    // The function trigger fired for depth 2 only: a run at depth 3 would write depth-4 events.
    const { rows } = await owner.query(
      `select event -> 'data' -> 'after' ->> 'title' as title from deliveries where trigger_id = $1`,
      [run.id],
    );
    expect(rows).toEqual([{ title: 'deep' }]);
    await as('delete', `/triggers/${run.id}`).expect(204);
  });
});

describe('counting deliveries', () => {
  /** A function trigger whose run fails for a task titled "boom" (failed, not retried). */
  async function tally(on: TestTenant, token: string) {
    await as('post', '/functions', token, on)
      .send({ name: 'tally', code: `async function run(event) { if (event.data.after.title === 'boom') throw 1 }` })
      .expect(201);
    const trigger = await as('post', '/triggers', token, on)
      .send({ name: 'tally', events: ['record_created'], action: { type: 'function', function: 'tally' } })
      .expect(201);
    const deliveries = async (query = '') =>
      (await as('get', `/triggers/${trigger.body.id}/deliveries?count=true${query}`, token, on).expect(200)).body;
    const settled = (total: number) =>
      eventually(async () => (await deliveries()).count === total && (await deliveries('&status=pending')).count === 0);
    return { id: trigger.body.id as string, deliveries, settled };
  }

  it("counts a trigger's deliveries in a status, across pages, never another workspace's", async () => {
    const { other, otherAdmin } = await anotherTenant('count-other');
    const ours = await tally(tenant, admin);
    const theirs = await tally(other, otherAdmin);
    for (const title of ['fine', 'fine', 'boom', 'boom']) {
      await createTask({ title });
      await createTask({ title }, other, otherAdmin);
    }
    await createTask({ title: 'fine' });
    await ours.settled(5);
    await theirs.settled(4);
    const page = await ours.deliveries('&limit=2');
    expect(page).toMatchObject({ count: 5, nextCursor: expect.any(String) });
    expect(page.data).toHaveLength(2);
    expect((await ours.deliveries(`&limit=2&cursor=${page.nextCursor}`)).count).toBe(5);
    expect((await ours.deliveries('&status=delivered&limit=1')).count).toBe(3);
    expect((await ours.deliveries('&status=failed')).count).toBe(2);
    expect((await as('get', `/triggers/${ours.id}/deliveries`).expect(200)).body).not.toHaveProperty('count');
    await as('delete', `/triggers/${ours.id}`).expect(204);
  });
});

describe('redeliver', () => {
  let trigger: { id: string };
  let to: WebhookReceiver;
  let deliveryId: string;
  const redeliver = (id: string, token: string | null = admin, on = tenant) => {
    const request = cordon.http().post(`/v1/workspaces/${on.slug}/triggers/deliveries/${id}/redeliver`);
    return token ? request.auth(token, { type: 'bearer' }) : request;
  };
  const logged = async () => (await deliveriesOf(trigger.id)).find((delivery) => delivery.id === deliveryId)!;

  beforeAll(async () => {
    to = await receiver();
    trigger = await webhook(to);
    await createTask({});
    await to.waitFor(1);
    deliveryId = to.received[0]!.id;
    await eventually(async () => (await logged())?.status === 'delivered');
  });

  it('queues a delivered delivery again, with the same webhook-id, and says so in the log', async () => {
    const response = await redeliver(deliveryId).expect(202);
    expect(response.body).toMatchObject({
      id: deliveryId,
      status: 'pending',
      redeliveries: 1,
      redeliveredBy: 'user_admin',
    });
    await to.waitFor(2);
    expect(to.received[1]!.id).toBe(deliveryId);
    expect(to.received[1]!.body).toBe(to.received[0]!.body);
    await eventually(async () => (await logged()).status === 'delivered');
    expect(await logged()).toMatchObject({ attemptCount: 2, redeliveries: 1, redeliveredAt: expect.any(String) });
  });

  it('refuses another workspace, a lower role and no token, and changes nothing', async () => {
    const other = await createTenant(cordon, issuer, 'redeliver-other');
    const otherAdmin = await other.token('user_admin', 'admin');
    const before = await logged();
    expect((await redeliver(deliveryId, otherAdmin).expect(403)).body.code).toBe('org_mismatch');
    expect((await redeliver(deliveryId, otherAdmin, other).expect(404)).body.code).toBe('delivery_not_found');
    const member = await tenant.token('user_member', 'member');
    expect((await redeliver(deliveryId, member).expect(403)).body.code).toBe('forbidden');
    expect((await redeliver(deliveryId, null).expect(401)).body.code).toBe('token_missing');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(await logged()).toEqual(before);
    expect(to.received).toHaveLength(2);
  });

  it('refuses a pending delivery and one whose trigger is disabled', async () => {
    to.answer = () => ({ status: 204, delayMs: 1_500 });
    await createTask({});
    await to.waitFor(3);
    const pending = to.received[2]!.id;
    expect((await redeliver(pending).expect(409)).body.code).toBe('delivery_pending');
    await eventually(async () => (await deliveriesOf(trigger.id))[0]!.status === 'delivered');
    const current = (await as('get', `/triggers/${trigger.id}`).expect(200)).body;
    await as('put', `/triggers/${trigger.id}`)
      .send({ name: current.name, events: current.events, action: current.action, enabled: false })
      .expect(200);
    expect((await redeliver(deliveryId).expect(409)).body.code).toBe('trigger_disabled');
    expect((await redeliver(randomUUID()).expect(404)).body.code).toBe('delivery_not_found');
  });
});

describe('in production', () => {
  let production: TestApp;
  beforeAll(async () => {
    production = await startTestApp({
      ownDatabase: true,
      background: true,
      env: {
        NODE_ENV: 'production',
        ADMIN_API_KEY: randomUUID() + randomUUID(),
        DATABASE_URL: 'postgres://unused@127.0.0.1:1/unused',
        INVITATION_ACCEPT_URL: 'https://app.example.com/accept/{token}',
      },
    });
  }, 60_000);
  afterAll(() => production.close());

  it('refuses plain http and private literal addresses when the trigger is written', async () => {
    const slug = `prod-${randomUUID().slice(0, 8)}`;
    await production.admin().post('/v1/workspaces').send({ slug, name: 'Prod' }).expect(201);
    for (const url of [
      'http://example.com/hook',
      'https://127.0.0.1/hook',
      'https://[::1]/hook',
      'https://10.1.2.3/hook',
    ]) {
      const response = await production
        .admin()
        .post(`/v1/workspaces/${slug}/triggers`)
        .send({ name: 'private', events: ['invitation.created'], action: { type: 'webhook', url } })
        .expect(400);
      expect(response.body.errors[0].pointer).toBe('/action/url');
    }
  });

  it('refuses to deliver to a name that leads to a private address, without a connection', async () => {
    const to = await receiver();
    const slug = `prod-${randomUUID().slice(0, 8)}`;
    await production.admin().post('/v1/workspaces').send({ slug, name: 'Prod' }).expect(201);
    const trigger = (
      await production
        .admin()
        .post(`/v1/workspaces/${slug}/triggers`)
        .send({
          name: 'loopback by name',
          events: ['invitation.created'],
          action: { type: 'webhook', url: `https://localhost:${to.port}/hooks/cordon` },
        })
        .expect(201)
    ).body;
    await production
      .admin()
      .post(`/v1/workspaces/${slug}/invitations`)
      .send({ email: 'someone@example.com', roles: ['viewer'] })
      .expect(201);
    const deliveries = async () =>
      (await production.admin().get(`/v1/workspaces/${slug}/triggers/${trigger.id}/deliveries`).expect(200)).body.data;
    await eventually(async () => (await deliveries())[0]?.status === 'failed', 10_000);
    const [delivery] = await deliveries();
    expect(delivery.attempts).toEqual([
      expect.objectContaining({
        attempt: 1,
        statusCode: null,
        error: expect.stringContaining('is not a public address'),
      }),
    ]);
    expect(to.connections).toBe(0);
    expect(to.received).toHaveLength(0);
  });
});
