import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { Response } from 'supertest';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * One door for decisions: every outcome of an authorized request leaves exactly one decision —
 * refusals after an allow (validation, conflicts, preconditions, missing rows) included — and the
 * platform admin's changes to a tenant are in that tenant's log.
 */

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let admin: string;
let member: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'door');
  admin = await tenant.token('user_admin', 'admin');
  member = await tenant.token('user_member', 'member');
  await as(admin, 'post', '/structures')
    .send({
      name: 'Project',
      fields: { name: { type: 'text', required: true }, secret: { type: 'boolean' } },
    })
    .expect(201);
  await as(admin, 'post', '/structures')
    .send({
      name: 'Task',
      fields: { title: { type: 'text', required: true }, projectId: { type: 'reference', structure: 'Project' } },
    })
    .expect(201);
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

function as(token: string, method: 'get' | 'post' | 'put' | 'patch' | 'delete', path: string) {
  return cordon
    .http()
    [method](`/v1/workspaces/${tenant.slug}${path}`)
    .auth(token, { type: 'bearer' })
    .set('x-request-id', randomUUID());
}

/** The decisions logged for the request that got `response`. */
async function decisionsOf(response: Response, workspaceId = tenant.id) {
  const { rows } = await owner.query<{
    principal_id: string;
    action: string;
    subject: string;
    allowed: boolean;
    reason: string;
  }>(
    'select principal_id, action, subject, allowed, reason from decisions where workspace_id = $1 and request_id = $2',
    [workspaceId, response.headers['x-request-id']],
  );
  return rows;
}

describe('every outcome of an authorized request leaves exactly one decision', () => {
  it('a validation failure after the allow: the allow, with the 400 as its outcome', async () => {
    const response = await as(admin, 'post', '/policies')
      .send({ name: 'bad', roles: ['x'], rules: [{ action: 'fly', subject: 'Task' }] })
      .expect(400);
    expect(await decisionsOf(response)).toEqual([
      expect.objectContaining({
        action: 'create',
        subject: 'Policy',
        allowed: true,
        reason: expect.stringMatching(/not done: 400 validation_failed$/),
      }),
    ]);
  });

  it('a body that does not parse, on an authorized route, is an outcome too', async () => {
    const response = await as(admin, 'post', '/members').send({ userId: '', roles: 'admin' }).expect(400);
    expect(await decisionsOf(response)).toEqual([
      expect.objectContaining({
        action: 'create',
        subject: 'Member',
        reason: expect.stringMatching(/not done: 400 validation_failed$/),
      }),
    ]);
  });

  it('a conflict after the allow: one decision naming the 409', async () => {
    await as(admin, 'post', '/policies')
      .send({ name: 'twice', roles: ['x'], rules: [{ action: 'read', subject: 'Task' }] })
      .expect(201);
    const response = await as(admin, 'post', '/policies')
      .send({ name: 'twice', roles: ['x'], rules: [{ action: 'read', subject: 'Task' }] })
      .expect(409);
    expect(await decisionsOf(response)).toEqual([
      expect.objectContaining({ allowed: true, reason: expect.stringMatching(/not done: 409 policy_name_taken$/) }),
    ]);
  });

  it('a stale If-Match on a record: one decision naming the 412, and the record unchanged', async () => {
    const project = (
      await as(admin, 'post', '/records/Project')
        .send({ data: { name: 'p' } })
        .expect(201)
    ).body;
    const response = await as(member, 'patch', `/records/Project/${project.id}`)
      .set('if-match', '"7"')
      .send({ data: { name: 'q' } })
      .expect(412);
    expect(await decisionsOf(response)).toEqual([
      expect.objectContaining({
        action: 'update',
        allowed: true,
        reason: expect.stringMatching(/not done: 412 precondition_failed$/),
      }),
    ]);
    expect((await as(admin, 'get', `/records/Project/${project.id}`).expect(200)).body.data).toEqual({ name: 'p' });
  });

  it('a missing record and a missing structure: one decision each', async () => {
    const missing = await as(member, 'get', `/records/Project/${randomUUID()}`).expect(404);
    expect(await decisionsOf(missing)).toEqual([
      expect.objectContaining({ reason: expect.stringMatching(/not done: 404 record_not_found$/) }),
    ]);
    const noStructure = await as(member, 'get', '/records/Nothing').expect(404);
    expect(await decisionsOf(noStructure)).toEqual([
      expect.objectContaining({ reason: expect.stringMatching(/not done: 404 structure_not_found$/) }),
    ]);
  });

  it('a type-level refusal: one denial, nothing after it', async () => {
    const response = await as(member, 'post', '/policies')
      .send({ name: 'mine', roles: ['member'], rules: [] })
      .expect(403);
    expect(await decisionsOf(response)).toEqual([
      expect.objectContaining({
        action: 'create',
        subject: 'Policy',
        allowed: false,
        reason: 'members do not administer the workspace',
      }),
    ]);
  });

  it('a success: one decision, allowed, with no outcome appended', async () => {
    const response = await as(admin, 'get', '/policies').expect(200);
    expect(await decisionsOf(response)).toEqual([
      expect.objectContaining({
        action: 'read',
        subject: 'Policy',
        allowed: true,
        reason: expect.not.stringContaining('not done'),
      }),
    ]);
  });
});

describe('the platform admin', () => {
  it('leaves a decision in the tenant’s log for a change to its policies', async () => {
    const response = await cordon
      .admin()
      .post(`/v1/workspaces/${tenant.slug}/policies`)
      .set('x-request-id', randomUUID())
      .send({ name: 'by-operator', roles: ['auditor'], rules: [{ action: 'read', subject: 'DecisionLog' }] })
      .expect(201);
    expect(await decisionsOf(response)).toEqual([
      {
        principal_id: 'platform-admin',
        action: 'create',
        subject: 'Policy',
        allowed: true,
        reason: 'platform admin key (outside tenant policy)',
      },
    ]);
  });

  it('leaves a decision for a change to the workspace itself', async () => {
    const response = await cordon
      .admin()
      .patch(`/v1/workspaces/${tenant.slug}`)
      .set('x-request-id', randomUUID())
      .send({ name: 'Renamed' })
      .expect(200);
    expect(await decisionsOf(response)).toEqual([
      expect.objectContaining({ principal_id: 'platform-admin', action: 'update', subject: 'Workspace' }),
    ]);
  });
});

describe('refusals that are decisions of their own', () => {
  it('a policy change that would leave no member able to manage members is refused with 409 last_admin', async () => {
    const solo = await createTenant(cordon, issuer, 'door-last');
    const soloAdmin = await solo.token('user_solo', 'admin');
    const on = (method: 'get' | 'put' | 'post' | 'delete', path: string) =>
      cordon
        .http()
        [method](`/v1/workspaces/${solo.slug}${path}`)
        .auth(soloAdmin, { type: 'bearer' })
        .set('x-request-id', randomUUID());
    await on('post', '/members')
      .send({ userId: 'user_solo', roles: ['admin'] })
      .expect(201);
    const policies = (await on('get', '/policies').expect(200)).body.data as {
      id: string;
      name: string;
      version: number;
    }[];
    const adminPolicy = policies.find((policy) => policy.name === 'admin')!;
    const refused = await on('delete', `/policies/${adminPolicy.id}`).expect(409);
    expect(refused.body.code).toBe('last_admin');
    expect(await decisionsOf(refused, solo.id)).toEqual([
      expect.objectContaining({
        action: 'delete',
        subject: 'Policy',
        reason: expect.stringMatching(/not done: 409 last_admin$/),
      }),
    ]);
    const kept = (await on('get', `/policies/${adminPolicy.id}`).expect(200)).body;
    expect(kept.version).toBe(adminPolicy.version);
    // Narrowing the admin policy away from members is refused the same way.
    await on('put', `/policies/${adminPolicy.id}`)
      .send({
        name: 'admin',
        roles: ['admin'],
        rules: [
          { action: 'manage', subject: 'all' },
          { action: 'manage', subject: 'Member', inverted: true },
        ],
      })
      .expect(409);
    // With another manager of members, the same change goes through.
    await on('post', '/policies')
      .send({ name: 'membership', roles: ['admin'], rules: [{ action: 'manage', subject: 'Member' }] })
      .expect(201);
    await on('delete', `/policies/${adminPolicy.id}`).expect(204);
  });

  it('a reference to a record the writer may not read is answered as if it did not exist', async () => {
    const hidden = (
      await as(admin, 'post', '/records/Project')
        .send({ data: { name: 'hidden', secret: true } })
        .expect(201)
    ).body;
    await as(admin, 'post', '/policies')
      .send({
        name: 'no-secrets',
        roles: ['member'],
        rules: [{ action: 'read', subject: 'Project', conditions: { secret: true }, inverted: true }],
      })
      .expect(201);
    const member2 = await tenant.token('user_member2', 'member');
    const toHidden = await as(member2, 'post', '/records/Task')
      .send({ data: { title: 't', projectId: hidden.id } })
      .expect(400);
    const toNothing = await as(member2, 'post', '/records/Task')
      .send({ data: { title: 't', projectId: randomUUID() } })
      .expect(400);
    expect(toHidden.body.errors[0].detail).toBe(`there is no Project record "${hidden.id}"`);
    expect(toNothing.body.errors).toHaveLength(1);
    expect(toNothing.body.errors[0].detail).toMatch(/^there is no Project record /);
    const visible = (
      await as(admin, 'post', '/records/Project')
        .send({ data: { name: 'open', secret: false } })
        .expect(201)
    ).body;
    await as(member2, 'post', '/records/Task')
      .send({ data: { title: 't', projectId: visible.id } })
      .expect(201);
  });
});
