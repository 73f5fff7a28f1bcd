import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let other: TestTenant;
const tokens: Record<string, string> = {};
const tasks: Record<string, string> = {};
let window: { from: string; to: string };
/** The stored policies as drafts (the body of POST …/policies, with their ids). */
let stored: Draft[];

type Body = Record<string, unknown>;
interface Draft {
  id?: string;
  name: string;
  description?: string;
  roles: string[];
  rules: Body[];
}

const bearer = { type: 'bearer' as const };
const pause = () => new Promise((resolve) => setTimeout(resolve, 20));
const call = (token: string, method: 'get' | 'post' | 'patch', path: string, body?: Body, workspace = tenant) => {
  const request = cordon.http()[method](`/v1/workspaces/${workspace.slug}${path}`).auth(token, bearer);
  return body ? request.send(body) : request;
};
const whatIf = (body: Body, token = tokens.admin!) => call(token, 'post', '/policies/what-if', body);
const replace = (name: string, change: Partial<Draft> | null) =>
  stored.flatMap((draft) => (draft.name !== name ? [draft] : change ? [{ ...draft, ...change }] : []));

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'whatif');
  other = await createTenant(cordon, issuer, 'whatif-other');
  for (const role of ['admin', 'member', 'viewer', 'auditor', 'editor'])
    tokens[role] = await tenant.token(`user_${role}`, role);
  tokens.otherAdmin = await other.token('user_admin', 'admin');
  tokens.otherViewer = await other.token('user_viewer', 'viewer');

  const fields = {
    title: { type: 'text' },
    status: { type: 'text' },
    priority: { type: 'integer' },
    team: { type: 'text' },
    notes: { type: 'text' },
  };
  await call(tokens.admin!, 'post', '/structures', { name: 'Task', fields }).expect(201);
  await call(tokens.otherAdmin!, 'post', '/structures', { name: 'Task', fields }, other).expect(201);
  await call(tokens.admin!, 'post', '/policies', {
    name: 'editor',
    roles: ['editor'],
    rules: [{ action: ['read', 'update'], subject: 'Task', conditions: { status: 'open' } }],
  }).expect(201);
  const create = async (name: string, data: Body) => {
    tasks[name] = (await call(tokens.admin!, 'post', '/records/Task', { data }).expect(201)).body.id;
  };
  await create('A', { title: 'A', status: 'open', priority: 1 });
  await create('B', { title: 'B', status: 'archived' });
  await create('C', { title: 'C', status: 'open', priority: 1 });
  await create('D', { title: 'D', status: 'closed' });
  await create('Big', { title: 'Big', status: 'open', team: 'red', notes: 'n'.repeat(3_000) });
  const otherTask = (
    await call(tokens.otherAdmin!, 'post', '/records/Task', { data: { title: 'X' } }, other).expect(201)
  ).body.id;
  const policies = (await call(tokens.admin!, 'get', '/policies').expect(200)).body.data as (Draft & Body)[];
  stored = policies.map(({ id, name, description, roles, rules }) => ({ id, name, description, roles, rules }));

  await pause();
  const from = new Date().toISOString();
  await pause();
  await call(tokens.viewer!, 'get', `/records/Task/${tasks.A}`).expect(200);
  await call(tokens.viewer!, 'get', `/records/Task/${tasks.B}`).expect(200);
  await call(tokens.viewer!, 'get', `/records/Task/${tasks.Big}`).expect(200);
  await call(tokens.member!, 'patch', `/records/Task/${tasks.A}`, { data: { title: 'A2' } }).expect(200);
  await call(tokens.editor!, 'patch', `/records/Task/${tasks.C}`, { data: { title: 'C2' } }).expect(200);
  await call(tokens.editor!, 'patch', `/records/Task/${tasks.D}`, { data: { title: 'D2' } }).expect(403);
  await call(tokens.auditor!, 'get', `/records/Task/${tasks.A}`).expect(403);
  await call(tokens.viewer!, 'post', '/check', { checks: [{ action: 'create', subject: 'Task' }] }).expect(200);
  await call(tokens.viewer!, 'get', '/records/Task').expect(200);
  await cordon.admin().get(`/v1/workspaces/${tenant.slug}/policies`).expect(200);
  // Another workspace decides in the same window: none of it may be counted.
  await call(tokens.otherViewer!, 'get', `/records/Task/${otherTask}`, undefined, other).expect(200);
  // A decision logged before decisions kept their inputs.
  await owner.query(
    `insert into decisions (id, workspace_id, at, request_id, principal_id, principal_roles, principal_provider, action,
       operation, subject, resource_id, allowed, reason, latency_micros)
     values ($1, $2, now(), 'old-request', 'user_viewer', '{viewer}', 'clerk', 'read', 'get', 'Task', $3, true,
       'viewers read everything', 10)`,
    [randomUUID(), tenant.id, tasks.A],
  );
  await pause();
  const to = new Date().toISOString();
  await pause();
  window = { from, to };
  // After the window: the record changes, and more decisions are taken.
  await call(tokens.admin!, 'patch', `/records/Task/${tasks.C}`, { data: { status: 'closed' } }).expect(200);
  await call(tokens.viewer!, 'get', `/records/Task/${tasks.A}`).expect(200);
});

afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

describe('what-if', () => {
  it('replays every decision of the window unchanged under the stored policies, and says which it cannot', async () => {
    const { body } = await whatIf({ policies: stored, ...window }).expect(200);
    expect(body).toMatchObject({
      window: { from: window.from, to: window.to },
      replayed: 9,
      unchanged: 9,
      flips: { allowToDeny: 0, denyToAllow: 0 },
      counts: [],
      samples: [],
      notReplayable: { count: 2, byReason: { platform_admin: 1, logged_before_inputs: 1 } },
    });
  });

  it('reports a removed allow as allow → deny, counted by action, subject and role, ignoring other windows and workspaces', async () => {
    const { body } = await whatIf({ policies: replace('viewer', null), ...window }).expect(200);
    expect(body.flips).toEqual({ allowToDeny: 5, denyToAllow: 0 });
    expect(body.counts).toEqual([
      { action: 'read', subject: 'Task', role: 'viewer', direction: 'allowToDeny', count: 5 },
    ]);
    expect(body.replayed).toBe(10);
    expect(body.unchanged).toBe(5);
    expect(body.samples[0]).toMatchObject({
      principalId: 'user_viewer',
      roles: ['viewer'],
      action: 'read',
      subject: 'Task',
      resourceId: tasks.A,
      before: 'allow',
      after: 'deny',
      rule: null,
      reason: 'default deny',
    });
  });

  it('reports a new deny rule on the records it matched when the decision was taken', async () => {
    const deny = {
      name: 'no-open-updates',
      roles: ['member'],
      rules: [{ action: 'update', subject: 'Task', conditions: { status: 'open' }, inverted: true, reason: 'frozen' }],
    };
    const { body } = await whatIf({ policies: [...stored, deny], ...window }).expect(200);
    expect(body.flips).toEqual({ allowToDeny: 1, denyToAllow: 0 });
    expect(body.counts).toEqual([
      { action: 'update', subject: 'Task', role: 'member', direction: 'allowToDeny', count: 1 },
    ]);
    expect(body.samples).toEqual([
      expect.objectContaining({
        principalId: 'user_member',
        resourceId: tasks.A,
        before: 'allow',
        after: 'deny',
        rule: { policyId: null, policyName: 'no-open-updates', ruleIndex: 0 },
        reason: 'frozen',
      }),
    ]);
  });

  it('replays a changed condition on the record as it was when decided, not as it is now', async () => {
    const editor = stored.find((draft) => draft.name === 'editor')!;
    const closedOnly = [{ action: ['read', 'update'], subject: 'Task', conditions: { status: 'closed' } }];
    const { body } = await whatIf({ policies: replace('editor', { rules: closedOnly }), ...window }).expect(200);
    // C was open when the editor updated it (closed only since): that update would now be refused;
    // D was closed then: the refused update would now be allowed.
    expect(body.flips).toEqual({ allowToDeny: 1, denyToAllow: 1 });
    expect(body.counts).toEqual([
      { action: 'update', subject: 'Task', role: 'editor', direction: 'allowToDeny', count: 1 },
      { action: 'update', subject: 'Task', role: 'editor', direction: 'denyToAllow', count: 1 },
    ]);
    const bySample = Object.fromEntries(body.samples.map((sample: Body) => [sample.resourceId, sample]));
    expect(bySample[tasks.C!]).toMatchObject({ before: 'allow', after: 'deny' });
    expect(bySample[tasks.D!]).toMatchObject({
      before: 'deny',
      after: 'allow',
      rule: { policyId: editor.id, policyName: 'editor', ruleIndex: 0 },
    });
  });

  it('says per reason which decisions it cannot replay instead of guessing', async () => {
    const drafts = [
      ...replace('viewer', { rules: [{ action: 'read', subject: 'Task', conditions: { team: 'red' } }] }),
      { name: 'auditors-read-tasks', roles: ['auditor'], rules: [{ action: 'read', subject: 'Task' }] },
      {
        name: 'team-updates',
        roles: ['member'],
        rules: [{ action: 'update', subject: 'Task', conditions: { team: '${principal.claims.team}' } }],
      },
    ];
    const { body } = await whatIf({ policies: drafts, ...window }).expect(200);
    expect(body.notReplayable).toEqual({
      count: 6,
      byReason: {
        platform_admin: 1,
        logged_before_inputs: 1,
        // The big record kept only the fields the stored conditions read (status), not team.
        fields_not_kept: 1,
        list_filter: 1,
        record_not_read: 1,
        principal_attributes_not_kept: 1,
      },
    });
    // What it could replay it did: A and B are not team red, so the viewer's reads of them flip.
    expect(body.flips).toEqual({ allowToDeny: 2, denyToAllow: 0 });
  });

  it('limits the samples', async () => {
    const { body } = await whatIf({ policies: replace('viewer', null), ...window, limit: 2 }).expect(200);
    expect(body.flips.allowToDeny).toBe(5);
    expect(body.samples).toHaveLength(2);
  });

  it('refuses a window that ends before it starts, and invalid drafts, with 400 problems', async () => {
    const backwards = await whatIf({ policies: stored, from: window.to, to: window.from }).expect(400);
    expect(backwards.body).toMatchObject({
      code: 'validation_failed',
      errors: [expect.objectContaining({ pointer: '/to' })],
    });
    const invalid = await whatIf({
      policies: [{ name: 'bad', roles: ['viewer'], rules: [{ action: 'read', subject: 'Nope' }] }],
      ...window,
    }).expect(400);
    expect(invalid.body).toMatchObject({
      code: 'validation_failed',
      errors: [expect.objectContaining({ pointer: '/policies/0/rules/0/subject' })],
    });
    await whatIf({ policies: stored, from: 'yesterday', to: window.to }).expect(400);
    const twice = await whatIf({ policies: [...stored, stored[0]], ...window }).expect(400);
    expect(twice.body.errors).toEqual([expect.objectContaining({ pointer: `/policies/${stored.length}/id` })]);
  });

  it('is for those who read policies and the decision log: viewers and auditors are refused', async () => {
    await whatIf({ policies: stored, ...window }, tokens.viewer).expect(403);
    await whatIf({ policies: stored, ...window }, tokens.auditor).expect(403);
    await cordon.http().post(`/v1/workspaces/${tenant.slug}/policies/what-if`).send({}).expect(401);
    // Reading policies is not enough: the replay reads the decision log too.
    await call(
      tokens.otherAdmin!,
      'post',
      '/policies',
      { name: 'policy-readers', roles: ['policy-reader'], rules: [{ action: 'read', subject: 'Policy' }] },
      other,
    ).expect(201);
    const reader = await other.token('user_reader', 'policy-reader');
    const refused = await call(reader, 'post', '/policies/what-if', { policies: [], ...window }, other).expect(403);
    expect(refused.body.code).toBe('forbidden');
    const logged = await call(tokens.otherAdmin!, 'get', '/decisions?principalId=user_reader', undefined, other).expect(
      200,
    );
    expect(logged.body.data[0]).toMatchObject({ action: 'read', subject: 'DecisionLog', allowed: false });
    await cordon
      .admin()
      .post(`/v1/workspaces/${tenant.slug}/policies/what-if`)
      .send({ policies: stored, ...window })
      .expect(200);
  });

  it('replays placeholders on the claim values kept with the decision', async () => {
    const leads = {
      name: 'leads',
      roles: ['lead'],
      rules: [{ action: 'read', subject: 'Task', conditions: { team: '${principal.claims.team}' } }],
    };
    await call(tokens.otherAdmin!, 'post', '/policies', leads, other).expect(201);
    const task = (
      await call(tokens.otherAdmin!, 'post', '/records/Task', { data: { title: 'T', team: 'red' } }, other).expect(201)
    ).body.id;
    const lead = await other.token('user_lead', 'lead', { team: 'red' });
    await pause();
    const from = new Date().toISOString();
    await pause();
    await call(lead, 'get', `/records/Task/${task}`, undefined, other).expect(200);
    await pause();
    const to = new Date().toISOString();
    const logged = await call(tokens.otherAdmin!, 'get', '/decisions?principalId=user_lead', undefined, other).expect(
      200,
    );
    expect(logged.body.data[0].inputs.principal).toEqual({ '${principal.claims.team}': 'red' });

    const policies = (await call(tokens.otherAdmin!, 'get', '/policies', undefined, other).expect(200)).body.data.map(
      ({ id, name, roles, rules }: Draft) => ({ id, name, roles, rules }),
    );
    const same = await call(tokens.otherAdmin!, 'post', '/policies/what-if', { policies, from, to }, other).expect(200);
    expect(same.body).toMatchObject({ replayed: 1, unchanged: 1, notReplayable: { count: 0 } });
    const openOnly = policies.map((draft: Draft) =>
      draft.name === 'leads'
        ? { ...draft, rules: [{ ...leads.rules[0], conditions: { team: '${principal.claims.team}', status: 'open' } }] }
        : draft,
    );
    const changed = await call(
      tokens.otherAdmin!,
      'post',
      '/policies/what-if',
      { policies: openOnly, from, to },
      other,
    );
    expect(changed.body).toMatchObject({
      replayed: 1,
      flips: { allowToDeny: 1, denyToAllow: 0 },
      counts: [{ action: 'read', subject: 'Task', role: 'lead', direction: 'allowToDeny', count: 1 }],
    });
  });

  it('keeps inputs inside the verified hash chain', async () => {
    await cordon.sealer.sealWorkspace(tenant.id);
    const verdict = await call(tokens.admin!, 'get', '/decisions/verify').expect(200);
    expect(verdict.body).toMatchObject({ verified: true });
    const page = await call(tokens.admin!, 'get', `/decisions?resourceId=${tasks.Big}&principalId=user_viewer`).expect(
      200,
    );
    const inputs = page.body.data[0].inputs;
    expect(inputs.kept).toEqual(['createdAt', 'createdBy', 'id', 'status', 'updatedAt']);
    expect(inputs.documents[0]).toMatchObject({ id: tasks.Big, status: 'open' });
    expect(inputs.documents[0].notes).toBeUndefined();
    // A changed input is a break in the chain.
    await owner.query('set session_replication_role = replica');
    try {
      await owner.query(
        `update decisions set inputs = jsonb_set(inputs, '{documents,0,status}', '"closed"') where id = $1`,
        [page.body.data[0].id],
      );
    } finally {
      await owner.query('set session_replication_role = origin');
    }
    const broken = await call(tokens.admin!, 'get', '/decisions/verify').expect(200);
    expect(broken.body).toMatchObject({ verified: false });
  });
});
