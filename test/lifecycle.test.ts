import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { jest } from '@jest/globals';
import type pg from 'pg';
import type supertest from 'supertest';
import { ownerClient, startTestApp, uniqueSlug, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, trustIssuer, type TestTenant } from './support/tenant.ts';

jest.setTimeout(180_000);

let cordon: TestApp;
let issuer: TestIssuer;
let owner: pg.Client;

beforeAll(async () => {
  cordon = await startTestApp();
  issuer = await TestIssuer.start();
  owner = await ownerClient();
});
afterAll(async () => {
  await owner.end();
  await issuer.close();
  await cordon.close();
});

const text = (response: supertest.Response) => response.body as string;
const asText = (request: supertest.Test) =>
  request.buffer(true).parse((response, callback) => {
    let body = '';
    response.setEncoding('utf8');
    response.on('data', (chunk: string) => (body += chunk));
    response.on('end', () => callback(null, body));
  });

const exportOf = async (slug: string): Promise<string> =>
  text(await asText(cordon.admin().get(`/v1/workspaces/${slug}/export`)).expect(200));
const linesOf = (body: string) =>
  body
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as { kind: string; data: Record<string, unknown> });

const importInto = (slug: string, body: string, query = '') =>
  cordon.admin().post(`/v1/workspaces/${slug}/import${query}`).set('content-type', 'application/x-ndjson').send(body);

const emptyWorkspace = async (prefix: string) =>
  (
    await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug: uniqueSlug(prefix), name: prefix, plan: 'enterprise' })
      .expect(201)
  ).body as { id: string; slug: string };

const as = (tenant: TestTenant, token: string) => ({
  get: (path: string) => cordon.http().get(`/v1/workspaces/${tenant.slug}${path}`).auth(token, { type: 'bearer' }),
  post: (path: string, body: unknown) =>
    cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}${path}`)
      .auth(token, { type: 'bearer' })
      .send(body as object),
});

/** Workspace A, built through the HTTP API: structures, policies, members, a function, triggers and records. */
async function buildSource(): Promise<TestTenant> {
  const tenant = await createTenant(cordon, issuer, 'source');
  const admin = as(tenant, await tenant.token('user_admin', 'admin'));
  await admin.post('/structures', { name: 'Project', fields: { name: { type: 'text', required: true } } }).expect(201);
  await admin
    .post('/structures', {
      name: 'Task',
      fields: {
        title: { type: 'text', required: true, maxLength: 50 },
        status: { type: 'text', enum: ['todo', 'done'], default: 'todo' },
        assigneeId: { type: 'text' },
        points: { type: 'integer', min: 0 },
        projectId: { type: 'reference', structure: 'Project' },
        parentId: { type: 'reference', structure: 'Task' },
      },
    })
    .expect(201);
  await admin
    .post('/policies', {
      name: 'contractor',
      roles: ['contractor'],
      rules: [
        { action: ['read', 'update'], subject: 'Task', conditions: { assigneeId: '${principal.id}' } },
        { action: 'read', subject: 'Task', fields: ['points'], inverted: true, reason: 'points are internal' },
      ],
    })
    .expect(201);
  await admin.post('/members', { userId: 'user_member', email: 'member@example.com', roles: ['member'] }).expect(201);
  await admin.post('/members', { userId: 'user_admin', roles: ['admin'] }).expect(201);
  await admin
    .post('/functions', {
      name: 'stamp',
      code: 'async function run(event) { return { seen: event.type }; }',
      roles: [],
    })
    .expect(201);
  await admin
    .post('/triggers', {
      name: 'hook',
      events: ['record_created'],
      structure: 'Task',
      condition: { status: 'done' },
      action: { type: 'webhook', url: 'http://127.0.0.1:9/hook' },
    })
    .expect(201);
  await admin
    .post('/triggers', {
      name: 'run-stamp',
      events: ['record_updated'],
      action: { type: 'function', function: 'stamp' },
    })
    .expect(201);
  const projects: string[] = [];
  for (const name of ['Alpha', 'Beta'])
    projects.push((await admin.post('/records/Project', { data: { name } }).expect(201)).body.id);
  let parent: string | undefined;
  for (let index = 0; index < 6; index += 1) {
    const created = await admin
      .post('/records/Task', {
        data: {
          title: `Task ${index}`,
          assigneeId: index % 2 ? 'user_contractor' : 'someone_else',
          points: index,
          projectId: projects[index % 2],
          ...(parent && { parentId: parent }),
          ...(index === 5 && { status: 'done' }),
        },
      })
      .expect(201);
    parent = created.body.id;
  }
  // An update, so versions and timestamps differ from a create's.
  await cordon
    .http()
    .patch(`/v1/workspaces/${tenant.slug}/records/Task/${parent}`)
    .auth(await tenant.token('user_admin', 'admin'), { type: 'bearer' })
    .send({ data: { title: 'Task 5 (renamed)' } })
    .expect(200);
  return tenant;
}

/**
 * A list cursor carries its position (`k`) and a digest of the query it was issued for (`q`),
 * which includes the workspace, so a cursor of A is refused by B: only the positions must agree.
 */
function positionOnly(body: { nextCursor?: string | null }) {
  if (typeof body.nextCursor !== 'string') return body;
  const { k } = JSON.parse(Buffer.from(body.nextCursor, 'base64url').toString()) as { k: unknown };
  return { ...body, nextCursor: { k } };
}

/** Every answer a principal gets from the workspace's read routes, ids and all. */
async function answers(tenant: TestTenant, userId: string, role: string) {
  const client = as(tenant, await tenant.token(userId, role));
  const body = async (path: string) => {
    const response = await client.get(path);
    return {
      status: response.status,
      body: response.status === 200 ? positionOnly(response.body) : response.body.code,
    };
  };
  const seen: Record<string, unknown> = {};
  for (const path of [
    '/structures',
    '/policies',
    '/members',
    '/triggers',
    '/functions',
    '/records/Project?sort=-createdAt',
    '/records/Task?limit=2&count=true',
    '/records/Task?filter=' + encodeURIComponent(JSON.stringify({ points: { $gte: 2 } })) + '&sort=-points',
  ])
    seen[path] = await body(path);
  // The second page, through each workspace's own cursor.
  const first = await client.get('/records/Task?limit=2');
  if (first.body.nextCursor)
    seen.secondPage = await body(`/records/Task?limit=2&cursor=${encodeURIComponent(first.body.nextCursor)}`);
  const tasks = (await as(tenant, await tenant.token('user_admin', 'admin')).get('/records/Task?limit=100')).body
    .data as { id: string }[];
  for (const task of tasks) seen[`/records/Task/${task.id}`] = await body(`/records/Task/${task.id}`);
  const checks = [
    { action: 'read', subject: 'Task' },
    { action: 'delete', subject: 'Task' },
    { action: 'manage', subject: 'Policy' },
    { action: 'read', subject: 'Task', field: 'points' },
    ...tasks.slice(0, 3).map((task) => ({ action: 'update', subject: 'Task', resource: { id: task.id } })),
  ];
  seen.check = (await client.post('/check', { checks })).body;
  return seen;
}

const principals: [string, string][] = [
  ['user_admin', 'admin'],
  ['user_member', 'member'],
  ['user_viewer', 'viewer'],
  ['user_contractor', 'contractor'],
];

describe('export and import', () => {
  it('restores a workspace whose every list, record and check answer equals the source', async () => {
    const source = await buildSource();
    const exported = await exportOf(source.slug);
    const lines = linesOf(exported);
    expect(new Set(lines.map((line) => line.kind))).toEqual(
      new Set(['structure', 'policy', 'identityProvider', 'member', 'function', 'trigger', 'record']),
    );
    // No secrets leave: no signing secret, and nothing sealed.
    expect(exported).not.toMatch(/whsec_|secret/i);

    const target = await emptyWorkspace('restored');
    const imported = await importInto(target.slug, exported, '?identityProviders=skip').expect(200);
    expect(imported.body.imported).toMatchObject({
      structure: 2,
      policy: 5,
      member: 2,
      function: 1,
      trigger: 2,
      record: 8,
    });
    expect(imported.body.imported.identityProvider).toBe(0);
    expect(imported.body.triggerSecrets).toEqual([
      { id: expect.any(String), name: 'hook', secret: expect.stringMatching(/^whsec_/) },
    ]);
    const restored = await trustIssuer(cordon, issuer, target);

    for (const [userId, role] of principals) {
      expect(await answers(restored, userId, role)).toEqual(await answers(source, userId, role));
    }
    // The restored workspace exports the same lines, but for its own identity provider.
    const without = (body: string) => linesOf(body).filter((line) => line.kind !== 'identityProvider');
    expect(without(await exportOf(target.slug))).toEqual(without(exported));
  });

  it('copies identity providers when asked, and refuses one whose (issuer, orgId) another workspace holds', async () => {
    const source = await createTenant(cordon, issuer, 'bound');
    const exported = await exportOf(source.slug);
    const target = await emptyWorkspace('bound-copy');
    const refused = await importInto(target.slug, exported).expect(409);
    expect(refused.body).toMatchObject({ code: 'import_conflict', line: expect.any(Number) });
    await cordon.admin().delete(`/v1/workspaces/${source.slug}`).expect(204);
    await importInto(target.slug, exported).expect(200);
    // The source's tokens now reach the restored workspace.
    const token = await issuer.sign({
      v: 2,
      sub: 'user_a',
      azp: 'https://app.example.com',
      o: { id: source.orgId, rol: 'admin' },
    });
    await cordon.http().get(`/v1/workspaces/${target.slug}/policies`).auth(token, { type: 'bearer' }).expect(200);
  });

  describe('refuses, names the line and leaves the workspace empty', () => {
    const structure = JSON.stringify({
      kind: 'structure',
      data: { name: 'Note', fields: { body: { type: 'text', required: true, maxLength: 5 } } },
    });
    const record = (data: unknown) => JSON.stringify({ kind: 'record', data: { structure: 'Note', data } });
    const cases: [string, string, number, string][] = [
      [
        'a malformed line',
        [structure, record({ body: 'ok' }), '{"kind": "record", '].join('\n'),
        3,
        'import_malformed_line',
      ],
      ['a line that is not { kind, data }', [structure, '[1, 2]'].join('\n'), 2, 'import_malformed_line'],
      [
        'an unknown kind',
        [structure, '', JSON.stringify({ kind: 'widget', data: {} })].join('\n'),
        3,
        'import_unknown_kind',
      ],
      [
        'a record that breaks its structure',
        [structure, record({ body: 'ok' }), record({ body: 'far too long' })].join('\n'),
        3,
        'import_invalid_line',
      ],
      ['a record of no structure', record({ body: 'ok' }), 1, 'import_invalid_line'],
      [
        // Year 0 in UTC: ISO 8601 without an expanded year cannot show it.
        'a time outside the years 1 to 9999',
        [
          structure,
          JSON.stringify({
            kind: 'record',
            data: { structure: 'Note', createdAt: '0001-01-01T00:00:00+14:00', data: { body: 'ok' } },
          }),
        ].join('\n'),
        2,
        'import_invalid_line',
      ],
      [
        'a reference to no record',
        [
          JSON.stringify({
            kind: 'structure',
            data: { name: 'Note', fields: { body: { type: 'text' }, next: { type: 'reference', structure: 'Note' } } },
          }),
          record({ body: 'a' }),
          record({ next: randomUUID() }),
        ].join('\n'),
        3,
        'import_invalid_line',
      ],
      [
        'a record id given twice',
        [
          structure,
          ...[1, 2].map(() =>
            JSON.stringify({
              kind: 'record',
              data: { id: '0193a000-0000-7000-8000-0000000000aa', structure: 'Note', data: { body: 'x' } },
            }),
          ),
        ].join('\n'),
        3,
        'import_invalid_line',
      ],
    ];
    it.each(cases)('%s', async (_name, body, line, code) => {
      const target = await emptyWorkspace('refused');
      const before = await exportOf(target.slug);
      const refused = await importInto(target.slug, body).expect('content-type', /problem\+json/);
      expect(refused.body).toMatchObject({ code, line });
      expect(refused.body.detail).toContain(`Line ${line}`);
      expect(await exportOf(target.slug)).toBe(before);
      expect(linesOf(before).every((entry) => entry.kind === 'policy')).toBe(true);
    });
  });

  it('refuses a workspace that is not empty with 409, and needs the platform admin', async () => {
    const tenant = await createTenant(cordon, issuer, 'busy');
    const body = JSON.stringify({ kind: 'member', data: { userId: 'user_x', roles: ['viewer'] } });
    expect((await importInto(tenant.slug, body).expect(409)).body.code).toBe('import_target_not_empty');
    expect((await importInto(tenant.slug, body, '?identityProviders=skip').expect(200)).body.imported.member).toBe(1);
    expect((await importInto(tenant.slug, body, '?identityProviders=skip').expect(409)).body.code).toBe(
      'import_target_not_empty',
    );
    const token = await tenant.token('user_admin', 'admin');
    await cordon.http().get(`/v1/workspaces/${tenant.slug}/export`).auth(token, { type: 'bearer' }).expect(401);
    await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/import`)
      .auth(token, { type: 'bearer' })
      .set('content-type', 'application/x-ndjson')
      .send(body)
      .expect(401);
    await cordon.admin().get(`/v1/workspaces/no-such-workspace/export`).expect(404);
  });

  it('never exports another workspace’s rows', async () => {
    const tenants = await Promise.all([0, 1, 2].map(() => createTenant(cordon, issuer, 'isolated')));
    const owned = new Map<string, Set<string>>();
    for (const [index, tenant] of tenants.entries()) {
      const admin = as(tenant, await tenant.token('user_admin', 'admin'));
      await admin.post('/structures', { name: 'Secret', fields: { marker: { type: 'text' } } }).expect(201);
      const ids = new Set<string>();
      for (let count = 0; count < 5 + index * 3; count += 1)
        ids.add((await admin.post('/records/Secret', { data: { marker: `tenant-${index}` } }).expect(201)).body.id);
      owned.set(tenant.slug, ids);
    }
    for (const [index, tenant] of tenants.entries()) {
      const records = linesOf(await exportOf(tenant.slug)).filter((line) => line.kind === 'record');
      expect(new Set(records.map((line) => line.data.id))).toEqual(owned.get(tenant.slug));
      expect(records.every((line) => (line.data.data as { marker: string }).marker === `tenant-${index}`)).toBe(true);
    }
  });
});

describe('100k records', () => {
  it('exports and imports in constant memory', async () => {
    const source = await createTenant(cordon, issuer, 'large');
    const admin = as(source, await source.token('user_admin', 'admin'));
    await admin
      .post('/structures', {
        name: 'Item',
        fields: { title: { type: 'text', required: true }, rank: { type: 'integer' } },
      })
      .expect(201);
    await owner.query(
      `insert into records (id, workspace_id, structure, data, created_by)
       select gen_random_uuid(), $1, 'Item', jsonb_build_object('title', 'Item number ' || n || ' with a reasonably long title', 'rank', n), 'user_' || (n % 50)
       from generate_series(1, 100000) as n`,
      [source.id],
    );
    const target = await emptyWorkspace('large-copy');
    const server: Server = cordon.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as AddressInfo).port;
    const liveHeap = () => {
      globalThis.gc?.();
      return process.memoryUsage().heapUsed;
    };
    try {
      const baseline = liveHeap();
      let peak = baseline;
      let sinceReading = 0;
      let bytes = 0;
      // The export is piped straight into the import: neither side may hold it whole.
      const result = await new Promise<string>((resolve, reject) => {
        const upload = httpRequest(
          {
            host: '127.0.0.1',
            port,
            method: 'POST',
            path: `/v1/workspaces/${target.slug}/import?identityProviders=skip`,
            headers: { authorization: `Bearer ${cordon.adminKey}`, 'content-type': 'application/x-ndjson' },
          },
          (response) => {
            let body = '';
            response.setEncoding('utf8');
            response.on('data', (chunk: string) => (body += chunk));
            response.on('end', () => (response.statusCode === 200 ? resolve(body) : reject(new Error(body))));
          },
        );
        upload.on('error', reject);
        const download = httpRequest(
          {
            host: '127.0.0.1',
            port,
            path: `/v1/workspaces/${source.slug}/export`,
            headers: { authorization: `Bearer ${cordon.adminKey}` },
          },
          (response) => {
            // A refused export must fail the test with its problem, not leave the upload waiting.
            if (response.statusCode !== 200) {
              let problem = '';
              response.setEncoding('utf8');
              response.on('data', (chunk: string) => (problem += chunk));
              response.on('end', () => {
                reject(new Error(`export answered ${response.statusCode}: ${problem}`));
                upload.destroy();
              });
              return;
            }
            // An export cut short mid-stream fails the test too, instead of leaving the import waiting for the rest.
            response.on('error', reject);
            response.on('aborted', () => reject(new Error('the export was cut short')));
            response.on('data', (chunk: Buffer) => {
              bytes += chunk.length;
              sinceReading += chunk.length;
              if (sinceReading > 4_000_000) {
                sinceReading = 0;
                peak = Math.max(peak, liveHeap());
              }
            });
            response.pipe(upload);
          },
        );
        download.on('error', reject);
        download.end();
      });
      expect(JSON.parse(result).imported.record).toBe(100_000);
      expect(bytes).toBeGreaterThan(15_000_000);
      expect(typeof globalThis.gc).toBe('function');
      // Holding the export would take 20+ MB of text, several times that as objects.
      expect(peak - baseline).toBeLessThan(24 * 1024 * 1024);
      const counted = await cordon
        .http()
        .get(`/v1/workspaces/${source.slug}/records/Item?limit=1&count=true`)
        .auth(await source.token('user_admin', 'admin'), { type: 'bearer' })
        .expect(200);
      expect(counted.body.count).toBe(100_000);
      const { rows } = await owner.query(
        `select count(*)::int as count from records where workspace_id = $1 and id in (select id from records where workspace_id = $2)`,
        [target.id, source.id],
      );
      expect(rows[0].count).toBe(100_000);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('templates', () => {
  it('lists the templates without authentication', async () => {
    const listed = await cordon.http().get('/v1/templates').expect(200);
    expect(listed.body.data).toContainEqual(
      expect.objectContaining({ name: 'project-management', structures: ['Project', 'Task'], records: 4 }),
    );
  });

  it('creates a workspace from project-management in one go', async () => {
    const created = await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug: uniqueSlug('templated'), name: 'Templated', template: 'project-management' })
      .expect(201);
    expect(created.body).toMatchObject({ recordCount: 4, memberCount: 0 });
    const tenant = await trustIssuer(cordon, issuer, created.body);
    const viewer = as(tenant, await tenant.token('user_v', 'viewer'));
    const projects = (await viewer.get('/records/Project').expect(200)).body.data;
    expect(projects.map((project: { data: { name: string } }) => project.data.name)).toEqual(['Getting Started']);
    const tasks = (await viewer.get('/records/Task?sort=createdAt').expect(200)).body.data;
    expect(tasks.map((task: { data: { title: string } }) => task.data.title).sort()).toEqual(
      ['Create your first project', 'Customize settings', 'Invite team members'].sort(),
    );
    expect(
      tasks.every(
        (task: { data: { projectId: string; status: string } }) =>
          task.data.projectId === projects[0].id && task.data.status === 'todo',
      ),
    ).toBe(true);
    const admin = as(tenant, await tenant.token('user_a', 'admin'));
    expect(
      (await admin.get('/policies').expect(200)).body.data.map((policy: { name: string }) => policy.name).sort(),
    ).toEqual(['admin', 'auditor', 'member', 'viewer']);
    await viewer.post('/records/Task', { data: { title: 'no', projectId: projects[0].id } }).expect(403);
    const member = as(tenant, await tenant.token('user_m', 'member'));
    await member.post('/records/Task', { data: { title: 'mine', projectId: projects[0].id } }).expect(201);
  });

  it('refuses an unknown template with 400 and creates nothing', async () => {
    const slug = uniqueSlug('untemplated');
    const refused = await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug, name: 'No', template: 'no-such-template' })
      .expect(400);
    expect(refused.body.code).toBe('template_not_found');
    await cordon.admin().get(`/v1/workspaces/${slug}`).expect(404);
  });
});
