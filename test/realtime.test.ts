import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { eventView } from '../src/features/realtime/event-view.ts';
import type { PrincipalAbility } from '../src/policy/ability.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { SseClient } from './support/sse.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Realtime streams over real HTTP against real PostgreSQL: what each subscriber may see (record
 * checks, field rules, leaving and entering its view), resuming, the type-level check at connect,
 * evaluations counted per group of subscribers sharing an ability, and one failing group.
 */

let cordon: TestApp;
let server: Server;
let base: string;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let admin: string;
let member: string;
let viewer: string;
/** Groups whose evaluation throws: those whose ability this says (a group broken on purpose). */
let breaks: ((ability: PrincipalAbility) => boolean) | undefined;

beforeAll(async () => {
  cordon = await startTestApp({
    realtime: {
      heartbeatMs: 100,
      view: (ability, event) => {
        if (breaks?.(ability)) throw new Error('this group is broken on purpose');
        return eventView(ability, event);
      },
    },
  });
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'realtime');
  admin = await tenant.token('user_admin', 'admin');
  member = await tenant.token('user_member', 'member');
  viewer = await tenant.token('user_viewer', 'viewer');
  await as(admin, 'post', '/structures')
    .send({ name: 'Project', fields: { name: { type: 'text', required: true } } })
    .expect(201);
  await as(admin, 'post', '/structures')
    .send({
      name: 'Task',
      fields: {
        title: { type: 'text', required: true },
        assigneeId: { type: 'text' },
        secretNote: { type: 'text' },
      },
    })
    .expect(201);
  await as(admin, 'post', '/policies')
    .send({
      name: 'contractor',
      roles: ['contractor'],
      rules: [{ action: 'read', subject: 'Task', conditions: { assigneeId: '${principal.id}' } }],
    })
    .expect(201);
  await as(admin, 'post', '/policies')
    .send({
      name: 'viewers-miss-notes',
      roles: ['viewer'],
      rules: [{ action: 'read', subject: 'Task', fields: ['secretNote'], inverted: true }],
    })
    .expect(201);
}, 60_000);
afterAll(async () => {
  await cordon.realtime.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const as = (token: string, method: 'get' | 'post' | 'patch' | 'delete', path: string) =>
  cordon.http()[method](`/v1/workspaces/${tenant.slug}${path}`).auth(token, { type: 'bearer' });

const subscribe = (token: string, structures = 'Task', headers: Record<string, string> = {}, extra = '') =>
  SseClient.open(`${base}/v1/workspaces/${tenant.slug}/events?structures=${structures}${extra}`, {
    authorization: `Bearer ${token}`,
    ...headers,
  });

const streams: SseClient[] = [];
async function opened(token: string, structures?: string, headers?: Record<string, string>): Promise<SseClient> {
  const stream = await subscribe(token, structures, headers);
  expect(stream.status).toBe(200);
  streams.push(stream);
  await stream.waitFor((client) => client.lastEventId !== undefined);
  return stream;
}
afterEach(() => {
  for (const stream of streams.splice(0)) stream.close();
  breaks = undefined;
});

const createTask = async (data: Record<string, unknown>, token = member) =>
  (
    await as(token, 'post', '/records/Task')
      .send({ data: { title: 'a task', ...data } })
      .expect(201)
  ).body as { id: string; version: number };

const updateTask = async (id: string, data: Record<string, unknown>, token = member) =>
  (await as(token, 'patch', `/records/Task/${id}`).send({ data }).expect(200)).body;

describe('a subscriber', () => {
  it('answers with SSE headers, a comment and the current position as an id', async () => {
    const stream = await opened(viewer);
    expect(stream.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(stream.headers['x-accel-buffering']).toBe('no');
    expect(stream.headers['cache-control']).toMatch(/no-cache/);
    // Not chunked: the stream's body runs to the end of its connection.
    expect(stream.headers['transfer-encoding']).toBeUndefined();
    expect(stream.headers.connection).toBe('close');
    expect(stream.comments[0]).toBe('connected');
    expect(stream.lastEventId).toMatch(/^\d+$/);
    await stream.waitFor((client) => client.comments.includes('ping'), 2_000);
  });

  it('sees created, updated and deleted records in order, as GET returns them', async () => {
    const stream = await opened(viewer);
    const task = await createTask({ assigneeId: 'user_ann' });
    await updateTask(task.id, { title: 'renamed' });
    await as(admin, 'delete', `/records/Task/${task.id}`).expect(204);
    await stream.waitForEvents(3);
    expect(stream.events.map((event) => event.event)).toEqual(['record_created', 'record_updated', 'record_deleted']);
    const ids = stream.events.map((event) => BigInt(event.id!));
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
    const [created, updated, deleted] = stream.events;
    expect(created!.data).toEqual({
      event: 'record_created',
      structure: 'Task',
      recordId: task.id,
      seq: created!.id,
      data: {
        id: task.id,
        structure: 'Task',
        data: { title: 'a task', assigneeId: 'user_ann' },
        createdBy: 'user_member',
        createdAt: expect.any(String),
        updatedAt: expect.any(String),
        version: 1,
      },
    });
    const after = updated!.data.data as { before: { version: number }; after: Record<string, unknown> };
    expect(after.before).toEqual(created!.data.data);
    expect(after.after).toMatchObject({ version: 2, data: { title: 'renamed', assigneeId: 'user_ann' } });
    expect(deleted!.data).toMatchObject({ event: 'record_deleted', data: { before: after.after } });
    expect(deleted!.data).not.toHaveProperty('reason');
  });

  it('only sees the structures it named', async () => {
    const stream = await opened(viewer, 'Project');
    await createTask({});
    const project = (
      await as(admin, 'post', '/records/Project')
        .send({ data: { name: 'Apollo' } })
        .expect(201)
    ).body;
    await stream.waitForEvents(1);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stream.events.map((event) => event.data.recordId)).toEqual([project.id]);
  });

  it('never sees a field it may not read, in any event', async () => {
    const stream = await opened(viewer);
    const full = await opened(admin);
    const task = await createTask({ secretNote: 'the password is swordfish' });
    await updateTask(task.id, { secretNote: 'still swordfish' });
    await as(admin, 'delete', `/records/Task/${task.id}`).expect(204);
    await stream.waitForEvents(3);
    await full.waitForEvents(3);
    expect(JSON.stringify(stream.events)).not.toContain('swordfish');
    expect(JSON.stringify(stream.events)).not.toContain('secretNote');
    expect(JSON.stringify(full.events)).toContain('swordfish');
  });
});

describe('a contractor (reads only its own tasks)', () => {
  it('sees only its tasks; one reassigned away leaves its view, one assigned to it enters', async () => {
    const ann = await tenant.token('user_ann', 'contractor');
    const stream = await opened(ann);
    const others = await createTask({ assigneeId: 'user_bob', title: 'bob’s' });
    const mine = await createTask({ assigneeId: 'user_ann', title: 'ann’s' });
    await updateTask(mine.id, { title: 'ann’s, renamed' });
    await updateTask(mine.id, { assigneeId: 'user_bob' });
    await updateTask(others.id, { title: 'bob’s, renamed' });
    await updateTask(others.id, { assigneeId: 'user_ann' });
    await stream.waitForEvents(4);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(stream.events.map((event) => [event.event, event.data.recordId, event.data.reason])).toEqual([
      ['record_created', mine.id, undefined],
      ['record_updated', mine.id, undefined],
      ['record_deleted', mine.id, 'left_view'],
      ['record_created', others.id, 'entered_view'],
    ]);
    // Leaving: the record as it was, still readable then. Entering: the record as it is now.
    expect(stream.events[2]!.data.data).toMatchObject({ before: { data: { assigneeId: 'user_ann' } } });
    expect(stream.events[3]!.data.data).toMatchObject({ data: { assigneeId: 'user_ann', title: 'bob’s, renamed' } });
  });
});

describe('resuming', () => {
  it('with Last-Event-ID: exactly the 50 changes made while away, in order, nothing repeated', async () => {
    const first = await opened(viewer);
    const task = await createTask({});
    await first.waitForEvents(1);
    const last = first.lastEventId!;
    first.close();
    for (let step = 1; step <= 50; step++) await updateTask(task.id, { title: `step ${step}` });
    const again = await opened(viewer, 'Task', { 'last-event-id': last });
    await again.waitForEvents(50);
    await createTask({ title: 'live again' });
    await again.waitForEvents(51);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(again.events).toHaveLength(51);
    expect(
      again.events
        .slice(0, 50)
        .map((event) => (event.data.data as { after: { data: { title: string } } }).after.data.title),
    ).toEqual(Array.from({ length: 50 }, (_, index) => `step ${index + 1}`));
    expect((again.events[50]!.data.data as { data: { title: string } }).data.title).toBe('live again');
    const ids = again.events.map((event) => BigInt(event.id!));
    expect(ids[0]! > BigInt(last)).toBe(true);
    expect(new Set(ids).size).toBe(51);
    expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : 1)));
  });

  it('with an id from the future: reset to the current position', async () => {
    const stream = await subscribe(viewer, 'Task', { 'last-event-id': '999999999999' });
    streams.push(stream);
    await stream.waitForEvents(1);
    expect(stream.events[0]).toMatchObject({ event: 'reset', data: { event: 'reset' } });
    expect(stream.events[0]!.id).toBe(stream.events[0]!.data.seq);
  });
});

describe('connecting', () => {
  it('refuses a structure the principal may not read at all (403, logged), an unknown one (404), a bad id (400)', async () => {
    const contractorOnly = await tenant.token('user_carl', 'nobody');
    const refused = await subscribe(contractorOnly);
    expect(refused.status).toBe(403);
    expect(refused.problem).toMatchObject({ code: 'forbidden' });
    const { rows } = await owner.query(
      `select subject, operation, allowed from decisions where workspace_id = $1 and principal_id = 'user_carl'`,
      [tenant.id],
    );
    expect(rows).toEqual([{ subject: 'Task', operation: 'list', allowed: false }]);
    expect((await subscribe(viewer, 'Nope')).problem).toMatchObject({ status: 404, code: 'structure_not_found' });
    expect((await subscribe(viewer, 'Task', { 'last-event-id': 'abc' })).problem).toMatchObject({
      status: 400,
      code: 'invalid_last_event_id',
    });
    expect((await subscribe(viewer, 'task')).problem).toMatchObject({ status: 400, code: 'validation_failed' });
    const noToken = await SseClient.open(`${base}/v1/workspaces/${tenant.slug}/events?structures=Task`);
    expect(noToken.status).toBe(401);
  });

  it('takes the token from access_token for an EventSource', async () => {
    const stream = await SseClient.open(
      `${base}/v1/workspaces/${tenant.slug}/events?structures=Task&access_token=${encodeURIComponent(viewer)}`,
    );
    streams.push(stream);
    expect(stream.status).toBe(200);
    const task = await createTask({});
    await stream.waitForEvents(1);
    expect(stream.events[0]!.data.recordId).toBe(task.id);
  });
});

describe('evaluation', () => {
  it('is done once per group of subscribers sharing an ability, not once per subscriber', async () => {
    // Six viewers (one group: no placeholder in their policies), three contractors (one group each).
    for (let index = 0; index < 6; index++) await opened(await tenant.token(`user_v${index}`, 'viewer'));
    for (let index = 0; index < 3; index++) await opened(await tenant.token(`user_c${index}`, 'contractor'));
    const before = cordon.realtime.evaluationCount;
    await createTask({ assigneeId: 'user_c0' });
    await streams[0]!.waitForEvents(1);
    await streams[6]!.waitForEvents(1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(cordon.realtime.evaluationCount - before).toBe(4);
    expect(streams.slice(0, 6).every((stream) => stream.events.length === 1)).toBe(true);
    expect(streams.slice(6).map((stream) => stream.events.length)).toEqual([1, 0, 0]);
  });

  it('drops the subscribers of a group whose evaluation throws, with an error event; the others keep receiving', async () => {
    const viewerStream = await opened(viewer);
    const memberStream = await opened(member);
    // Members may update tasks, viewers may not: that tells their groups apart.
    breaks = (ability) => ability.decide('update', 'Task').allowed;
    await createTask({});
    await memberStream.waitFor((client) => client.ended);
    expect(memberStream.events.at(-1)).toMatchObject({ event: 'error', data: { code: 'evaluation_failed' } });
    await viewerStream.waitForEvents(1);
    await createTask({});
    await viewerStream.waitForEvents(2);
  });
});

describe('changes while streaming', () => {
  it('applies a policy change to the next event', async () => {
    const stream = await opened(viewer);
    // The member's stream is the same feed's: once it has an event, every group has been shown it.
    const witness = await opened(member);
    await createTask({ title: 'seen' });
    await stream.waitForEvents(1);
    const policy = (
      await as(admin, 'post', '/policies')
        .send({
          name: 'viewers-blind',
          roles: ['viewer'],
          rules: [{ action: 'read', subject: 'Task', inverted: true }],
        })
        .expect(201)
    ).body;
    await createTask({ title: 'unseen' });
    await witness.waitForEvents(2);
    await as(admin, 'delete', `/policies/${policy.id}`).expect(204);
    await createTask({ title: 'seen again' });
    await witness.waitForEvents(3);
    await stream.waitForEvents(2);
    const titles = (client: SseClient) =>
      client.events.map((event) => (event.data.data as { data: { title: string } }).data.title);
    expect(titles(witness)).toEqual(['seen', 'unseen', 'seen again']);
    expect(titles(stream)).toEqual(['seen', 'seen again']);
  });
});
