import type pg from 'pg';
import { ownerClient, startTestApp, uniqueSlug, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let other: TestTenant;
let adminToken: string;
let memberToken: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'pol');
  other = await createTenant(cordon, issuer, 'pol-other');
  await owner.query(
    `insert into structures (workspace_id, name, fields) values ($1, 'Task', '{"title": {"type": "text"}, "status": {"type": "text"}, "amount": {"type": "number"}}')`,
    [tenant.id],
  );
  adminToken = await tenant.token('user_admin', 'admin');
  memberToken = await tenant.token('user_member', 'member');
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const as = (token: string) => ({
  get: (path: string) => cordon.http().get(`/v1/workspaces/${tenant.slug}${path}`).auth(token, { type: 'bearer' }),
  post: (path: string, body: unknown) =>
    cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}${path}`)
      .auth(token, { type: 'bearer' })
      .send(body as object),
  patch: (path: string, body: unknown) =>
    cordon
      .http()
      .patch(`/v1/workspaces/${tenant.slug}${path}`)
      .auth(token, { type: 'bearer' })
      .send(body as object),
  put: (path: string, body: unknown) =>
    cordon
      .http()
      .put(`/v1/workspaces/${tenant.slug}${path}`)
      .auth(token, { type: 'bearer' })
      .send(body as object),
  delete: (path: string) =>
    cordon.http().delete(`/v1/workspaces/${tenant.slug}${path}`).auth(token, { type: 'bearer' }),
});

const check = async (token: string, checks: unknown[], principal?: unknown) =>
  (
    await as(token)
      .post('/check', principal ? { principal, checks } : { checks })
      .expect(200)
  ).body.results as { allowed: boolean; policyId: string | null; ruleIndex: number | null; reason: string }[];

async function createPolicy(body: Record<string, unknown>) {
  const response = await as(adminToken).post('/policies', { description: '', ...body });
  expect(response.status).toBe(201);
  return response.body as { id: string; version: number };
}

describe('default policies', () => {
  it('installs admin, member, viewer and auditor, each with a first version', async () => {
    const { body } = await as(adminToken).get('/policies').expect(200);
    expect(body.data.map((policy: { name: string }) => policy.name).sort()).toEqual([
      'admin',
      'auditor',
      'member',
      'viewer',
    ]);
    for (const policy of body.data) {
      const versions = await as(adminToken).get(`/policies/${policy.id}/versions`).expect(200);
      expect(versions.body.data).toEqual([
        expect.objectContaining({ version: 1, deleted: false, updatedBy: 'system' }),
      ]);
    }
  });

  it('lets an admin manage policies and refuses a member with 403 and the deciding rule', async () => {
    const denied = await as(memberToken).get('/policies').expect(403);
    expect(denied.body).toMatchObject({ code: 'forbidden', detail: 'members do not administer the workspace' });
    await as(memberToken)
      .post('/policies', { name: 'sneaky', roles: ['member'], rules: [{ action: 'manage', subject: 'all' }] })
      .expect(403);
    const { rowCount } = await owner.query("select 1 from policies where name = 'sneaky'");
    expect(rowCount).toBe(0);
  });

  it('answers 403 for every action of a principal with no role, and logs it', async () => {
    const token = await tenant.token('user_nobody');
    const response = await as(token).get('/policies').expect(403);
    expect(response.body.detail).toBe('default deny');
    const results = await check(token, [{ action: 'read', subject: 'Task' }]);
    expect(results).toEqual([
      { allowed: false, policyId: null, policyVersion: null, ruleIndex: null, reason: 'default deny' },
    ]);
    const { rows } = await owner.query(
      "select allowed, reason from decisions where workspace_id = $1 and principal_id = 'user_nobody' order by position",
      [tenant.id],
    );
    expect(rows).toEqual([
      { allowed: false, reason: 'default deny' },
      { allowed: false, reason: 'default deny' },
    ]);
  });
});

describe('versioning', () => {
  it('keeps every version, records who changed it, and reads back a deleted policy', async () => {
    const created = await createPolicy({
      name: 'versioned',
      roles: ['editor'],
      rules: [{ action: 'read', subject: 'Task' }],
    });
    expect(created.version).toBe(1);
    const replaced = await as(adminToken)
      .put(`/policies/${created.id}`, {
        name: 'versioned',
        roles: ['editor'],
        rules: [{ action: ['read', 'update'], subject: 'Task' }],
      })
      .expect(200);
    expect(replaced.body).toMatchObject({ version: 2, updatedBy: 'user_admin' });
    await as(adminToken).delete(`/policies/${created.id}`).expect(204);
    await as(adminToken).get(`/policies/${created.id}`).expect(404);
    const versions = await as(adminToken).get(`/policies/${created.id}/versions`).expect(200);
    expect(
      versions.body.data.map((version: { version: number; deleted: boolean; rules: unknown[] }) => [
        version.version,
        version.deleted,
        version.rules.length,
      ]),
    ).toEqual([
      [1, false, 1],
      [2, false, 1],
      [3, true, 1],
    ]);
    expect(versions.body.data[1].rules[0].action).toEqual(['read', 'update']);
  });

  it('refuses a duplicate name with 409 and keeps the original', async () => {
    await createPolicy({ name: 'unique-name', roles: ['x'], rules: [{ action: 'read', subject: 'Task' }] });
    const response = await as(adminToken)
      .post('/policies', { name: 'unique-name', roles: ['y'], rules: [{ action: 'read', subject: 'Task' }] })
      .expect(409);
    expect(response.body.code).toBe('policy_name_taken');
  });

  it('answers 404 for a policy id of another workspace, exactly like a missing one', async () => {
    const otherAdmin = await other.token('user_other', 'admin');
    const foreign = (
      await cordon.http().get(`/v1/workspaces/${other.slug}/policies`).auth(otherAdmin, { type: 'bearer' }).expect(200)
    ).body.data[0];
    const viaOurs = await as(adminToken).get(`/policies/${foreign.id}`).expect(404);
    const missing = await as(adminToken).get('/policies/0192f3a4-0000-7000-8000-000000000000').expect(404);
    expect(viaOurs.body.code).toBe(missing.body.code);
    await as(adminToken)
      .put(`/policies/${foreign.id}`, { name: 'x', roles: ['x'], rules: [{ action: 'read', subject: 'Task' }] })
      .expect(404);
    await as(adminToken).delete(`/policies/${foreign.id}`).expect(404);
    const { rows } = await owner.query('select version from policies where id = $1', [foreign.id]);
    expect(rows).toEqual([{ version: 1 }]);
  });
});

describe('validation points at the rule', () => {
  const invalid: [string, Record<string, unknown>, string][] = [
    ['an unknown action', { action: 'fly', subject: 'Task' }, '/rules/0/action'],
    ['an unknown action in a list', { action: ['read', 'fly'], subject: 'Task' }, '/rules/0/action/1'],
    ['an unknown subject', { action: 'read', subject: 'Spaceship' }, '/rules/0/subject'],
    [
      'an unsupported operator',
      { action: 'read', subject: 'Task', conditions: { title: { $where: 'x' } } },
      '/rules/0/conditions/title/$where',
    ],
    [
      'an unsafe regex',
      { action: 'read', subject: 'Task', conditions: { title: { $regex: '(?=a)' } } },
      '/rules/0/conditions/title/$regex',
    ],
    [
      'a placeholder inside a string',
      { action: 'read', subject: 'Task', conditions: { title: 'owner-${principal.id}' } },
      '/rules/0/conditions/title',
    ],
    [
      'an unknown placeholder root',
      { action: 'read', subject: 'Task', conditions: { title: '${env.SECRET}' } },
      '/rules/0/conditions/title',
    ],
    [
      'roles outside a list operator',
      { action: 'read', subject: 'Task', conditions: { status: '${principal.roles}' } },
      '/rules/0/conditions/status',
    ],
    ['fields on a system subject', { action: 'read', subject: 'Member', fields: ['email'] }, '/rules/0/fields'],
    [
      'an unknown field of a structure',
      { action: 'read', subject: 'Task', fields: ['title', 'secret'] },
      '/rules/0/fields/1',
    ],
  ];
  it.each(invalid)('refuses %s', async (_label, rule, pointer) => {
    const response = await as(adminToken)
      .post('/policies', { name: `invalid-${Math.random()}`, roles: ['x'], rules: [rule] })
      .expect(400);
    expect(response.body.code).toBe('validation_failed');
    expect(response.body.errors.map((error: { pointer: string }) => error.pointer)).toContain(pointer);
  });

  it('points into the right rule of several', async () => {
    const response = await as(adminToken)
      .post('/policies', {
        name: 'several',
        roles: ['x'],
        rules: [
          { action: 'read', subject: 'Task' },
          { action: 'read', subject: 'Task' },
          { action: 'read', subject: 'Task', conditions: { title: { $regex: '(?<n>x)' } } },
        ],
      })
      .expect(400);
    expect(response.body.errors[0].pointer).toBe('/rules/2/conditions/title/$regex');
  });

  it('accepts conditions with placeholders, fields on a structure and list placeholders', async () => {
    await createPolicy({
      name: 'valid-rich',
      roles: ['x'],
      rules: [
        {
          action: 'read',
          subject: 'Task',
          fields: ['title', 'status'],
          conditions: { createdBy: '${principal.id}', status: { $in: '${principal.roles}' } },
        },
        {
          action: 'update',
          subject: 'Task',
          conditions: { $or: [{ amount: { $lte: 1000 } }, { status: '${principal.claims.o.rol}' }] },
        },
      ],
    });
  });
});

describe('a __proto__ key in conditions, which zod’s record would drop', () => {
  // Written as JSON text: in an object literal "__proto__" sets the prototype and is never sent.
  const rule = (conditions: string) => `{"action": "read", "subject": "Task", "conditions": ${conditions}}`;
  const policy = (name: string, conditions: string) =>
    `{"name": "${name}", "roles": ["proto"], "rules": [${rule(conditions)}]}`;
  const send = (method: 'post' | 'put', path: string, text: string, token = adminToken) =>
    cordon
      .http()
      [method](`/v1/workspaces/${tenant.slug}${path}`)
      .auth(token, { type: 'bearer' })
      .set('content-type', 'application/json')
      .send(text);
  const pointersOf = (body: { errors?: { pointer: string }[] }) => body.errors?.map((error) => error.pointer);

  const placed: [string, string, string][] = [
    ['alone, where {} would match every record', '{"__proto__": {"$eq": "x"}}', '/conditions/__proto__'],
    ['beside a field', '{"title": "a", "__proto__": {"$eq": "x"}}', '/conditions/__proto__'],
    ['inside $or', '{"$or": [{"__proto__": "x"}]}', '/conditions/$or/0/__proto__'],
    ['among a field’s operators', '{"title": {"__proto__": "x"}}', '/conditions/title/__proto__'],
  ];

  it.each(placed)('is refused %s by a create and a replace, and nothing is stored', async (_label, conditions, at) => {
    const name = `proto-${Math.random()}`;
    const created = await send('post', '/policies', policy(name, conditions));
    expect(created.status).toBe(400);
    expect(created.body.code).toBe('validation_failed');
    expect(pointersOf(created.body)).toEqual([`/rules/0${at}`]);
    expect((await owner.query('select 1 from policies where name = $1', [name])).rowCount).toBe(0);
    const kept = await createPolicy({ name, roles: ['proto'], rules: [{ action: 'read', subject: 'Workspace' }] });
    const replaced = await send('put', `/policies/${kept.id}`, policy(name, conditions));
    expect(replaced.status).toBe(400);
    expect(pointersOf(replaced.body)).toEqual([`/rules/0${at}`]);
    const { rows } = await owner.query('select version, rules from policies where id = $1', [kept.id]);
    expect(rows).toEqual([{ version: 1, rules: [{ action: 'read', subject: 'Workspace' }] }]);
    const results = await check(await tenant.token('user_proto', 'proto'), [
      { action: 'read', subject: 'Task', resource: { title: 'anything' } },
    ]);
    expect(results[0]!.allowed).toBe(false);
  });

  it('is refused in draft policies of a suite run and of a what-if, and in an imported policy', async () => {
    const conditions = '{"__proto__": {"$eq": "x"}}';
    const suite = `{"principals": {"p": {"id": "u", "roles": ["proto"]}}, "tests": [{"name": "t", "principal": "p", "action": "read", "subject": "Task", "expect": "deny"}]}`;
    const run = await send(
      'post',
      '/policies/test',
      `{"suite": ${suite}, "policies": [${policy('draft', conditions)}]}`,
    );
    expect(run.status).toBe(400);
    expect(pointersOf(run.body)).toEqual(['/policies/0/rules/0/conditions/__proto__']);
    const to = new Date();
    const from = new Date(to.getTime() - 3_600_000);
    const whatIf = await send(
      'post',
      '/policies/what-if',
      `{"policies": [${policy('draft', conditions)}], "from": "${from.toISOString()}", "to": "${to.toISOString()}"}`,
    );
    expect(whatIf.status).toBe(400);
    expect(pointersOf(whatIf.body)).toEqual(['/policies/0/rules/0/conditions/__proto__']);
    const empty = (
      await cordon
        .admin()
        .post('/v1/workspaces')
        .send({ slug: uniqueSlug('pol-import'), name: 'import', plan: 'enterprise' })
        .expect(201)
    ).body;
    const imported = await cordon
      .admin()
      .post(`/v1/workspaces/${empty.slug}/import`)
      .set('content-type', 'application/x-ndjson')
      .send(`{"kind": "policy", "data": ${policy('imported', conditions)}}\n`);
    expect(imported.status).toBe(400);
    expect(imported.body.code).toBe('import_invalid_line');
    expect(pointersOf(imported.body)).toEqual(['/data/rules/0/conditions/__proto__']);
    const { rows } = await owner.query('select name from policies where workspace_id = $1 order by name', [empty.id]);
    expect(rows.map((row: { name: string }) => row.name)).toEqual(['admin', 'auditor', 'member', 'viewer']);
  });

  // Where a document or claims are given to be decided on, the key would vanish, and the decision
  // be made on something other than what was sent.
  it('is refused in a check’s resource and claims, and in a suite’s resources and claims', async () => {
    const proto = '{"title": "a", "__proto__": {"admin": true}}';
    const checked = await send(
      'post',
      '/check',
      `{"principal": {"id": "u", "roles": ["proto"], "claims": ${proto}}, "checks": [{"action": "read", "subject": "Task", "resource": ${proto}}]}`,
    );
    expect(checked.status).toBe(400);
    expect(pointersOf(checked.body)).toEqual(['/principal/claims/__proto__', '/checks/0/resource/__proto__']);
    const suite = `{"principals": {"p": {"id": "u", "roles": ["proto"], "claims": ${proto}}}, "resources": {"r": {"structure": "Task", "data": ${proto}}}, "tests": [{"name": "t", "principal": "p", "action": "read", "subject": "Task", "resource": "r", "expect": "deny"}]}`;
    const run = await send('post', '/policies/test', `{"suite": ${suite}}`);
    expect(run.status).toBe(400);
    expect(pointersOf(run.body)).toEqual(['/suite/principals/p/claims/__proto__', '/suite/resources/r/data/__proto__']);
  });
});

describe('evaluation', () => {
  it('lets a deny beat an allow whatever the order, across policies', async () => {
    await createPolicy({
      name: 'deny-first',
      roles: ['auditor-plus'],
      rules: [{ action: 'delete', subject: 'Task', inverted: true, reason: 'no deletes for auditor-plus' }],
    });
    await createPolicy({
      name: 'allow-later',
      roles: ['auditor-plus'],
      rules: [{ action: 'manage', subject: 'Task' }],
    });
    const token = await tenant.token('user_ap', 'auditor-plus');
    const [remove, read] = await check(token, [
      { action: 'delete', subject: 'Task' },
      { action: 'read', subject: 'Task' },
    ]);
    expect(remove).toMatchObject({ allowed: false, reason: 'no deletes for auditor-plus', ruleIndex: 0 });
    expect(read).toMatchObject({ allowed: true, ruleIndex: 0 });
  });

  it('names the deciding policy, version and rule', async () => {
    const policy = await createPolicy({
      name: 'named',
      roles: ['named-role'],
      rules: [
        { action: 'read', subject: 'Workspace' },
        { action: 'read', subject: 'Task', reason: 'named reads tasks' },
      ],
    });
    const token = await tenant.token('user_named', 'named-role');
    const [result] = await check(token, [{ action: 'read', subject: 'Task' }]);
    expect(result).toEqual({
      allowed: true,
      policyId: policy.id,
      policyVersion: 1,
      ruleIndex: 1,
      reason: 'named reads tasks',
    });
  });

  it('follows MongoDB semantics: a limit on a missing field is not a grant', async () => {
    await createPolicy({
      name: 'limit',
      roles: ['spender'],
      rules: [{ action: 'update', subject: 'Task', conditions: { amount: { $lte: 1000 } } }],
    });
    const token = await tenant.token('user_sp', 'spender');
    const results = await check(token, [
      { action: 'update', subject: 'Task', resource: { amount: 500 } },
      { action: 'update', subject: 'Task', resource: { amount: 5000 } },
      { action: 'update', subject: 'Task', resource: {} },
      { action: 'update', subject: 'Task', resource: { amount: null } },
      { action: 'update', subject: 'Task', resource: { amount: '500' } },
    ]);
    expect(results.map((result) => result.allowed)).toEqual([true, false, false, false, false]);
  });

  it('matches $or inside conditions (CASL’s default matcher silently never does)', async () => {
    await createPolicy({
      name: 'or',
      roles: ['or-role'],
      rules: [
        {
          action: 'read',
          subject: 'Task',
          conditions: { $or: [{ status: 'open' }, { createdBy: '${principal.id}' }] },
        },
      ],
    });
    const token = await tenant.token('user_or', 'or-role');
    const results = await check(token, [
      { action: 'read', subject: 'Task', resource: { status: 'open', createdBy: 'x' } },
      { action: 'read', subject: 'Task', resource: { status: 'done', createdBy: 'user_or' } },
      { action: 'read', subject: 'Task', resource: { status: 'done', createdBy: 'x' } },
    ]);
    expect(results.map((result) => result.allowed)).toEqual([true, true, false]);
  });

  it.each([['{"$ne":null}'], ["' OR 1=1 --"], ['${principal.id}']])(
    'matches a hostile principal id %j only literally',
    async (hostileId) => {
      await createPolicy({
        name: `own-${Math.random()}`,
        roles: ['owner-role'],
        rules: [{ action: 'read', subject: 'Task', conditions: { createdBy: '${principal.id}' } }],
      });
      const token = await tenant.token(hostileId, 'owner-role');
      const results = await check(token, [
        { action: 'read', subject: 'Task', resource: { createdBy: hostileId } },
        { action: 'read', subject: 'Task', resource: { createdBy: 'someone-else' } },
        { action: 'read', subject: 'Task', resource: {} },
        { action: 'read', subject: 'Task', resource: { createdBy: null } },
      ]);
      expect(results.map((result) => result.allowed)).toEqual([true, false, false, false]);
    },
  );

  it('fails closed when a claim placeholder does not resolve: the allow is dropped, the deny applies', async () => {
    await createPolicy({
      name: 'claims',
      roles: ['team-role'],
      rules: [
        { action: 'read', subject: 'Task', conditions: { team: '${principal.claims.team}' } },
        {
          action: 'read',
          subject: 'Task',
          inverted: true,
          conditions: { team: '${principal.claims.blocked_team}' },
          reason: 'blocked team',
        },
      ],
    });
    const withClaims = await tenant.token('user_t1', 'team-role', { team: 'red', blocked_team: 'blue' });
    const withoutBlock = await tenant.token('user_t2', 'team-role', { team: 'red' });
    expect(
      (await check(withClaims, [{ action: 'read', subject: 'Task', resource: { team: 'red' } }]))[0]!.allowed,
    ).toBe(true);
    expect(
      (await check(withoutBlock, [{ action: 'read', subject: 'Task', resource: { team: 'red' } }]))[0],
    ).toMatchObject({ allowed: false, reason: 'blocked team' });
  });

  it('sees a policy change at once', async () => {
    const policy = await createPolicy({
      name: 'flip',
      roles: ['flipper'],
      rules: [{ action: 'read', subject: 'Task' }],
    });
    const token = await tenant.token('user_flip', 'flipper');
    expect((await check(token, [{ action: 'read', subject: 'Task' }]))[0]!.allowed).toBe(true);
    await as(adminToken)
      .put(`/policies/${policy.id}`, {
        name: 'flip',
        roles: ['flipper'],
        rules: [{ action: 'read', subject: 'Task', inverted: true }],
      })
      .expect(200);
    expect((await check(token, [{ action: 'read', subject: 'Task' }]))[0]).toMatchObject({
      allowed: false,
      policyVersion: 2,
    });
  });
});

describe('POST /check', () => {
  it('answers for a named principal when an admin asks, and refuses a member who asks', async () => {
    const named = { id: 'user_named_viewer', roles: ['viewer'], claims: {} };
    const results = await check(
      adminToken,
      [
        { action: 'read', subject: 'Task' },
        { action: 'update', subject: 'Task' },
      ],
      named,
    );
    expect(results.map((result) => result.allowed)).toEqual([true, false]);
    const refused = await as(memberToken)
      .post('/check', { principal: named, checks: [{ action: 'read', subject: 'Task' }] })
      .expect(403);
    expect(refused.body.code).toBe('forbidden');
  });

  it('refuses a batch over 100 checks with 400', async () => {
    const checks = Array.from({ length: 101 }, () => ({ action: 'read', subject: 'Task' }));
    const response = await as(adminToken).post('/check', { checks }).expect(400);
    expect(response.body.code).toBe('validation_failed');
  });

  it('logs one decision per check item, before answering', async () => {
    const token = await tenant.token('user_logged', 'viewer');
    await check(token, [
      { action: 'read', subject: 'Task', resource: { id: 'task-1' } },
      { action: 'delete', subject: 'Task' },
    ]);
    const { rows } = await owner.query(
      "select action, operation, subject, resource_id, allowed, principal_roles from decisions where workspace_id = $1 and principal_id = 'user_logged' order by position",
      [tenant.id],
    );
    expect(rows).toEqual([
      {
        action: 'read',
        operation: 'check',
        subject: 'Task',
        resource_id: 'task-1',
        allowed: true,
        principal_roles: ['viewer'],
      },
      {
        action: 'delete',
        operation: 'check',
        subject: 'Task',
        resource_id: null,
        allowed: false,
        principal_roles: ['viewer'],
      },
    ]);
  });

  it('answers on a system subject as its route does, whatever resource or field it names, and logs that answer', async () => {
    await createPolicy({
      name: 'own-things',
      roles: ['owner'],
      rules: [{ action: ['read', 'update'], subject: 'all', conditions: { createdBy: '${principal.id}' } }],
    });
    await cordon
      .admin()
      .post(`/v1/workspaces/${tenant.slug}/members`)
      .send({ userId: 'user_owned', roles: ['viewer'], email: 'owned@example.com' })
      .expect(201);
    const token = await tenant.token('user_owner', 'owner');
    const { body } = await as(token)
      .post('/check', {
        explain: true,
        checks: [
          { action: 'update', subject: 'Member', resource: { id: 'user_owned', createdBy: 'user_owner' } },
          { action: 'read', subject: 'Member', field: 'email' },
          { action: 'read', subject: 'Member', resource: { createdBy: 'user_owner' }, field: 'email' },
          // The same rule still decides records on their conditions.
          { action: 'update', subject: 'Task', resource: { createdBy: 'user_owner' } },
        ],
      })
      .expect(200);
    const patched = await as(token).patch('/members/user_owned', { email: 'taken@example.com' });
    const read = await as(token).get('/members/user_owned');
    expect([patched.status, read.status]).toEqual([403, 403]);
    expect(body.results.map((result: { allowed: boolean }) => result.allowed)).toEqual([false, false, false, true]);
    for (const result of body.results.slice(0, 3)) {
      expect(result).toMatchObject({ policyId: null, reason: 'default deny' });
      expect(result.explanation.decidedBy).toBeNull();
      expect(result.explanation.rules).toEqual([expect.objectContaining({ applies: false, matched: null })]);
    }
    const { rows } = await owner.query(
      "select action, subject, allowed, reason from decisions where workspace_id = $1 and principal_id = 'user_owner' and operation = 'check' order by position",
      [tenant.id],
    );
    expect(rows).toEqual(
      body.results.map((result: { allowed: boolean; reason: string }, index: number) => ({
        action: ['update', 'read', 'read', 'update'][index],
        subject: index === 3 ? 'Task' : 'Member',
        allowed: result.allowed,
        reason: result.reason,
      })),
    );
    expect(
      (await owner.query("select email from members where workspace_id = $1 and user_id = 'user_owned'", [tenant.id]))
        .rows,
    ).toEqual([{ email: 'owned@example.com' }]);
  });

  it('records a policy change and its decision in one transaction', async () => {
    const policy = await createPolicy({ name: 'audited', roles: ['r'], rules: [{ action: 'read', subject: 'Task' }] });
    const { rows } = await owner.query(
      "select action, subject, allowed from decisions where workspace_id = $1 and principal_id = 'user_admin' and action = 'create' and subject = 'Policy'",
      [tenant.id],
    );
    expect(rows.length).toBeGreaterThan(0);
    expect(policy.id).toBeDefined();
  });
});
