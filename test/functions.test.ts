import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { toStoredEvent } from '../src/events/dispatcher.ts';
import type { StoredEvent } from '../src/events/event-log.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Functions over HTTP against real PostgreSQL: the seed tutorial's function verbatim, what
 * `context.api` may and may not do as the function's principal, runs, and the routes' denials.
 */

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let other: TestTenant;
let admin: string;
let member: string;

/** The seed tutorial's step 5, verbatim from issue #12. */
const seedCode = `async function run(event, context) {
  const { api } = context;
  if (event.type !== 'record_updated') return;
  const before = event.data.before; const after = event.data.after;
  if (before.assigneeId === after.assigneeId) return;
  if (!after.assigneeId) return;
  const project = await api.getRecord(after.projectId);
  await api.sendNotification({ type: 'email', to: after.assigneeId, template: 'task-assigned',
    data: { taskTitle: after.title, projectName: project.data.name, priority: after.priority } });
  return { notified: after.assigneeId };
}`;

const as = (token: string | undefined, workspace: { slug: string } = tenant) => {
  const base = `/v1/workspaces/${workspace.slug}`;
  const auth = <T extends { auth: (token: string, options: { type: 'bearer' }) => T }>(request: T) =>
    token === undefined ? request : request.auth(token, { type: 'bearer' });
  return {
    get: (path: string) => auth(cordon.http().get(base + path)),
    post: (path: string, body: object) => auth(cordon.http().post(base + path)).send(body),
    put: (path: string, body: object) => auth(cordon.http().put(base + path)).send(body),
    patch: (path: string, body: object) => auth(cordon.http().patch(base + path)).send(body),
    delete: (path: string) => auth(cordon.http().delete(base + path)),
  };
};

async function createFunction(body: Record<string, unknown>, workspace: { slug: string } = tenant, token = admin) {
  const response = await as(token, workspace).post('/functions', { timeoutMs: 5_000, ...body });
  expect(response.status).toBe(201);
  return response.body;
}

const invoke = async (name: string, event: object, workspace: { slug: string } = tenant, token = admin) => {
  const response = await as(token, workspace).post(`/functions/${name}/invoke`, { event });
  expect(response.status).toBe(200);
  return response.body as {
    runId: string;
    status: 'succeeded' | 'failed';
    result: unknown;
    error: { kind: string; message: string } | null;
    logs: { level: string; message: string }[];
    durationMs: number;
  };
};

/** Runs code once, by hand, as a fresh function with these roles. */
async function runCode(code: string, roles: string[], event: object = { type: 'test' }) {
  const name = `f-${randomUUID().slice(0, 8)}`;
  await createFunction({ name, code, roles });
  return { name, ...(await invoke(name, event)) };
}

const notificationsOf = async (workspaceId: string, requestId?: string) =>
  (
    await owner.query(
      `select type, data, actor, request_id, depth, fire_triggers from events
       where workspace_id = $1 and type = 'notification.requested' and ($2::text is null or request_id = $2)
       order by seq`,
      [workspaceId, requestId ?? null],
    )
  ).rows;

const lastEvent = async (recordId: string): Promise<StoredEvent> =>
  toStoredEvent(
    (
      await owner.query(`select * from events where workspace_id = $1 and record_id = $2 order by seq desc limit 1`, [
        tenant.id,
        recordId,
      ])
    ).rows[0],
  );

const decisionsOf = async (requestId: string) =>
  (
    await owner.query(
      `select principal_id, principal_roles, principal_provider, action, subject, resource_id, allowed, reason
       from decisions where request_id = $1 order by position`,
      [requestId],
    )
  ).rows;

let projectId: string;
let taskId: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'functions');
  other = await createTenant(cordon, issuer, 'functions-other');
  admin = await tenant.token('user_admin', 'admin');
  member = await tenant.token('user_member', 'member');
  for (const workspace of [tenant, other]) {
    const token = await workspace.token('user_admin', 'admin');
    await as(token, workspace)
      .post('/structures', { name: 'Project', fields: { name: { type: 'text', required: true } } })
      .expect(201);
    await as(token, workspace)
      .post('/structures', {
        name: 'Task',
        fields: {
          title: { type: 'text', required: true },
          assigneeId: { type: 'text' },
          projectId: { type: 'reference', structure: 'Project' },
          priority: { type: 'text', enum: ['low', 'high'] },
        },
      })
      .expect(201);
  }
  projectId = (
    await as(admin)
      .post('/records/Project', { data: { name: 'Apollo' } })
      .expect(201)
  ).body.id;
  taskId = (
    await as(admin)
      .post('/records/Task', { data: { title: 'Write docs', assigneeId: 'u1', projectId, priority: 'high' } })
      .expect(201)
  ).body.id;
  await createFunction({ name: 'notify-assignee', code: seedCode, roles: ['member'] });
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

describe('the seed tutorial’s function', () => {
  it('requests one notification when a task’s assignee changes', async () => {
    await as(member)
      .patch(`/records/Task/${taskId}`, { data: { assigneeId: 'u2' } })
      .expect(200);
    const event = await lastEvent(taskId);
    expect(event.type).toBe('record_updated');

    const run = await invoke('notify-assignee', event);
    expect(run).toMatchObject({ status: 'succeeded', result: { notified: 'u2' }, error: null, logs: [] });
    expect(run.durationMs).toBeGreaterThan(0);

    expect(await notificationsOf(tenant.id, run.runId)).toEqual([
      {
        type: 'notification.requested',
        data: {
          type: 'email',
          to: 'u2',
          template: 'task-assigned',
          data: { taskTitle: 'Write docs', projectName: 'Apollo', priority: 'high' },
        },
        actor: { id: 'function:notify-assignee', kind: 'function' },
        request_id: run.runId,
        depth: 1,
        // Invoked by hand: its writes fire no trigger.
        fire_triggers: false,
      },
    ]);
    // Each api call is a decision of the function's principal, under the run's id.
    expect(await decisionsOf(run.runId)).toEqual([
      expect.objectContaining({
        principal_id: 'function:notify-assignee',
        principal_roles: ['member'],
        principal_provider: 'function',
        action: 'read',
        subject: 'Project',
        resource_id: projectId,
        allowed: true,
      }),
      expect.objectContaining({ action: 'create', subject: 'Notification', allowed: true }),
    ]);
  });

  it('requests none when the assignee stays the same or is removed', async () => {
    const before = (await notificationsOf(tenant.id)).length;
    await as(member)
      .patch(`/records/Task/${taskId}`, { data: { title: 'Write better docs' } })
      .expect(200);
    const same = await invoke('notify-assignee', await lastEvent(taskId));
    expect(same).toMatchObject({ status: 'succeeded', result: null });
    await as(member)
      .patch(`/records/Task/${taskId}`, { data: { assigneeId: null } })
      .expect(200);
    const removed = await invoke('notify-assignee', await lastEvent(taskId));
    expect(removed).toMatchObject({ status: 'succeeded', result: null });
    expect(await notificationsOf(tenant.id)).toHaveLength(before);
  });

  it('runs for a trigger as the delivery task asks (FunctionAction), its writes firing triggers one level deeper', async () => {
    await as(member)
      .patch(`/records/Task/${taskId}`, { data: { assigneeId: 'u3' } })
      .expect(200);
    const event = await lastEvent(taskId);
    const [triggerId, deliveryId] = [randomUUID(), randomUUID()];
    const attempt = { workspaceId: tenant.id, triggerId, deliveryId, attempt: 1, event };
    const outcome = await cordon.functions.run('notify-assignee', { ...attempt, signal: new AbortController().signal });
    expect(outcome).toMatchObject({ ok: true });
    const runs = (await as(admin).get('/functions/notify-assignee/runs?limit=1').expect(200)).body.data;
    expect(runs[0]).toMatchObject({
      status: 'succeeded',
      invoked: false,
      triggerId,
      deliveryId,
      eventSeq: event.seq,
      result: { notified: 'u3' },
    });
    expect(await notificationsOf(tenant.id, runs[0].id)).toEqual([
      expect.objectContaining({ depth: 1, fire_triggers: true, data: expect.objectContaining({ to: 'u3' }) }),
    ]);

    const deep = await cordon.functions.run('notify-assignee', {
      ...attempt,
      event: { ...event, depth: 3 },
      signal: new AbortController().signal,
    });
    expect(deep).toMatchObject({ ok: false, retry: false, error: expect.stringMatching(/FUNCTION_CHAIN_DEPTH 3/) });
  });

  it('reports a failed run to the delivery task as not worth retrying', async () => {
    const { name } = await runCode('async function run() { throw new Error("nope") }', []);
    const outcome = await cordon.functions.run(name, {
      workspaceId: tenant.id,
      triggerId: randomUUID(),
      deliveryId: randomUUID(),
      attempt: 1,
      event: await lastEvent(taskId),
      signal: new AbortController().signal,
    });
    expect(outcome).toMatchObject({ ok: false, retry: false, error: expect.stringMatching(/^error: Error: nope/) });
  });
});

describe('context.api', () => {
  it('reads, queries, creates, updates and deletes records through the records path', async () => {
    const run = await runCode(
      `async function run(event, { api }) {
        const created = await api.createRecord('Task', { title: 'from a function', projectId: event.projectId });
        const updated = await api.updateRecord('Task', created.id, { priority: 'low' });
        const found = await api.getRecord(created.id);
        const page = await api.queryRecords('Task', { filter: { title: 'from a function' }, sort: '-createdAt', limit: 5 });
        await api.deleteRecord('Task', created.id);
        const gone = await api.getRecord(created.id);
        console.log('made', created.id);
        return { created: created.data, version: updated.version, found: found.data.priority,
                 listed: page.data.map((record) => record.id), createdBy: created.createdBy, gone };
      }`,
      ['admin'],
      { type: 'test', projectId },
    );
    expect(run).toMatchObject({
      status: 'succeeded',
      result: {
        created: { title: 'from a function', projectId },
        version: 2,
        found: 'low',
        createdBy: 'function:' + run.name,
        gone: null,
      },
    });
    expect((run.result as { listed: string[] }).listed).toHaveLength(1);
    expect(run.logs).toEqual([{ level: 'log', message: expect.stringMatching(/^made [0-9a-f-]{36}$/) }]);
    const types = (
      await owner.query(`select type from events where workspace_id = $1 and request_id = $2 order by seq`, [
        tenant.id,
        run.runId,
      ])
    ).rows.map((row) => row.type);
    expect(types).toEqual(['record_created', 'record_updated', 'record_deleted']);
  });

  it('gives a function whose policy forbids reading Project a denial inside run, logged as its decision', async () => {
    await as(admin)
      .post('/policies', {
        name: 'no projects',
        roles: ['no-projects'],
        rules: [
          { action: 'read', subject: 'all' },
          { action: 'create', subject: 'Notification' },
          { action: 'read', subject: 'Project', inverted: true, reason: 'this function may not read projects' },
        ],
      })
      .expect(201);
    await createFunction({ name: 'nosy', code: seedCode, roles: ['no-projects'] });
    await as(member)
      .patch(`/records/Task/${taskId}`, { data: { assigneeId: 'u4' } })
      .expect(200);
    const seed = await invoke('nosy', await lastEvent(taskId));
    expect(seed).toMatchObject({ status: 'failed', error: { kind: 'error' } });
    expect(seed.error!.message).toMatch(/^ApiError: this function may not read projects/);
    expect(await notificationsOf(tenant.id, seed.runId)).toEqual([]);
    expect(await decisionsOf(seed.runId)).toEqual([
      expect.objectContaining({
        principal_id: 'function:nosy',
        principal_provider: 'function',
        action: 'read',
        subject: 'Project',
        allowed: false,
        reason: 'this function may not read projects',
      }),
    ]);

    const caught = await runCode(
      `async function run(event, { api }) {
        try { await api.getRecord(event.projectId); return 'read it' }
        catch (error) { return { name: error.name, code: error.code, status: error.status, message: error.message } }
      }`,
      ['no-projects'],
      { type: 'test', projectId },
    );
    expect(caught.result).toEqual({
      name: 'ApiError',
      code: 'forbidden',
      status: 403,
      message: 'this function may not read projects',
    });
  });

  it('cannot reach another workspace’s records: missing to reads, 404 to writes', async () => {
    const otherAdmin = await other.token('user_admin', 'admin');
    const theirs = (
      await as(otherAdmin, other)
        .post('/records/Project', { data: { name: 'Secret' } })
        .expect(201)
    ).body;
    const run = await runCode(
      `async function run(event, { api }) {
        const code = (promise) => promise.then(() => 'done', (error) => error.code);
        return {
          read: await api.getRecord(event.id),
          listed: (await api.queryRecords('Project', { limit: 200 })).data.map((record) => record.id),
          updated: await code(api.updateRecord('Project', event.id, { name: 'Mine' })),
          deleted: await code(api.deleteRecord('Project', event.id)),
        };
      }`,
      ['admin'],
      { type: 'test', id: theirs.id },
    );
    expect(run.result).toMatchObject({ read: null, updated: 'record_not_found', deleted: 'record_not_found' });
    expect((run.result as { listed: string[] }).listed).not.toContain(theirs.id);
    expect((run.result as { listed: string[] }).listed).toContain(projectId);
    const stored = await owner.query(`select data from records where id = $1`, [theirs.id]);
    expect(stored.rows).toEqual([{ data: { name: 'Secret' } }]);
  });

  it('lets a function with no role do nothing: every call is denied', async () => {
    const recordsBefore = (
      await owner.query(`select count(*)::int as n from records where workspace_id = $1`, [tenant.id])
    ).rows[0].n;
    const run = await runCode(
      `async function run(event, { api }) {
        const code = (promise) => promise.then(() => 'done', (error) => error.status + ' ' + error.code);
        return [
          await code(api.getRecord(event.projectId)),
          await code(api.queryRecords('Task')),
          await code(api.createRecord('Task', { title: 'x' })),
          await code(api.updateRecord('Task', event.taskId, { title: 'x' })),
          await code(api.deleteRecord('Task', event.taskId)),
          await code(api.sendNotification({ type: 'email', to: 'u1', template: 't' })),
        ];
      }`,
      [],
      { type: 'test', projectId, taskId },
    );
    expect(run.result).toEqual(Array(6).fill('403 forbidden'));
    expect(await notificationsOf(tenant.id, run.runId)).toEqual([]);
    const recordsAfter = (
      await owner.query(`select count(*)::int as n from records where workspace_id = $1`, [tenant.id])
    ).rows[0].n;
    expect(recordsAfter).toBe(recordsBefore);
    const decisions = await decisionsOf(run.runId);
    expect(decisions).toHaveLength(6);
    expect(decisions.every((decision) => decision.allowed === false && decision.principal_roles.length === 0)).toBe(
      true,
    );
  });

  it('refuses malformed arguments and notifications with the problem the HTTP API would give', async () => {
    const run = await runCode(
      `async function run(event, { api }) {
        const code = (promise) => promise.then(() => 'done', (error) => [error.code, error.errors?.[0]?.pointer]);
        return [
          await code(api.getRecord(42)),
          await code(api.sendNotification({ type: 'email', to: 'u1' })),
          await code(api.sendNotification({ type: 'email', to: 'u1', template: 't', extra: 1 })),
          await code(api.queryRecords('Task', { filter: { title: { $where: 'x' } } })),
        ];
      }`,
      ['admin'],
    );
    expect(run.result).toEqual([
      ['validation_failed', '/0'],
      ['validation_failed', '/0/template'],
      ['validation_failed', '/0'],
      ['validation_failed', expect.anything()],
    ]);
  });
});

describe('saving a function', () => {
  it('loads the code in the sandbox and refuses code that does not define async function run', async () => {
    const refused = async (code: string, detail: RegExp) => {
      const response = await as(admin).post('/functions', { name: 'broken', code }).expect(400);
      expect(response.body.errors).toEqual([{ pointer: '/code', in: 'body', detail: expect.stringMatching(detail) }]);
    };
    await refused('async function run(event) {', /SyntaxError/);
    await refused('function handler() {}', /must define async function run/);
    await refused('function run() {}', /run must be an async function/);
    await refused('import fs from "fs"; async function run() {}', /SyntaxError/);
    await refused('while (true) {}\nasync function run() {}', /timeout/);
    await refused('throw new Error("at load")\nasync function run() {}', /Error: at load/);
    await as(admin).get('/functions/broken').expect(404);
  });

  it('bounds the limits and refuses a taken name', async () => {
    const code = 'async function run() {}';
    for (const body of [
      { name: 'limits', code, timeoutMs: 10_001 },
      { name: 'limits', code, memoryMb: 65 },
      { name: 'Limits', code },
      { name: 'limits', code, roles: ['a', 'a'] },
    ])
      await as(admin).post('/functions', body).expect(400);
    const created = await createFunction({ name: 'limits', code, timeoutMs: 10_000, memoryMb: 64 });
    expect(created).toMatchObject({ name: 'limits', roles: [], timeoutMs: 10_000, memoryMb: 64, version: 1 });
    const taken = await as(admin).post('/functions', { name: 'limits', code }).expect(409);
    expect(taken.body.code).toBe('function_name_taken');
  });

  it('lists, gets, replaces (version + 1) and deletes functions', async () => {
    await createFunction({ name: 'lifecycle', code: 'async function run() { return 1 }' });
    const listed = (await as(admin).get('/functions').expect(200)).body;
    expect(listed.nextCursor).toBeNull();
    expect(listed.data.map((definition: { name: string }) => definition.name)).toContain('lifecycle');
    const replaced = await as(admin)
      .put('/functions/lifecycle', { code: 'async function run() { return 2 }', roles: ['viewer'], memoryMb: 8 })
      .expect(200);
    expect(replaced.body).toMatchObject({ version: 2, roles: ['viewer'], memoryMb: 8, timeoutMs: 1_000 });
    expect((await invoke('lifecycle', { type: 'test' })).result).toBe(2);
    await as(admin).delete('/functions/lifecycle').expect(204);
    await as(admin).get('/functions/lifecycle').expect(404);
    await as(admin)
      .post('/functions/lifecycle/invoke', { event: { type: 'test' } })
      .expect(404);
  });

  it('refuses to give a function roles its author does not hold, unless the author manages members', async () => {
    await as(admin)
      .post('/policies', {
        name: 'developers',
        roles: ['developer'],
        rules: [{ action: 'manage', subject: 'Function' }],
      })
      .expect(201);
    const developer = await tenant.token('user_dev', 'developer');
    const escalating = await as(developer)
      .post('/functions', { name: 'escalate', code: 'async function run() {}', roles: ['admin'] })
      .expect(403);
    expect(escalating.body.detail).toMatch(/roles held by the grantor; not "admin"/);
    await createFunction(
      { name: 'dev-owned', code: 'async function run() { return 1 }', roles: ['developer'] },
      tenant,
      developer,
    );
    // Nor rewrite, delete or invoke one that acts with roles it does not hold.
    await createFunction({ name: 'admin-owned', code: 'async function run() { return 1 }', roles: ['admin'] });
    await as(developer)
      .put('/functions/admin-owned', { code: 'async function run() { return 2 }', roles: [] })
      .expect(403);
    await as(developer)
      .post('/functions/admin-owned/invoke', { event: { type: 'test' } })
      .expect(403);
    await as(developer).delete('/functions/admin-owned').expect(403);
    // Nor read the runs of one: they hold what it read and returned with those roles.
    await invoke('admin-owned', { type: 'test' });
    const hidden = await as(developer).get('/functions/admin-owned/runs').expect(403);
    expect(hidden.body.detail).toMatch(/roles held by the grantor; not "admin"/);
    expect((await as(admin).get('/functions/admin-owned/runs').expect(200)).body.data).toHaveLength(1);
    await as(developer).get('/functions/dev-owned/runs').expect(200);
    expect((await as(admin).get('/functions/admin-owned').expect(200)).body).toMatchObject({
      version: 1,
      roles: ['admin'],
    });
  });
});

describe('a trigger’s run on another instance', () => {
  it('runs the code as replaced once that instance hears of the change', async () => {
    const [first, second] = [await startTestApp({ listen: true }), await startTestApp({ listen: true })];
    try {
      const path = `/v1/workspaces/${tenant.slug}/functions`;
      await first.admin().post(path).send({ name: 'versioned', code: 'async function run() { return 1 }' }).expect(201);
      const attempt = async () => {
        const outcome = await second.functions.run('versioned', {
          workspaceId: tenant.id,
          triggerId: randomUUID(),
          deliveryId: randomUUID(),
          attempt: 1,
          event: await lastEvent(taskId),
          signal: new AbortController().signal,
        });
        expect(outcome).toMatchObject({ ok: true });
        const [run] = (await as(admin).get('/functions/versioned/runs?limit=1').expect(200)).body.data;
        return run.result;
      };
      expect(await attempt()).toBe(1);
      await first.admin().put(`${path}/versioned`).send({ code: 'async function run() { return 2 }' }).expect(200);
      await eventually(async () => (await attempt()) === 2);
    } finally {
      await first.close();
      await second.close();
    }
  });
});

describe('runs', () => {
  it('lists a function’s runs newest first, paged, with results, errors and logs', async () => {
    const code = `async function run(event) {
      console.info('attempt', event.n);
      if (event.n === 2) throw new TypeError('two');
      return { n: event.n };
    }`;
    await createFunction({ name: 'counted', code });
    const ids = [];
    for (const n of [1, 2, 3]) ids.push((await invoke('counted', { type: 'test', n })).runId);
    const first = (await as(admin).get('/functions/counted/runs?limit=2').expect(200)).body;
    expect(first.data.map((run: { id: string }) => run.id)).toEqual([ids[2], ids[1]]);
    expect(first.data[1]).toMatchObject({
      function: 'counted',
      functionVersion: 1,
      status: 'failed',
      invoked: true,
      triggerId: null,
      eventSeq: null,
      result: null,
      error: { kind: 'error', message: expect.stringMatching(/^TypeError: two/) },
      logs: [{ level: 'info', message: 'attempt 2' }],
      logsTruncated: false,
    });
    const rest = (await as(admin).get(`/functions/counted/runs?limit=2&cursor=${first.nextCursor}`).expect(200)).body;
    expect(rest).toEqual({
      data: [expect.objectContaining({ id: ids[0], status: 'succeeded', result: { n: 1 }, error: null })],
      nextCursor: null,
    });
  });

  it('counts a function’s runs on request: across pages, not another function’s nor another workspace’s', async () => {
    const otherAdmin = await other.token('user_admin', 'admin');
    const code = 'async function run() {}';
    for (const [name, workspace, token] of [
      ['tallied', tenant, admin],
      ['untallied', tenant, admin],
      ['tallied', other, otherAdmin],
    ] as const) {
      await createFunction({ name, code }, workspace, token);
      for (let run = 0; run < 3; run += 1) await invoke(name, { type: 'test' }, workspace, token);
    }
    await invoke('tallied', { type: 'test' });
    const counted = (await as(admin).get('/functions/tallied/runs?limit=2&count=true').expect(200)).body;
    expect(counted).toMatchObject({ count: 4, nextCursor: expect.any(String) });
    expect(counted.data).toHaveLength(2);
    const next = await as(admin).get(`/functions/tallied/runs?limit=2&count=true&cursor=${counted.nextCursor}`);
    expect(next.body.count).toBe(4);
    expect((await as(admin).get('/functions/untallied/runs?count=true').expect(200)).body.count).toBe(3);
    expect((await as(admin).get('/functions/tallied/runs').expect(200)).body).not.toHaveProperty('count');
    await as(admin).get('/functions/tallied/runs?count=yes').expect(400);
  });

  it('answers 404 for the runs of a function that does not exist', async () => {
    expect((await as(admin).get('/functions/nothing/runs').expect(404)).body.code).toBe('function_not_found');
  });
});

describe('route denials', () => {
  const code = 'async function run() { return "ran" }';
  let otherAdmin: string;
  beforeAll(async () => {
    otherAdmin = await other.token('user_admin', 'admin');
    await createFunction({ name: 'guarded', code, roles: ['member'] });
  });
  const stored = async () => (await as(admin).get('/functions/guarded').expect(200)).body;
  const runCount = async () =>
    (await owner.query(`select count(*)::int as n from function_runs where workspace_id = $1`, [tenant.id])).rows[0].n;

  const attempts: [string, (token: string | undefined) => Promise<{ status: number; body: { code: string } }>][] = [
    ['create', (token) => as(token).post('/functions', { name: 'intruder', code })],
    ['replace', (token) => as(token).put('/functions/guarded', { code: 'async function run() { return "hijacked" }' })],
    ['delete', (token) => as(token).delete('/functions/guarded')],
    ['invoke', (token) => as(token).post('/functions/guarded/invoke', { event: { type: 'test' } })],
  ];

  it.each(attempts)(
    'refuses to %s with another workspace’s token, a lower role or no token; nothing changes',
    async (_, attempt) => {
      const before = await stored();
      const runs = await runCount();
      expect(await attempt(otherAdmin)).toMatchObject({ status: 403, body: { code: 'org_mismatch' } });
      expect(await attempt(member)).toMatchObject({ status: 403, body: { code: 'forbidden' } });
      const viewer = await tenant.token('user_viewer', 'viewer');
      expect(await attempt(viewer)).toMatchObject({ status: 403, body: { code: 'forbidden' } });
      expect(await attempt(undefined)).toMatchObject({ status: 401, body: { code: 'token_missing' } });
      expect(await stored()).toEqual(before);
      expect(await runCount()).toBe(runs);
      await as(admin).get('/functions/intruder').expect(404);
    },
  );

  it('lets the platform admin manage functions but not invoke them or read their runs (it reads no tenant records)', async () => {
    await cordon.admin().post(`/v1/workspaces/${tenant.slug}/functions`).send({ name: 'by-admin', code }).expect(201);
    await cordon.admin().get(`/v1/workspaces/${tenant.slug}/functions/by-admin`).expect(200);
    await cordon
      .admin()
      .post(`/v1/workspaces/${tenant.slug}/functions/by-admin/invoke`)
      .send({ event: { type: 'x' } })
      .expect(401);
    // A run's result and logs are whatever the function read.
    await invoke('by-admin', { type: 'x' });
    await cordon.admin().get(`/v1/workspaces/${tenant.slug}/functions/by-admin/runs`).expect(401);
    expect((await as(admin).get('/functions/by-admin/runs').expect(200)).body.data).toHaveLength(1);
    await cordon.admin().delete(`/v1/workspaces/${tenant.slug}/functions/by-admin`).expect(204);
  });
});

describe('lists that answer every item at once', () => {
  it('count their items on request, with a limit ignored, never another workspace’s', async () => {
    const otherAdmin = await other.token('user_admin', 'admin');
    // Disabled: the shared test database's background may run any instance's deliveries.
    const trigger = {
      events: ['record_created'],
      enabled: false,
      action: { type: 'webhook', url: 'https://hooks.invalid/x' },
    };
    await as(admin)
      .post('/triggers', { name: 'listed', ...trigger })
      .expect(201);
    // The other workspace has some of each too, so a count across workspaces would be larger.
    await as(otherAdmin, other)
      .post('/triggers', { name: 'listed', ...trigger })
      .expect(201);
    await createFunction({ name: 'listed', code: 'async function run() {}' }, other, otherAdmin);
    const [policy] = (await as(admin).get('/policies').expect(200)).body.data;
    const lists: [string, string, unknown[]][] = [
      ['/policies', 'policies where workspace_id = $1', [tenant.id]],
      [
        `/policies/${policy.id}/versions`,
        'policy_versions where workspace_id = $1 and policy_id = $2',
        [tenant.id, policy.id],
      ],
      ['/structures', 'structures where workspace_id = $1', [tenant.id]],
      ['/identity-providers', 'identity_providers where workspace_id = $1', [tenant.id]],
      ['/triggers', 'triggers where workspace_id = $1', [tenant.id]],
      ['/functions', 'functions where workspace_id = $1', [tenant.id]],
    ];
    for (const [path, stored, values] of lists) {
      const { rows } = await owner.query(`select count(*)::int as count from ${stored}`, values);
      const { body } = await as(admin).get(`${path}?count=true&limit=1`).expect(200);
      expect({ path, count: body.count, nextCursor: body.nextCursor }).toEqual({ path, ...rows[0], nextCursor: null });
      expect(body.data).toHaveLength(body.count);
      expect((await as(admin).get(path).expect(200)).body).not.toHaveProperty('count');
      await as(admin).get(`${path}?count=yes`).expect(400);
    }
  });
});
