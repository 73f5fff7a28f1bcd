import type pg from 'pg';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let adminToken: string;
let policyId: string;

const clerk = { id: 'user_clerk', roles: ['clerk'] };

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'explain');
  await owner.query(
    `insert into structures (workspace_id, name, fields) values ($1, 'Task', '{"title": {"type": "text"}, "status": {"type": "text"}, "amount": {"type": "number"}}')`,
    [tenant.id],
  );
  adminToken = await tenant.token('user_admin', 'admin');
  const created = await cordon
    .http()
    .post(`/v1/workspaces/${tenant.slug}/policies`)
    .auth(adminToken, { type: 'bearer' })
    .send({
      name: 'clerk',
      roles: ['clerk'],
      rules: [
        { action: 'update', subject: 'Task', conditions: { amount: { $lte: 1000 }, status: 'open' } },
        { action: 'update', subject: 'Task', conditions: { status: 'locked' }, inverted: true, reason: 'locked' },
        { action: 'read', subject: 'Task' },
      ],
    })
    .expect(201);
  policyId = created.body.id;
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

interface Explained {
  allowed: boolean;
  policyId: string | null;
  ruleIndex: number | null;
  reason: string;
  explanation?: {
    rules: {
      policyName: string;
      ruleIndex: number;
      effect: string;
      applies: boolean;
      matched: boolean | null;
      failed?: unknown[];
    }[];
    decidedBy: { policyId: string; policyName: string; ruleIndex: number } | null;
    reason: string;
  };
}

async function checkAsClerk(resources: Record<string, unknown>[], explain?: boolean): Promise<Explained[]> {
  const { body } = await cordon
    .http()
    .post(`/v1/workspaces/${tenant.slug}/check`)
    .auth(adminToken, { type: 'bearer' })
    .send({
      principal: clerk,
      checks: resources.map((resource) => ({ action: 'update', subject: 'Task', resource })),
      ...(explain === undefined ? {} : { explain }),
    })
    .expect(200);
  return body.results;
}

/** The clerk's rules as explained, by index in the clerk policy. */
const clerkRules = (result: Explained) =>
  Object.fromEntries(
    result.explanation!.rules.filter((rule) => rule.policyName === 'clerk').map((rule) => [rule.ruleIndex, rule]),
  );

describe('POST /check with explain: true', () => {
  it('names a missing field as what failed a condition', async () => {
    const [result] = await checkAsClerk([{ status: 'open' }], true);
    expect(result!.allowed).toBe(false);
    expect(result!.explanation!.decidedBy).toBeNull();
    expect(result!.explanation!.reason).toBe('default deny');
    expect(clerkRules(result!)[0]).toEqual({
      policyId,
      policyName: 'clerk',
      ruleIndex: 0,
      action: 'update',
      subject: 'Task',
      effect: 'allow',
      applies: true,
      matched: false,
      failed: [{ field: 'amount', operator: '$lte', expected: 1000, why: 'missing' }],
    });
    expect(clerkRules(result!)[1]).toMatchObject({
      effect: 'deny',
      applies: true,
      matched: false,
      failed: [{ field: 'status', operator: '$eq', expected: 'locked', actual: 'open', why: 'value' }],
    });
  });

  it('names a type mismatch: a string where the rule compares a number', async () => {
    const [result] = await checkAsClerk([{ status: 'open', amount: '12' }], true);
    expect(result!.allowed).toBe(false);
    expect(clerkRules(result!)[0]!.failed).toEqual([
      { field: 'amount', operator: '$lte', expected: 1000, actual: '12', why: 'type' },
    ]);
  });

  it('lists deny rules first and names the deny rule that decided', async () => {
    const [result] = await checkAsClerk([{ status: 'locked', amount: 5 }], true);
    expect(result).toMatchObject({ allowed: false, policyId, ruleIndex: 1, reason: 'locked' });
    const rules = result!.explanation!.rules;
    const firstAllow = rules.findIndex((rule) => rule.effect === 'allow');
    expect(rules.slice(firstAllow).every((rule) => rule.effect === 'allow')).toBe(true);
    expect(result!.explanation!.decidedBy).toEqual({ policyId, policyName: 'clerk', ruleIndex: 1 });
    expect(clerkRules(result!)[1]).toMatchObject({ effect: 'deny', applies: true, matched: true });
    expect(clerkRules(result!)[1]!.failed).toBeUndefined();
    expect(clerkRules(result!)[0]).toMatchObject({ applies: true, matched: false });
  });

  it('says which rules do not cover the check, and matched is null without conditions or resource', async () => {
    const [result] = await checkAsClerk([{ status: 'open', amount: 5 }], true);
    expect(result).toMatchObject({ allowed: true, policyId, ruleIndex: 0 });
    expect(clerkRules(result!)[2]).toMatchObject({ action: 'read', applies: false, matched: null });
    const { body } = await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/check`)
      .auth(adminToken, { type: 'bearer' })
      .send({ principal: clerk, checks: [{ action: 'read', subject: 'Task' }], explain: true })
      .expect(200);
    const read = body.results[0] as Explained;
    expect(read.explanation!.decidedBy).toEqual({ policyId, policyName: 'clerk', ruleIndex: 2 });
    expect(clerkRules(read)[2]).toMatchObject({ applies: true, matched: null });
    expect(clerkRules(read)[0]).toMatchObject({ applies: false, matched: null });
  });

  it('leaves the decisions as they are without explain, and adds nothing to them', async () => {
    const resources = [{ status: 'open' }, { status: 'open', amount: '12' }, { status: 'locked', amount: 5 }, {}];
    const plain = await checkAsClerk(resources);
    const explicit = await checkAsClerk(resources, false);
    const explained = await checkAsClerk(resources, true);
    expect(plain).toEqual(explicit);
    for (const result of plain)
      expect(Object.keys(result).sort()).toEqual(['allowed', 'policyId', 'policyVersion', 'reason', 'ruleIndex']);
    expect(explained.map(({ explanation: _explanation, ...decision }) => decision)).toEqual(plain);
  });

  it('refuses a non-boolean explain', async () => {
    const { body } = await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/check`)
      .auth(adminToken, { type: 'bearer' })
      .send({ checks: [{ action: 'read', subject: 'Task' }], explain: 'yes' })
      .expect(400);
    expect(body.errors).toEqual([expect.objectContaining({ pointer: '/explain', in: 'body' })]);
  });
});
