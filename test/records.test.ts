import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let other: TestTenant;
const tokens: Record<string, string> = {};

type Body = Record<string, unknown>;
const as = (token: string, workspace: TestTenant = tenant) => {
  const base = `/v1/workspaces/${workspace.slug}`;
  const bearer = { type: 'bearer' as const };
  return {
    get: (path: string) =>
      cordon
        .http()
        .get(base + path)
        .auth(token, bearer),
    post: (path: string, body: unknown) =>
      cordon
        .http()
        .post(base + path)
        .auth(token, bearer)
        .send(body as object),
    put: (path: string, body: unknown) =>
      cordon
        .http()
        .put(base + path)
        .auth(token, bearer)
        .send(body as object),
    patch: (path: string, body: unknown) =>
      cordon
        .http()
        .patch(base + path)
        .auth(token, bearer)
        .send(body as object),
    delete: (path: string) =>
      cordon
        .http()
        .delete(base + path)
        .auth(token, bearer),
  };
};
const list = (token: string, query: Record<string, string>, structure = 'Task') =>
  as(token).get(`/records/${structure}?${new URLSearchParams(query).toString()}`);

async function createTask(token: string, data: Body): Promise<Body & { id: string; version: number; data: Body }> {
  const response = await as(token).post('/records/Task', { data });
  expect(response.status).toBe(201);
  return response.body;
}
const stored = async (id: string) =>
  (await owner.query('select data, version from records where id = $1', [id])).rows[0] as
    { data: Body; version: number } | undefined;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'rec');
  other = await createTenant(cordon, issuer, 'rec-other');
  for (const role of ['admin', 'member', 'viewer', 'contractor', 'intern', 'reviewer'])
    tokens[role] = await tenant.token(`user_${role}`, role);
  tokens.member2 = await tenant.token('user_member2', 'member');
  tokens.otherAdmin = await other.token('user_admin', 'admin');

  await as(tokens.admin!)
    .post('/structures', {
      name: 'Project',
      fields: {
        name: { type: 'text', required: true, maxLength: 100 },
        status: { type: 'text', enum: ['active', 'archived'], default: 'active' },
      },
    })
    .expect(201);
  await as(tokens.admin!)
    .post('/structures', {
      name: 'Task',
      fields: {
        title: { type: 'text', required: true, maxLength: 200 },
        status: { type: 'text', enum: ['todo', 'doing', 'done'], default: 'todo' },
        priority: { type: 'integer', min: 1, max: 5 },
        assignee: { type: 'text' },
        project: { type: 'reference', structure: 'Project' },
        tags: { type: 'json' },
        due: { type: 'datetime' },
      },
    })
    .expect(201);
  for (const structure of ['Project', 'Task']) {
    await as(tokens.otherAdmin!, other)
      .post('/structures', {
        name: structure,
        fields: { name: { type: 'text' }, title: { type: 'text' }, status: { type: 'text' } },
      })
      .expect(201);
  }
  const policy = async (body: Body) =>
    as(tokens.admin!)
      .post('/policies', { description: '', ...body })
      .expect(201);
  await policy({
    name: 'no-done-for-members',
    roles: ['member'],
    rules: [
      {
        action: 'update',
        subject: 'Task',
        inverted: true,
        conditions: { status: 'done' },
        reason: 'members cannot hold tasks in done',
      },
    ],
  });
  await policy({
    name: 'contractor',
    roles: ['contractor'],
    rules: [
      {
        action: ['read', 'update'],
        subject: 'Task',
        conditions: { assignee: '${principal.id}' },
        reason: 'contractors see their own tasks',
      },
    ],
  });
  await policy({
    name: 'intern',
    roles: ['intern'],
    rules: [
      { action: 'read', subject: 'Task', fields: ['title', 'status'], reason: 'interns see titles and statuses' },
      { action: 'update', subject: 'Task', fields: ['status'], reason: 'interns move tasks' },
    ],
  });
  await policy({
    name: 'reviewer',
    roles: ['reviewer'],
    rules: [
      { action: 'read', subject: 'Task' },
      {
        action: 'read',
        subject: 'Task',
        fields: ['priority'],
        inverted: true,
        conditions: { status: 'done' },
        reason: 'priorities of finished work are private',
      },
    ],
  });
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

describe('a project-management flow over HTTP with Clerk tokens of three roles', () => {
  it('lets the admin build, the member work without deleting, and the viewer only read', async () => {
    const project = (
      await as(tokens.admin!)
        .post('/records/Project', { data: { name: 'Launch' } })
        .expect(201)
    ).body;
    expect(project).toMatchObject({
      structure: 'Project',
      data: { name: 'Launch', status: 'active' },
      createdBy: 'user_admin',
      version: 1,
    });

    const task = await createTask(tokens.member!, {
      title: 'Write the press release',
      project: project.id,
      priority: 2,
    });
    expect(task).toMatchObject({
      data: { title: 'Write the press release', status: 'todo', project: project.id, priority: 2 },
      createdBy: 'user_member',
    });

    const read = await as(tokens.viewer!).get(`/records/Task/${task.id}`).expect(200);
    expect(read.headers.etag).toBe('"1"');
    expect(read.body).toEqual(task);

    const viewerCreate = await as(tokens.viewer!)
      .post('/records/Task', { data: { title: 'nope' } })
      .expect(403);
    expect(viewerCreate.body.code).toBe('forbidden');
    await as(tokens.viewer!)
      .patch(`/records/Task/${task.id}`, { data: { title: 'changed' } })
      .expect(403);

    const memberDelete = await as(tokens.member!).delete(`/records/Task/${task.id}`).expect(403);
    expect(memberDelete.body.detail).toBe('default deny');
    expect(await stored(task.id)).toMatchObject({ version: 1 });

    const updated = await as(tokens.member!)
      .patch(`/records/Task/${task.id}`, { data: { status: 'doing', priority: null } })
      .expect(200);
    expect(updated.body).toMatchObject({ version: 2, data: { status: 'doing', title: 'Write the press release' } });
    expect(updated.body.data).not.toHaveProperty('priority');

    await as(tokens.admin!).delete(`/records/Task/${task.id}`).expect(204);
    expect(await stored(task.id)).toBeUndefined();
    await as(tokens.admin!).get(`/records/Task/${task.id}`).expect(404);
  });

  it('refuses every mutation without a token, with another workspace’s token, and for a lower role, leaving the row as stored', async () => {
    const task = await createTask(tokens.admin!, { title: 'Guarded' });
    const path = `/v1/workspaces/${tenant.slug}/records/Task/${task.id}`;
    await cordon
      .http()
      .patch(path)
      .send({ data: { title: 'x' } })
      .expect(401);
    await cordon.http().delete(path).expect(401);
    await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/records/Task`)
      .send({ data: { title: 'x' } })
      .expect(401);
    await cordon
      .http()
      .patch(path)
      .auth(tokens.otherAdmin!, { type: 'bearer' })
      .send({ data: { title: 'x' } })
      .expect(403);
    await cordon.http().delete(path).auth(tokens.otherAdmin!, { type: 'bearer' }).expect(403);
    await as(tokens.viewer!).delete(`/records/Task/${task.id}`).expect(403);
    expect(await stored(task.id)).toEqual({ data: { title: 'Guarded', status: 'todo' }, version: 1 });
  });

  it('keeps the platform admin out of tenant records', async () => {
    await cordon.admin().get(`/v1/workspaces/${tenant.slug}/records/Task`).expect(401);
  });
});

describe('lists', () => {
  const marker = randomUUID().slice(0, 8);
  beforeAll(async () => {
    for (let index = 0; index < 7; index++) {
      await createTask(tokens.admin!, {
        title: `${marker} task ${index}`,
        priority: (index % 5) + 1,
        assignee: index % 2 ? 'user_contractor' : 'someone',
        tags: [marker, index % 3 ? 'x' : 'y'],
      });
    }
  });
  const mine = { filter: JSON.stringify({ tags: marker }) };

  it('filters with MongoDB operators, sorts, pages with a cursor and counts only matching rows', async () => {
    const first = await list(tokens.admin!, { ...mine, sort: '-priority,title', limit: '3', count: 'true' }).expect(
      200,
    );
    expect(first.body.count).toBe(7);
    expect(first.body.data.map((task: { data: Body }) => task.data.priority)).toEqual([5, 4, 3]);
    const seen = [...first.body.data];
    let cursor = first.body.nextCursor as string | null;
    while (cursor) {
      const next = await list(tokens.admin!, { ...mine, sort: '-priority,title', limit: '3', cursor }).expect(200);
      seen.push(...next.body.data);
      cursor = next.body.nextCursor;
    }
    expect(seen).toHaveLength(7);
    expect(new Set(seen.map((task: { id: string }) => task.id)).size).toBe(7);
    const priorities = seen.map((task: { data: Body }) => task.data.priority as number);
    expect(priorities).toEqual([...priorities].sort((a, b) => b - a));

    const filtered = await list(tokens.admin!, {
      filter: JSON.stringify({ tags: { $all: [marker, 'y'] }, priority: { $gte: 2, $in: [1, 4] } }),
    }).expect(200);
    expect(filtered.body.data.map((task: { data: Body }) => task.data.title)).toEqual([`${marker} task 3`]);
    const regex = await list(tokens.admin!, {
      filter: JSON.stringify({ title: { $regex: `^${marker} TASK [0-2]$`, $options: 'i' } }),
      sort: 'title',
    }).expect(200);
    expect(regex.body.data.map((task: { data: Body }) => task.data.title)).toEqual(
      [0, 1, 2].map((index) => `${marker} task ${index}`),
    );
  });

  it('shows each record in a page exactly as GET shows it, whether PostgreSQL or the service writes the page', async () => {
    const odd = await createTask(tokens.admin!, {
      title: `${marker} "quoted" \\ line\nbreak — ünïcode 🚀 </script>`,
      priority: 2,
      tags: { marker, nested: [1.5, -0.25, 12345678.125, true, null, { deep: 'x' }], empty: {} },
      due: '2026-03-01T10:20:30.456Z',
    });
    // Written with microseconds, as an import or a migration may: shown truncated to milliseconds, as GET shows it.
    await owner.query(
      `update records set created_at = '2026-01-02T03:04:05.678999Z', updated_at = '2026-01-02T03:04:05.000001Z' where id = $1`,
      [odd.id],
    );
    const text = JSON.stringify({ $or: [{ tags: marker }, { 'tags.marker': marker }] });
    // The admin has no field rules (PostgreSQL writes each record); the intern's strip fields (the service does).
    for (const reader of ['admin', 'intern']) {
      const page = await list(tokens[reader]!, {
        filter: reader === 'admin' ? text : JSON.stringify({ status: 'todo' }),
        limit: '200',
      }).expect(200);
      expect(page.headers['content-type']).toBe('application/json; charset=utf-8');
      expect(page.body.data.length).toBeGreaterThan(reader === 'admin' ? 7 : 0);
      for (const entry of page.body.data) {
        const one = await as(tokens[reader]!).get(`/records/Task/${entry.id}`).expect(200);
        expect(entry).toEqual(one.body);
      }
      if (reader === 'admin') {
        const shown = page.body.data.find((entry: { id: string }) => entry.id === odd.id);
        expect(shown).toMatchObject({ createdAt: '2026-01-02T03:04:05.678Z', updatedAt: '2026-01-02T03:04:05.000Z' });
        expect(shown.data).toEqual(odd.data);
      }
    }
  });

  it('pages exactly through records that share a millisecond (microseconds from SQL or an import)', async () => {
    const tag = randomUUID().slice(0, 8);
    const ids: string[] = [];
    for (const micros of ['100', '200', '300']) {
      const task = await createTask(tokens.admin!, { title: `${tag} ${micros}`, tags: [tag] });
      await owner.query('update records set created_at = $2 where id = $1', [
        task.id,
        `2026-02-03T04:05:06.678${micros}Z`,
      ]);
      ids.push(task.id);
    }
    for (const sort of ['createdAt', '-createdAt']) {
      const seen: string[] = [];
      let cursor: string | null | undefined;
      // At most a few pages more than there are records: a cursor that repeats a page must not loop for ever.
      for (let page = 0; page < 6 && cursor !== null; page += 1) {
        const query: Record<string, string> = { filter: JSON.stringify({ tags: tag }), sort, limit: '1' };
        if (cursor) query.cursor = cursor;
        const body = (await list(tokens.admin!, query).expect(200)).body;
        seen.push(...body.data.map((task: { id: string }) => task.id));
        cursor = body.nextCursor;
      }
      expect(seen).toEqual(sort === 'createdAt' ? ids : [...ids].reverse());
    }
  });

  it('compiles the reader’s conditions into the query, so pages and counts see only permitted rows', async () => {
    const page = await list(tokens.contractor!, { ...mine, limit: '2', count: 'true' }).expect(200);
    expect(page.body.count).toBe(3);
    expect(page.body.data).toHaveLength(2);
    expect(page.body.data.every((task: { data: Body }) => task.data.assignee === 'user_contractor')).toBe(true);
    const rest = await list(tokens.contractor!, { ...mine, limit: '2', cursor: page.body.nextCursor }).expect(200);
    expect(rest.body.data).toHaveLength(1);
    expect(rest.body.nextCursor).toBeNull();
  });

  it('refuses a cursor from another list and a forged one', async () => {
    const page = await list(tokens.admin!, { ...mine, limit: '1' }).expect(200);
    const other = await list(tokens.admin!, {
      ...mine,
      limit: '1',
      sort: 'title',
      cursor: page.body.nextCursor,
    }).expect(400);
    expect(other.body.code).toBe('invalid_cursor');
    const forged = Buffer.from(JSON.stringify({ q: 'x', k: ["'; drop table records; --"] })).toString('base64url');
    expect((await list(tokens.admin!, { ...mine, cursor: forged }).expect(400)).body.code).toBe('invalid_cursor');
  });

  it('answers a bad filter or sort with 400 and a pointer, never a 500', async () => {
    const cases: [Record<string, string>, string][] = [
      [{ filter: '{' }, '/filter'],
      [{ filter: JSON.stringify({ title: { $where: 'x' } }) }, '/filter/title/$where'],
      [{ filter: JSON.stringify({ nope: 1 }) }, '/filter'],
      [{ filter: JSON.stringify({ title: 'a\u0000b' }) }, '/filter/title'],
      [{ sort: 'title;drop' }, '/sort'],
      [{ sort: 'unknown' }, '/sort'],
      [{ limit: '201' }, '/limit'],
    ];
    for (const [query, pointer] of cases) {
      const response = await list(tokens.admin!, query).expect(400);
      expect(response.body.errors[0]).toMatchObject({ pointer, in: 'query' });
    }
  });

  it('logs one decision per list naming the rules compiled into the filter', async () => {
    const response = await list(tokens.contractor!, mine).expect(200);
    const { rows } = await owner.query('select operation, reason, allowed from decisions where request_id = $1', [
      response.headers['x-request-id'],
    ]);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({
      operation: 'list',
      allowed: true,
      reason: expect.stringMatching(/^list filtered in SQL by rules [0-9a-f-]{36}#0$/),
    });
  });
});

describe('isolation between workspaces', () => {
  it('answers another workspace’s record id exactly like a missing one', async () => {
    const theirs = (
      await as(tokens.otherAdmin!, other)
        .post('/records/Task', { data: { title: 'secret' } })
        .expect(201)
    ).body;
    const foreign = await as(tokens.admin!).get(`/records/Task/${theirs.id}`).expect(404);
    const missing = await as(tokens.admin!).get(`/records/Task/${randomUUID()}`).expect(404);
    const strip = (body: Body) => ({ ...body, detail: undefined, requestId: undefined });
    expect(strip(foreign.body)).toEqual(strip(missing.body));
    await as(tokens.admin!)
      .patch(`/records/Task/${theirs.id}`, { data: { title: 'mine now' } })
      .expect(404);
    await as(tokens.admin!).delete(`/records/Task/${theirs.id}`).expect(404);
    expect(await stored(theirs.id)).toMatchObject({ data: { title: 'secret' }, version: 1 });
    const everything = await list(tokens.admin!, {
      filter: JSON.stringify({ $or: [{ title: 'secret' }, { id: theirs.id }] }),
      count: 'true',
    }).expect(200);
    expect(everything.body).toMatchObject({ data: [], count: 0 });
  });
});

describe('field rules', () => {
  it('strips unreadable fields, and refuses to filter or sort on them', async () => {
    const task = await createTask(tokens.admin!, { title: 'Intern view', priority: 3, assignee: 'someone' });
    const read = await as(tokens.intern!).get(`/records/Task/${task.id}`).expect(200);
    expect(read.body.data).toEqual({ title: 'Intern view', status: 'todo' });
    const listed = await list(tokens.intern!, { filter: JSON.stringify({ title: 'Intern view' }) }).expect(200);
    expect(listed.body.data[0].data).toEqual({ title: 'Intern view', status: 'todo' });
    expect((await list(tokens.intern!, { filter: JSON.stringify({ priority: 3 }) }).expect(403)).body.code).toBe(
      'forbidden',
    );
    await list(tokens.intern!, { sort: '-priority' }).expect(403);
  });

  it('hides a field only where its conditional deny applies, and so never lets it be filtered on', async () => {
    const open = await createTask(tokens.admin!, { title: 'Open review', priority: 4 });
    const done = await createTask(tokens.admin!, { title: 'Done review', priority: 5, status: 'done' });
    expect((await as(tokens.reviewer!).get(`/records/Task/${open.id}`).expect(200)).body.data.priority).toBe(4);
    expect((await as(tokens.reviewer!).get(`/records/Task/${done.id}`).expect(200)).body.data).not.toHaveProperty(
      'priority',
    );
    await list(tokens.reviewer!, { filter: JSON.stringify({ priority: 5 }) }).expect(403);
  });

  it('refuses field rules on nested paths, which it could not enforce', async () => {
    const response = await as(tokens.admin!)
      .post('/policies', {
        name: 'nested-fields',
        description: '',
        roles: ['intern'],
        rules: [{ action: 'read', subject: 'Task', fields: ['title', 'tags.secret'], inverted: true }],
      })
      .expect(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ pointer: '/rules/0/fields/1' })]);
  });

  it('refuses a write that touches a field the principal may not write', async () => {
    const task = await createTask(tokens.admin!, { title: 'Intern edit' });
    await as(tokens.intern!)
      .patch(`/records/Task/${task.id}`, { data: { status: 'doing' } })
      .expect(200);
    const refused = await as(tokens.intern!)
      .patch(`/records/Task/${task.id}`, { data: { title: 'renamed' } })
      .expect(403);
    expect(refused.body.detail).toMatch(/field "title"/);
    expect(await stored(task.id)).toMatchObject({ data: { title: 'Intern edit', status: 'doing' }, version: 2 });
  });
});

describe('updates', () => {
  it('checks the record before and after: a member can neither move a task into done nor change a done one', async () => {
    const task = await createTask(tokens.member!, { title: 'Almost there', status: 'doing' });
    const into = await as(tokens.member!)
      .patch(`/records/Task/${task.id}`, { data: { status: 'done' } })
      .expect(403);
    expect(into.body.detail).toBe('members cannot hold tasks in done');
    expect(await stored(task.id)).toMatchObject({ data: { status: 'doing' }, version: 1 });
    await as(tokens.admin!)
      .patch(`/records/Task/${task.id}`, { data: { status: 'done' } })
      .expect(200);
    await as(tokens.member!)
      .patch(`/records/Task/${task.id}`, { data: { status: 'todo' } })
      .expect(403);
    expect(await stored(task.id)).toMatchObject({ data: { status: 'done' }, version: 2 });
  });

  it('lets a contractor update only their own tasks, and not give them away', async () => {
    const theirs = await createTask(tokens.admin!, { title: 'Contract work', assignee: 'user_contractor' });
    await as(tokens.contractor!)
      .patch(`/records/Task/${theirs.id}`, { data: { status: 'doing' } })
      .expect(200);
    await as(tokens.contractor!)
      .patch(`/records/Task/${theirs.id}`, { data: { assignee: 'someone' } })
      .expect(403);
    const notTheirs = await createTask(tokens.admin!, { title: 'Not yours', assignee: 'someone' });
    await as(tokens.contractor!).get(`/records/Task/${notTheirs.id}`).expect(403);
    await as(tokens.contractor!)
      .patch(`/records/Task/${notTheirs.id}`, { data: { assignee: 'user_contractor' } })
      .expect(403);
    expect(await stored(notTheirs.id)).toMatchObject({ data: { assignee: 'someone' }, version: 1 });
  });

  it('uses the version as ETag: a stale If-Match is 412 and changes nothing', async () => {
    const task = await createTask(tokens.admin!, { title: 'Versioned' });
    const first = await as(tokens.admin!)
      .patch(`/records/Task/${task.id}`, { data: { priority: 1 } })
      .set('If-Match', '"1"')
      .expect(200);
    expect(first.headers.etag).toBe('"2"');
    const stale = await as(tokens.admin!)
      .patch(`/records/Task/${task.id}`, { data: { priority: 5 } })
      .set('If-Match', '"1"')
      .expect(412);
    expect(stale.body.code).toBe('precondition_failed');
    await as(tokens.admin!).delete(`/records/Task/${task.id}`).set('If-Match', '"1"').expect(412);
    expect(await stored(task.id)).toMatchObject({ data: { priority: 1 }, version: 2 });
    await as(tokens.admin!).delete(`/records/Task/${task.id}`).set('If-Match', '"2"').expect(204);
  });

  it('decides on the record before comparing If-Match: a principal refused the record learns nothing of its version', async () => {
    const task = await createTask(tokens.admin!, { title: "Not the contractor's", assignee: 'someone' });
    await as(tokens.admin!)
      .patch(`/records/Task/${task.id}`, { data: { priority: 2 } })
      .expect(200);
    // Version 2 is current: whichever version the contractor names, the answer is the same 403.
    for (const version of ['"1"', '"2"', '"3"']) {
      const refused = await as(tokens.contractor!)
        .patch(`/records/Task/${task.id}`, { data: { title: 'x' } })
        .set('If-Match', version)
        .expect(403);
      expect(refused.body.code).toBe('forbidden');
    }
    // The member may not delete tasks at all; the viewer may not update them: both refused before the version.
    await as(tokens.member!).delete(`/records/Task/${task.id}`).set('If-Match', '"1"').expect(403);
    await as(tokens.viewer!)
      .patch(`/records/Task/${task.id}`, { data: { title: 'x' } })
      .set('If-Match', '"1"')
      .expect(403);
    expect(await stored(task.id)).toMatchObject({ data: { priority: 2 }, version: 2 });
  });

  it('commits a mutation and its decision together', async () => {
    const task = await createTask(tokens.member!, { title: 'Audited' });
    const { rows } = await owner.query(
      'select action, operation, allowed, resource_id from decisions where resource_id = $1 order by position',
      [task.id],
    );
    expect(rows).toEqual([{ action: 'create', operation: 'create', allowed: true, resource_id: task.id }]);
  });
});

describe('validation', () => {
  it('answers invalid data with 400 and JSON pointers, storing nothing', async () => {
    const before = Number(
      (await owner.query('select count(*) from records where workspace_id = $1', [tenant.id])).rows[0].count,
    );
    const cases: [unknown, string][] = [
      [{ data: {} }, '/data/title'],
      [{ data: { title: 'x', status: 'later' } }, '/data/status'],
      [{ data: { title: 'x', priority: 1.5 } }, '/data/priority'],
      [{ data: { title: 'x', priority: 9 } }, '/data/priority'],
      [{ data: { title: 'x', color: 'red' } }, '/data/color'],
      [{ data: { title: 'x', due: 'tomorrow' } }, '/data/due'],
      [{ data: { title: 'x', project: randomUUID() } }, '/data/project'],
      [{ data: { title: 'x', tags: { bad: 'a\u0000b' } } }, '/data/tags/bad'],
      // zod's record would drop this key without a word: refused, not lost.
      [{ data: JSON.parse('{"title": "x", "__proto__": {"admin": true}}') }, '/data/__proto__'],
      [{ data: { title: 'x' }, id: randomUUID() }, '/id'],
      [{ data: { title: 'x' }, createdBy: 'someone-else' }, '/createdBy'],
      [{ title: 'x' }, '/data'],
    ];
    for (const [body, pointer] of cases) {
      const response = await as(tokens.admin!).post('/records/Task', body).expect(400);
      expect(response.body.errors.map((error: { pointer: string }) => error.pointer)).toContain(pointer);
    }
    const after = Number(
      (await owner.query('select count(*) from records where workspace_id = $1', [tenant.id])).rows[0].count,
    );
    expect(after).toBe(before);
  });

  it('never answers NUL characters, year 0 or deep nesting anywhere in a request with a 5xx', async () => {
    const task = await createTask(tokens.admin!, { title: 'Hostile input' });
    const bearer = { type: 'bearer' as const };
    const deep = JSON.parse('{"a":'.repeat(5_000) + '1' + '}'.repeat(5_000));
    const cursor = (k: unknown[]) => Buffer.from(JSON.stringify({ q: 'x', k })).toString('base64url');
    const responses = [
      await cordon.http().get('/v1/workspaces/a%00b/records/Task').auth(tokens.admin!, bearer),
      await cordon.http().get('/v1/workspaces/%E0%A4%A/records/Task').auth(tokens.admin!, bearer),
      await as(tokens.admin!).get('/members/%C3%28'),
      await as(tokens.admin!).get('/records/Ta%00sk'),
      await as(tokens.admin!).get(`/records/Task/${task.id}%00`),
      await as(tokens.admin!).get('/members/a%00b'),
      await as(tokens.admin!).post('/members', { userId: 'u\u0000', roles: [] }),
      await as(tokens.admin!).patch(`/records/Task/${task.id}`, { data: { 'x\u0000': null } }),
      await as(tokens.admin!).patch(`/records/Task/${task.id}`, { data: { tags: deep } }),
      await list(tokens.admin!, { cursor: cursor(['0000-01-01T00:00:00.000Z', task.id]) }),
      await list(tokens.admin!, { cursor: cursor(['2024-02-30T00:00:00.000Z', task.id]) }),
      await as(tokens.admin!).get(`/members?cursor=${cursor([])}`),
      await as(tokens.admin!).get(
        `/members?cursor=${Buffer.from(JSON.stringify({ at: '0000-01-01T00:00:00Z', user: 'x' })).toString('base64url')}`,
      ),
      await as(tokens.admin!).post('/policies', {
        name: 'regex-placeholder',
        description: '',
        roles: ['x'],
        rules: [{ action: 'read', subject: 'Task', conditions: { title: { $regex: '${principal.claims.team}' } } }],
      }),
    ];
    expect(responses.map((response) => response.status)).toEqual(responses.map(() => 400));
    // A subject claim PostgreSQL could not store is no subject at all.
    expect(
      (
        await as(await tenant.token('user_\u0000', 'admin'))
          .get('/records/Task')
          .expect(401)
      ).body.code,
    ).toBe('token_claims');
    const early = await list(tokens.admin!, {
      filter: JSON.stringify({ createdAt: { $gt: '0000-01-01T00:00:00.000Z' }, title: 'Hostile input' }),
    }).expect(200);
    expect(early.body.data.map((record: { id: string }) => record.id)).toEqual([task.id]);
    expect(await stored(task.id)).toMatchObject({ version: 1 });
  });

  it('stores datetimes as canonical UTC and keeps hostile keys as plain data', async () => {
    const task = await createTask(tokens.admin!, {
      title: 'Dated',
      due: '2026-12-01T10:00:00+02:00',
      tags: JSON.parse('{"__proto__": {"admin": true}, "constructor": 1}'),
    });
    expect(task.data.due).toBe('2026-12-01T08:00:00.000Z');
    expect(await stored(task.id)).toMatchObject({ data: { tags: { __proto__: { admin: true }, constructor: 1 } } });
    expect(({} as Body).admin).toBeUndefined();
  });

  it('answers an unknown structure with 404 after the type-level check', async () => {
    expect((await as(tokens.admin!).get('/records/Nothing').expect(404)).body.code).toBe('structure_not_found');
    expect((await as(tokens.viewer!).post('/records/Nothing', { data: {} }).expect(403)).body.code).toBe('forbidden');
  });
});

describe('structure changes against stored records', () => {
  it('refuses changes that break records unless forced, and fills defaults of new fields', async () => {
    const structure = 'Ticket';
    await as(tokens.admin!)
      .post('/structures', {
        name: structure,
        fields: { title: { type: 'text', required: true }, level: { type: 'text', enum: ['low', 'high', 'urgent'] } },
      })
      .expect(201);
    const urgent = (
      await as(tokens.admin!)
        .post(`/records/${structure}`, { data: { title: 'a', level: 'urgent' } })
        .expect(201)
    ).body;
    await as(tokens.admin!)
      .post(`/records/${structure}`, { data: { title: 'b', level: 'low' } })
      .expect(201);

    const narrowed = await as(tokens.admin!)
      .put(`/structures/${structure}`, {
        fields: { title: { type: 'text', required: true }, level: { type: 'text', enum: ['low', 'high'] } },
      })
      .expect(409);
    expect(narrowed.body).toMatchObject({
      code: 'structure_change_breaks_records',
      detail: expect.stringMatching(/^1 stored record would not match/),
    });
    const required = await as(tokens.admin!)
      .put(`/structures/${structure}`, {
        fields: {
          title: { type: 'text', required: true },
          level: { type: 'text' },
          owner: { type: 'text', required: true },
        },
      })
      .expect(409);
    expect(required.body.detail).toMatch(/^2 stored records/);

    const defaulted = await as(tokens.admin!)
      .put(`/structures/${structure}`, {
        fields: {
          title: { type: 'text', required: true },
          level: { type: 'text' },
          owner: { type: 'text', required: true, default: 'nobody' },
        },
      })
      .expect(200);
    expect(defaulted.body.version).toBe(2);
    expect(await stored(urgent.id)).toMatchObject({
      data: { title: 'a', level: 'urgent', owner: 'nobody' },
      version: 2,
    });

    await as(tokens.admin!)
      .put(`/structures/${structure}?force=true`, {
        fields: {
          title: { type: 'text', required: true },
          level: { type: 'text', enum: ['low'] },
          owner: { type: 'text' },
        },
      })
      .expect(200);
    expect(await stored(urgent.id)).toMatchObject({ data: { level: 'urgent' } });
    // The broken record must be fixed by its next update.
    await as(tokens.admin!)
      .patch(`/records/${structure}/${urgent.id}`, { data: { title: 'still urgent' } })
      .expect(400);
    await as(tokens.admin!)
      .patch(`/records/${structure}/${urgent.id}`, { data: { level: 'low' } })
      .expect(200);

    expect((await as(tokens.admin!).delete(`/structures/${structure}`).expect(409)).body).toMatchObject({
      code: 'structure_has_records',
      detail: expect.stringContaining('2 records'),
    });
    await as(tokens.admin!).delete(`/structures/${structure}?force=true`).expect(204);
    expect(await stored(urgent.id)).toBeUndefined();
  });

  it('makes a write that races a structure change wait for it, then validate against the new fields', async () => {
    await as(tokens.admin!)
      .post('/structures', { name: 'Memo', fields: { text: { type: 'text' } } })
      .expect(201);
    await as(tokens.admin!)
      .post('/records/Memo', { data: { text: 'warms the cache' } })
      .expect(201);
    const changer = await ownerClient();
    try {
      await changer.query('begin');
      await changer.query("select 1 from structures where workspace_id = $1 and name = 'Memo' for update", [tenant.id]);
      const changerPid = (await changer.query('select pg_backend_pid() as pid')).rows[0].pid as number;
      const racing = as(tokens.admin!)
        .post('/records/Memo', { data: { text: 'longer than three' } })
        .then((response) => response);
      // The write is racing once its backend waits on the changer's lock.
      await eventually(
        async () =>
          (
            await owner.query(
              "select 1 from pg_stat_activity where wait_event_type = 'Lock' and $1 = any(pg_blocking_pids(pid))",
              [changerPid],
            )
          ).rowCount === 1,
      );
      await changer.query(
        `update structures set fields = '{"text": {"type": "text", "maxLength": 3}}', version = version + 1 where workspace_id = $1 and name = 'Memo'`,
        [tenant.id],
      );
      await changer.query('commit');
      const response = await racing;
      expect(response.status).toBe(400);
      expect(response.body.errors[0].pointer).toBe('/data/text');
    } finally {
      await changer.end();
    }
  });

  it('validates structure definitions with pointers and refuses reserved names', async () => {
    const cases: [Body, string][] = [
      [{ name: 'lowercase', fields: {} }, '/name'],
      [{ name: 'Policy', fields: {} }, '/name'],
      [{ name: 'Fine', fields: { id: { type: 'text' } } }, '/fields/id'],
      [{ name: 'Fine', fields: { size: { type: 'decimal' } } }, '/fields/size/type'],
      [{ name: 'Fine', fields: { size: { type: 'integer', min: 5, max: 1 } } }, '/fields/size/min'],
      [{ name: 'Fine', fields: { size: { type: 'text', enum: ['a'], default: 'b' } } }, '/fields/size/default'],
      [{ name: 'Fine', fields: { parent: { type: 'reference', structure: 'Missing' } } }, '/fields/parent/structure'],
      // zod's record would drop this field without a word.
      [{ name: 'Fine', fields: JSON.parse('{"__proto__": {"type": "text"}}') }, '/fields/__proto__'],
    ];
    for (const [body, pointer] of cases) {
      const response = await as(tokens.admin!).post('/structures', body).expect(400);
      expect(response.body.errors.map((error: { pointer: string }) => error.pointer)).toContain(pointer);
    }
    expect((await as(tokens.admin!).post('/structures', { name: 'Task', fields: {} }).expect(409)).body.code).toBe(
      'structure_name_taken',
    );
    await as(tokens.member!).post('/structures', { name: 'Sneaky', fields: {} }).expect(403);
  });
});

describe('unusual requests are answered safely: no leak, no stall, no fail-open, no 500', () => {
  it('answers a write by a principal that may not read the record without its data', async () => {
    await as(tokens.admin!)
      .post('/policies', {
        name: 'blind-updater',
        description: '',
        roles: ['blind'],
        rules: [{ action: 'update', subject: 'Task', fields: ['status'] }],
      })
      .expect(201);
    const blind = await tenant.token('user_blind', 'blind');
    const task = await createTask(tokens.admin!, { title: 'Top secret', assignee: 'someone' });
    await as(blind).get(`/records/Task/${task.id}`).expect(403);
    const updated = await as(blind)
      .patch(`/records/Task/${task.id}`, { data: { status: 'doing' } })
      .expect(200);
    expect(updated.body).toMatchObject({ id: task.id, version: 2, data: {} });
  });

  it('finishes concurrent updates that check references, instead of exhausting the connection pool', async () => {
    const project = (
      await as(tokens.admin!)
        .post('/records/Project', { data: { name: 'Pool' } })
        .expect(201)
    ).body;
    const tasks = await Promise.all(
      Array.from({ length: 10 }, (_, index) =>
        createTask(tokens.admin!, { title: `pool ${index}`, project: project.id }),
      ),
    );
    const responses = await Promise.all(
      tasks.map((task) =>
        as(tokens.admin!).patch(`/records/Task/${task.id}`, { data: { project: project.id, priority: 2 } }),
      ),
    );
    expect(responses.map((response) => response.status)).toEqual(tasks.map(() => 200));
  }, 15_000);

  it('treats a placeholder value the grammar refuses as unresolved, not as a 500', async () => {
    const longId = `user_${'x'.repeat(1_100)}`;
    // The contractor's only rule cannot be resolved, so it is left out: fail closed.
    const response = await list(await tenant.token(longId, 'contractor'), {}).expect(403);
    expect(response.body.detail).toBe('default deny');
  });

  it('refuses duplicate enum values, and counts records a new requirement breaks even with a default', async () => {
    const duplicate = await as(tokens.admin!)
      .post('/structures', { name: 'Dup', fields: { size: { type: 'number', enum: [0, -0] } } })
      .expect(400);
    expect(duplicate.body.errors[0].pointer).toBe('/fields/size/enum');
    await as(tokens.admin!)
      .post('/structures', { name: 'Later', fields: { title: { type: 'text' }, rank: { type: 'integer' } } })
      .expect(201);
    await as(tokens.admin!)
      .post('/records/Later', { data: { title: 'no rank' } })
      .expect(201);
    const refused = await as(tokens.admin!)
      .put('/structures/Later', {
        fields: { title: { type: 'text' }, rank: { type: 'integer', required: true, default: 3 } },
      })
      .expect(409);
    expect(refused.body.detail).toMatch(/^1 stored record/);
    const deep = JSON.parse('['.repeat(40) + ']'.repeat(40));
    expect(
      (
        await as(tokens.admin!)
          .post('/structures', { name: 'Deep', fields: { blob: { type: 'json', default: deep } } })
          .expect(400)
      ).body.errors[0].pointer,
    ).toMatch(/^\/fields\/blob\/default/);
  });

  it('evaluates a policy regex in linear time, so one tenant’s pattern cannot stall the service', async () => {
    await as(tokens.admin!)
      .post('/policies', {
        name: 'slow-regex',
        description: '',
        roles: ['pattern'],
        rules: [{ action: 'read', subject: 'Task', conditions: { title: { $regex: '.*.*.*.*.*!' } } }],
      })
      .expect(201);
    const task = await createTask(tokens.admin!, { title: 'a'.repeat(190) });
    const started = performance.now();
    await as(await tenant.token('user_pattern', 'pattern'))
      .get(`/records/Task/${task.id}`)
      .expect(403);
    const checked = await as(tokens.admin!)
      .post('/check', {
        principal: { id: 'user_pattern', roles: ['pattern'] },
        checks: [
          { action: 'read', subject: 'Task', resource: { title: 'x'.repeat(50_000) } },
          { action: 'read', subject: 'Task', resource: { title: 'x'.repeat(50_000) + '!' } },
        ],
      })
      .expect(200);
    expect(checked.body.results.map((result: { allowed: boolean }) => result.allowed)).toEqual([false, true]);
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('refuses a /check resource that names CASL’s internal subject key', async () => {
    await as(tokens.admin!)
      .post('/check', { checks: [{ action: 'read', subject: 'Task', resource: { __caslSubjectType__: 'Policy' } }] })
      .expect(400);
  });
});
