import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import type pg from 'pg';
import { EventDispatcher } from '../src/events/dispatcher.ts';
import { EventLog, type StoredEvent } from '../src/events/event-log.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let admin: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'events');
  admin = await tenant.token('user_admin', 'admin');
  await as('post', '/structures')
    .send({ name: 'Task', fields: { title: { type: 'text', required: true }, done: { type: 'boolean' } } })
    .expect(201);
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const as = (method: 'get' | 'post' | 'patch' | 'delete', path: string, token = admin) =>
  cordon
    .http()
    [method](`/v1/workspaces/${tenant.slug}${path}`)
    .auth(token, { type: 'bearer' })
    .set('x-request-id', randomUUID());

const eventsOf = async (recordId: string) =>
  (
    await owner.query(
      'select seq, type, structure, record_id, data, actor, request_id from events where workspace_id = $1 and record_id = $2 order by seq',
      [tenant.id, recordId],
    )
  ).rows;

describe('record events', () => {
  it('writes one event per create, update and delete, with the documents before and after and the version', async () => {
    const created = await as('post', '/records/Task')
      .send({ data: { title: 'a' } })
      .expect(201);
    const id = created.body.id as string;
    const updated = await as('patch', `/records/Task/${id}`)
      .send({ data: { done: true } })
      .expect(200);
    const deleted = await as('delete', `/records/Task/${id}`).expect(204);
    const events = await eventsOf(id);
    const document = (body: typeof created.body) => ({
      ...body.data,
      id: body.id,
      createdBy: body.createdBy,
      createdAt: body.createdAt,
      updatedAt: body.updatedAt,
    });
    expect(events.map((event) => event.type)).toEqual(['record_created', 'record_updated', 'record_deleted']);
    expect(events[0].data).toEqual({ after: document(created.body), version: 1 });
    expect(events[1].data).toEqual({ before: document(created.body), after: document(updated.body), version: 2 });
    expect(events[2].data).toEqual({ before: document(updated.body), version: 2 });
    expect(events.map((event) => event.request_id)).toEqual(
      [created, updated, deleted].map((response) => response.headers['x-request-id']),
    );
    expect(events[0].actor).toEqual({ id: 'user_admin', kind: 'user' });
    expect(events[0].structure).toBe('Task');
    expect(Number(events[1].seq)).toBeGreaterThan(Number(events[0].seq));
  });

  it('writes no event for a change that was refused or failed', async () => {
    const id = (
      await as('post', '/records/Task')
        .send({ data: { title: 'b' } })
        .expect(201)
    ).body.id as string;
    const viewer = await tenant.token('user_viewer', 'viewer');
    await as('patch', `/records/Task/${id}`, viewer)
      .send({ data: { done: true } })
      .expect(403);
    await as('patch', `/records/Task/${id}`)
      .send({ data: { title: 42 } })
      .expect(400);
    await as('patch', `/records/Task/${id}`)
      .set('if-match', '"9"')
      .send({ data: { done: true } })
      .expect(412);
    await as('post', '/records/Task').send({ data: {} }).expect(400);
    expect((await eventsOf(id)).map((event) => event.type)).toEqual(['record_created']);
  });

  it('writes invitation.created for an invitation', async () => {
    await as('post', '/invitations')
      .send({ email: 'events@example.com', roles: ['viewer'] })
      .expect(201);
    const { rows } = await owner.query(
      "select type, actor from events where workspace_id = $1 and type = 'invitation.created'",
      [tenant.id],
    );
    expect(rows).toEqual([{ type: 'invitation.created', actor: { id: 'user_admin', kind: 'user' } }]);
  });
});

describe('seq in commit order', () => {
  it('never lets a reader that saw seq N later find an event below N, when transactions commit out of order', async () => {
    const log = new EventLog();
    const seen: StoredEvent[] = [];
    const dispatcher = new EventDispatcher(
      cordon.database,
      log,
      { name: `test-${randomUUID()}`, handle: async (_scope, events) => void seen.push(...events) },
      pino({ level: 'silent' }),
      { gateTimeoutMs: 50 },
    );
    const origin = { actor: { id: 'tester', kind: 'system' as const }, requestId: null, depth: 0, fireTriggers: true };
    await dispatcher.dispatchWorkspace(tenant.id);
    seen.length = 0;

    // The first transaction takes its seq and stays open; a second takes a higher one and commits.
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let firstTaken!: () => void;
    const taken = new Promise<void>((resolve) => (firstTaken = resolve));
    const first = cordon.database.withWorkspace(tenant.id, async (scope) => {
      await log.appendIn(scope, origin, [{ type: 'test.first', data: {} }]);
      firstTaken();
      await held;
    });
    await taken;
    await cordon.database.withWorkspace(tenant.id, (scope) =>
      log.appendIn(scope, origin, [{ type: 'test.second', data: {} }]),
    );
    const { rows: visible } = await owner.query(
      "select type, seq from events where workspace_id = $1 and type like 'test.%' order by seq",
      [tenant.id],
    );
    // A plain reader now sees the higher seq without the lower one: the hazard is real.
    expect(visible.map((row) => row.type)).toEqual(['test.second']);

    // The gated reader does not pass the open transaction's seq.
    expect(await dispatcher.dispatchWorkspace(tenant.id)).toBe(0);
    expect(seen).toEqual([]);
    release();
    await first;
    await dispatcher.dispatchWorkspace(tenant.id);
    expect(seen.map((event) => event.type)).toEqual(['test.first', 'test.second']);
    expect(Number(seen[0]!.seq)).toBeLessThan(Number(seen[1]!.seq));
  });
});
