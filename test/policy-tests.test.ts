import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type pg from 'pg';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { repositoryRoot } from './support/process.ts';
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
  tenant = await createTenant(cordon, issuer, 'ptests');
  other = await createTenant(cordon, issuer, 'ptests-other');
  for (const workspace of [tenant, other])
    await owner.query(
      `insert into structures (workspace_id, name, fields) values ($1, 'Task', '{"title": {"type": "text"}, "status": {"type": "text"}}')`,
      [workspace.id],
    );
  adminToken = await tenant.token('user_admin', 'admin');
  memberToken = await tenant.token('user_member', 'member');
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const request = (method: 'get' | 'post' | 'put' | 'delete', url: string, token?: string) => {
  const call = cordon.http()[method](`/v1/workspaces/${tenant.slug}${url}`);
  return token ? call.auth(token, { type: 'bearer' }) : call;
};

/** Drafts for the hand-checked coverage: five rules over two policies. */
const drafts = [
  {
    name: 'editor',
    roles: ['editor'],
    rules: [
      { action: ['read', 'update'], subject: 'Task', conditions: { createdBy: '${principal.id}' } },
      { action: 'read', subject: 'Task', conditions: { status: 'published' } },
      { action: 'update', subject: 'Task', conditions: { status: 'locked' }, inverted: true, reason: 'frozen' },
    ],
  },
  {
    name: 'guest',
    roles: ['guest'],
    rules: [
      { action: 'read', subject: 'Task', conditions: { status: 'published' } },
      { action: 'delete', subject: 'all', inverted: true },
    ],
  },
];

const draftSuite = {
  principals: { ed: { id: 'u_ed', roles: ['editor'] }, gus: { id: 'u_gus', roles: ['guest'] } },
  resources: {
    mine: { structure: 'Task', data: { title: 'a', status: 'draft' }, createdBy: 'u_ed' },
    theirs: { structure: 'Task', data: { title: 'b', status: 'published' }, createdBy: 'u_x' },
    lockedMine: { structure: 'Task', data: { title: 'c', status: 'locked' }, createdBy: 'u_ed' },
  },
  tests: [
    { name: 'editor reads own', principal: 'ed', action: 'read', resource: 'mine', expect: 'allow', rule: 'editor#0' },
    { name: 'editor updates own', principal: 'ed', action: 'update', resource: 'mine', expect: 'allow' },
    { name: 'locked is frozen', principal: 'ed', action: 'update', resource: 'lockedMine', expect: 'deny' },
    { name: 'editor reads published', principal: 'ed', action: 'read', resource: 'theirs', expect: 'allow' },
    { name: 'guest reads published', principal: 'gus', action: 'read', resource: 'theirs', expect: 'allow' },
    { name: 'guest cannot update', principal: 'gus', action: 'update', resource: 'theirs', expect: 'deny' },
    { name: 'guest reads a draft (wrong)', principal: 'gus', action: 'read', resource: 'mine', expect: 'allow' },
    {
      name: 'published read by own rule (wrong rule)',
      principal: 'ed',
      action: 'read',
      resource: 'theirs',
      expect: 'allow',
      rule: 'editor#0',
    },
  ],
};

describe('POST /v1/workspaces/:ws/policies/test', () => {
  it('runs a suite against drafts: results, deciding rules and coverage figures checked by hand', async () => {
    const { body } = await request('post', '/policies/test', adminToken)
      .send({ suite: draftSuite, policies: drafts })
      .expect(200);
    expect(body).toMatchObject({ passed: false, total: 8, failed: 2 });
    const byName = Object.fromEntries(body.results.map((result: { name: string }) => [result.name, result]));
    const rule = (policyName: string, ruleIndex: number) => ({ policyId: null, policyName, ruleIndex });
    expect(byName['editor reads own']).toEqual({
      name: 'editor reads own',
      expected: 'allow',
      actual: 'allow',
      passed: true,
      rule: rule('editor', 0),
      reason: 'allowed by policy "editor" rule 0',
      expectedRule: 'editor#0',
    });
    expect(byName['locked is frozen']).toMatchObject({ passed: true, rule: rule('editor', 2), reason: 'frozen' });
    // The later rule has priority in CASL: the published rule decides before the owner rule.
    expect(byName['editor reads published']).toMatchObject({ passed: true, rule: rule('editor', 1) });
    expect(byName['guest cannot update']).toMatchObject({ passed: true, rule: null, reason: 'default deny' });
    expect(byName['guest reads a draft (wrong)']).toMatchObject({ passed: false, expected: 'allow', actual: 'deny' });
    expect(byName['published read by own rule (wrong rule)']).toMatchObject({
      passed: false,
      actual: 'allow',
      rule: rule('editor', 1),
    });
    // editor#0: reads own, updates own; editor#1: two published reads; editor#2: the locked task;
    // guest#0: one published read; guest#1 (deny delete) decided nothing: 4 of 5, 1/5 never.
    expect(
      body.coverage.rules.map((entry: { policyName: string; ruleIndex: number; decided: number }) => [
        `${entry.policyName}#${entry.ruleIndex}`,
        entry.decided,
      ]),
    ).toEqual([
      ['editor#0', 2],
      ['editor#1', 2],
      ['editor#2', 1],
      ['guest#0', 1],
      ['guest#1', 0],
    ]);
    expect(body.coverage).toMatchObject({ total: 5, exercised: 4, unexercisedShare: 0.2 });
    expect(body.coverage.rules[4]).toEqual({
      policyId: null,
      policyName: 'guest',
      ruleIndex: 1,
      action: 'delete',
      subject: 'all',
      effect: 'deny',
      decided: 0,
    });
  });

  it('runs against the stored policies when no drafts are given, naming their ids', async () => {
    const { body: stored } = await request('get', '/policies', adminToken).expect(200);
    const member = stored.data.find((policy: { name: string }) => policy.name === 'member');
    const { body } = await request('post', '/policies/test', adminToken)
      .send({
        suite: {
          principals: { m: { id: 'user_member', roles: ['member'] } },
          tests: [
            { name: 'member updates tasks', principal: 'm', action: 'update', subject: 'Task', expect: 'allow' },
            {
              name: 'member cannot edit policies',
              principal: 'm',
              action: 'update',
              subject: 'Policy',
              expect: 'deny',
            },
          ],
        },
      })
      .expect(200);
    expect(body).toMatchObject({ passed: true, total: 2, failed: 0 });
    expect(body.results.map((result: { rule: unknown }) => result.rule)).toEqual([
      { policyId: member.id, policyName: 'member', ruleIndex: 0 },
      { policyId: member.id, policyName: 'member', ruleIndex: 1 },
    ]);
    expect(body.coverage.total).toBe(
      stored.data.reduce((sum: number, policy: { rules: unknown[] }) => sum + policy.rules.length, 0),
    );
  });

  it('answers 400 with pointers for unknown names in the suite and invalid draft rules', async () => {
    const suite = {
      principals: { m: { id: 'u', roles: ['member'] } },
      tests: [{ name: 't', principal: 'nobody', action: 'read', resource: 'nothing', expect: 'allow' }],
    };
    const { body } = await request('post', '/policies/test', adminToken).send({ suite }).expect(400);
    expect(body.code).toBe('validation_failed');
    expect(body.errors).toEqual([
      expect.objectContaining({ pointer: '/suite/tests/0/principal' }),
      expect.objectContaining({ pointer: '/suite/tests/0/resource' }),
    ]);
    const broken = [
      { name: 'x', roles: ['r'], rules: [{ action: 'read', subject: 'Task', conditions: { a: { $where: 1 } } }] },
    ];
    const invalid = await request('post', '/policies/test', adminToken)
      .send({
        suite: { ...suite, tests: [{ ...suite.tests[0], principal: 'm', resource: undefined, subject: 'Task' }] },
        policies: broken,
      })
      .expect(400);
    expect(invalid.body.errors).toEqual([
      expect.objectContaining({ pointer: '/policies/0/rules/0/conditions/a/$where' }),
    ]);
  });

  it('is refused to a member (no Policy read)', async () => {
    await request('post', '/policies/test', memberToken).send({ suite: draftSuite, policies: drafts }).expect(403);
  });
});

const storedSuite = {
  principals: { m: { id: 'user_member', roles: ['member'] }, v: { id: 'user_viewer', roles: ['viewer'] } },
  resources: { task: { structure: 'Task', data: { title: 't', status: 'open' }, createdBy: 'user_member' } },
  tests: [
    { name: 'member reads tasks', principal: 'm', action: 'read', resource: 'task', expect: 'allow' },
    { name: 'member updates tasks', principal: 'm', action: 'update', resource: 'task', expect: 'allow' },
    { name: 'viewer cannot update tasks', principal: 'v', action: 'update', resource: 'task', expect: 'deny' },
  ],
};

async function policyNamed(name: string): Promise<{ id: string; version: number; rules: unknown[]; roles: string[] }> {
  const { body } = await request('get', '/policies', adminToken).expect(200);
  return body.data.find((policy: { name: string }) => policy.name === name);
}

describe('stored suites: GET/PUT /v1/workspaces/:ws/policy-tests', () => {
  it('answers 404 before a suite is stored, then stores and returns it', async () => {
    const missing = await request('get', '/policy-tests', adminToken).expect(404);
    expect(missing.body.code).toBe('policy_tests_not_found');
    const { body } = await request('put', '/policy-tests', adminToken).send({ suite: storedSuite }).expect(200);
    expect(body).toMatchObject({ suite: storedSuite, updatedBy: 'user_admin' });
    const read = await request('get', '/policy-tests', adminToken).expect(200);
    expect(read.body.suite).toEqual(storedSuite);
  });

  it('refuses a lower role, another workspace and no token, and the stored suite stays', async () => {
    const changed = { ...storedSuite, tests: storedSuite.tests.slice(0, 1) };
    await request('put', '/policy-tests', memberToken).send({ suite: changed }).expect(403);
    await request('put', '/policy-tests').send({ suite: changed }).expect(401);
    const outsider = await other.token('user_admin', 'admin');
    const foreign = await request('put', '/policy-tests', outsider).send({ suite: changed });
    expect([401, 403]).toContain(foreign.status);
    expect((await request('get', '/policy-tests', adminToken).expect(200)).body.suite).toEqual(storedSuite);
    // The other workspace has no suite at all.
    await cordon.http().get(`/v1/workspaces/${other.slug}/policy-tests`).auth(outsider, { type: 'bearer' }).expect(404);
  });

  it('refuses a replace that breaks a stored test with 409 listing the failures, and keeps the policy', async () => {
    const member = await policyNamed('member');
    const { body } = await request('put', `/policies/${member.id}`, adminToken)
      .send({ name: 'member', roles: member.roles, rules: [{ action: 'read', subject: 'all' }] })
      .expect(409);
    expect(body.code).toBe('policy_tests_failed');
    expect(body.failures).toEqual([
      { name: 'member updates tasks', expected: 'allow', actual: 'deny', rule: null, reason: 'default deny' },
    ]);
    expect((await policyNamed('member')).version).toBe(member.version);
  });

  it('refuses a create and a delete that break a stored test', async () => {
    const create = await request('post', '/policies', adminToken)
      .send({
        name: 'no-updates',
        roles: ['member'],
        rules: [{ action: 'update', subject: 'Task', inverted: true }],
      })
      .expect(409);
    expect(create.body.failures.map((failure: { name: string }) => failure.name)).toEqual(['member updates tasks']);
    expect(await policyNamed('no-updates')).toBeUndefined();
    const member = await policyNamed('member');
    const removal = await request('delete', `/policies/${member.id}`, adminToken).expect(409);
    expect(removal.body.failures.map((failure: { name: string }) => failure.name)).toEqual([
      'member reads tasks',
      'member updates tasks',
    ]);
    expect((await policyNamed('member')).version).toBe(member.version);
  });

  it('lets a compatible change through', async () => {
    const member = await policyNamed('member');
    const { body } = await request('put', `/policies/${member.id}`, adminToken)
      .send({
        name: 'member',
        roles: member.roles,
        rules: [...member.rules, { action: 'delete', subject: 'Task', inverted: true, reason: 'no deletes' }],
      })
      .expect(200);
    expect(body.version).toBe(member.version + 1);
  });

  it('serialises concurrent changes: two compatible alone, breaking together, give one success and one 409', async () => {
    const extra = (
      await request('post', '/policies', adminToken)
        .send({ name: 'extra-read', roles: ['member'], rules: [{ action: 'read', subject: 'Task' }] })
        .expect(201)
    ).body;
    const member = await policyNamed('member');
    // Without the member policy, extra-read still grants reads; without extra-read, member does.
    const withoutUpdates = {
      name: 'member',
      roles: member.roles,
      rules: [{ action: 'update', subject: 'Task' }],
    };
    const [replaced, removed] = await Promise.all([
      request('put', `/policies/${member.id}`, adminToken).send(withoutUpdates),
      request('delete', `/policies/${extra.id}`, adminToken),
    ]);
    const succeeded = [replaced.status === 200, removed.status === 204].filter(Boolean).length;
    expect({ succeeded, refused: [replaced.status, removed.status].filter((status) => status === 409).length }).toEqual(
      {
        succeeded: 1,
        refused: 1,
      },
    );
  });

  it('applies a breaking change with ?force=true', async () => {
    const member = await policyNamed('member');
    const { body } = await request('put', `/policies/${member.id}?force=true`, adminToken)
      .send({ name: 'member', roles: member.roles, rules: [{ action: 'read', subject: 'all' }] })
      .expect(200);
    expect(body.version).toBe(member.version + 1);
    const run = await request('post', '/policies/test', adminToken).send({ suite: storedSuite }).expect(200);
    expect(run.body).toMatchObject({ passed: false, failed: 1 });
  });
});

describe('CASL’s subject-type key in a suite resource', () => {
  const taggedSuite = {
    principals: { m: { id: 'user_tagged', roles: ['member'] } },
    resources: { task: { structure: 'Task', data: { title: 't', __caslSubjectType__: 'Member' } } },
    tests: [{ name: 'member reads a tagged task', principal: 'm', action: 'read', resource: 'task', expect: 'allow' }],
  };

  it('is refused with 400 and a pointer by a run and by a store, which stores nothing', async () => {
    const workspace = await createTenant(cordon, issuer, 'ptests-tagged');
    const admin = await workspace.token('user_admin', 'admin');
    const on = (method: 'post' | 'put' | 'get', url: string) =>
      cordon.http()[method](`/v1/workspaces/${workspace.slug}${url}`).auth(admin, { type: 'bearer' });
    for (const response of [
      await on('post', '/policies/test').send({ suite: taggedSuite }),
      await on('put', '/policy-tests').send({ suite: taggedSuite }),
    ]) {
      expect(response.status).toBe(400);
      expect(response.body.code).toBe('validation_failed');
      expect(response.body.errors).toEqual([
        expect.objectContaining({ pointer: '/suite/resources/task/data/__caslSubjectType__' }),
      ]);
    }
    await on('get', '/policy-tests').expect(404);
  });

  it('stored before it was refused, is run on the document without it: policy changes are guarded, not a 500', async () => {
    const workspace = await createTenant(cordon, issuer, 'ptests-stored-tag');
    await owner.query(
      `insert into structures (workspace_id, name, fields) values ($1, 'Task', '{"title": {"type": "text"}}')`,
      [workspace.id],
    );
    await owner.query(`insert into policy_tests (workspace_id, suite, updated_by) values ($1, $2, 'user_admin')`, [
      workspace.id,
      JSON.stringify(taggedSuite),
    ]);
    const admin = await workspace.token('user_admin', 'admin');
    const post = (body: unknown) =>
      cordon
        .http()
        .post(`/v1/workspaces/${workspace.slug}/policies`)
        .auth(admin, { type: 'bearer' })
        .send(body as object);
    await post({ name: 'readers', roles: ['reader'], rules: [{ action: 'read', subject: 'Task' }] }).expect(201);
    const breaking = await post({
      name: 'no-reads',
      roles: ['member'],
      rules: [{ action: 'read', subject: 'Task', inverted: true }],
    }).expect(409);
    expect(breaking.body.failures.map((failure: { name: string }) => failure.name)).toEqual([
      'member reads a tagged task',
    ]);
    const { rows } = await owner.query('select name from policies where workspace_id = $1 order by name', [
      workspace.id,
    ]);
    expect(rows.map((row: { name: string }) => row.name)).toEqual(['admin', 'auditor', 'member', 'readers', 'viewer']);
  });
});

describe('npm run policy-test (offline)', () => {
  let directory: string;
  beforeAll(() => {
    directory = mkdtempSync(path.join(tmpdir(), 'policy-test-'));
    mkdirSync(path.join(directory, 'policies'));
    drafts.forEach((policy, index) =>
      writeFileSync(path.join(directory, 'policies', `${index}-${policy.name}.json`), JSON.stringify(policy)),
    );
    const passing = { ...draftSuite, tests: draftSuite.tests.slice(0, 6) };
    writeFileSync(path.join(directory, 'passing.json'), JSON.stringify(passing));
    writeFileSync(path.join(directory, 'failing.json'), JSON.stringify(draftSuite));
    writeFileSync(path.join(directory, 'broken.json'), JSON.stringify({ principals: {}, tests: [] }));
  });
  afterAll(() => rmSync(directory, { recursive: true, force: true }));

  const run = (...args: string[]) => {
    const { NODE_OPTIONS: _ignored, ...env } = process.env;
    return spawnSync(process.execPath, ['scripts/policy-test.ts', ...args], {
      cwd: repositoryRoot,
      env,
      encoding: 'utf8',
    });
  };

  it('exits 0 on a passing suite and prints the summary with coverage', () => {
    const result = run(path.join(directory, 'passing.json'), '--policies', path.join(directory, 'policies'));
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    expect(result.stdout).toContain('PASS  editor reads own');
    expect(result.stdout).toContain('6 tests, 6 passed, 0 failed');
    expect(result.stdout).toContain('coverage: 4 of 5 rules decided a test; 20% never exercised');
    expect(result.stdout).toMatch(/guest#1\s+0\s+deny\s+delete all\s+\(never exercised\)/);
  });

  it('exits 1 on a failing test, with the same results as the server', async () => {
    const result = run(path.join(directory, 'failing.json'), '--policies', path.join(directory, 'policies'), '--json');
    expect(result.status).toBe(1);
    const offline = JSON.parse(result.stdout);
    const { body: online } = await request('post', '/policies/test', adminToken)
      .send({ suite: draftSuite, policies: drafts })
      .expect(200);
    expect(offline).toEqual(online);
    const readable = run(path.join(directory, 'failing.json'), '--policies', path.join(directory, 'policies'));
    expect(readable.status).toBe(1);
    expect(readable.stdout).toContain('FAIL  guest reads a draft (wrong)');
    expect(readable.stdout).toContain('8 tests, 6 passed, 2 failed');
  });

  it('exits 2 on an invalid suite or missing arguments', () => {
    const broken = run(path.join(directory, 'broken.json'), '--policies', path.join(directory, 'policies'));
    expect(broken.status).toBe(2);
    expect(broken.stderr).toContain('/tests');
    expect(run().status).toBe(2);
  });
});
