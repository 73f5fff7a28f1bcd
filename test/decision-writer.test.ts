import pg from 'pg';
import type { DecisionBatch, DecisionEntry } from '../src/policy/decision-log.ts';
import { DecisionWriter } from '../src/policy/decision-writer.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const verify = async (tenant: TestTenant) =>
  (
    await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/decisions/verify`)
      .auth(await tenant.token('user_auditor', 'auditor'), { type: 'bearer' })
      .expect(200)
  ).body;

describe('a claim PostgreSQL cannot store, read by a placeholder', () => {
  let tenant: TestTenant;
  const team = '${principal.claims.team}';

  beforeAll(async () => {
    tenant = await createTenant(cordon, issuer, 'claim-nul');
    await cordon
      .admin()
      .post(`/v1/workspaces/${tenant.slug}/structures`)
      .send({ name: 'Task', fields: { team: { type: 'text' } } })
      .expect(201);
    await cordon
      .admin()
      .post(`/v1/workspaces/${tenant.slug}/policies`)
      .send({
        name: 'team',
        roles: ['teamer'],
        rules: [{ action: 'read', subject: 'Task', conditions: { team } }],
      })
      .expect(201);
  });

  const check = (token: string) =>
    cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/check`)
      .auth(token, { type: 'bearer' })
      .send({ checks: [{ action: 'read', subject: 'Task', resource: { team: 'red' } }] });

  const loggedInputs = async (userId: string) =>
    (
      await owner.query('select inputs from decisions where workspace_id = $1 and principal_id = $2', [
        tenant.id,
        userId,
      ])
    ).rows.map((row) => row.inputs);

  it.each([
    ['a NUL', 'user_nul', 'red\u0000'],
    ['a lone surrogate', 'user_surrogate', 'red\ud800'],
  ])(
    "answers its holder, logged with the claim as null, and fails no other user's request (%s)",
    async (_what, holder, value) => {
      const victim = await tenant.token('user_victim', 'teamer', { team: 'red' });
      const attacker = await tenant.token(holder, 'teamer', { team: value });

      const alone = await check(attacker).expect(200);
      // Unresolved, the placeholder fails closed: the allow rule is left out.
      expect(alone.body.results[0]).toMatchObject({ allowed: false, reason: 'default deny' });
      expect(await loggedInputs(holder)).toEqual([{ principal: { [team]: null }, documents: [{ team: 'red' }] }]);

      // Interleaved, so that both users' decisions share the group commit's flushes.
      const answers = await Promise.all(Array.from({ length: 30 }, (_, index) => check(index % 2 ? victim : attacker)));
      const byUser = (parity: number) =>
        answers
          .filter((_, index) => index % 2 === parity)
          .map((answer) => [answer.status, answer.body.results?.[0]?.allowed]);
      expect(byUser(1)).toEqual(Array.from({ length: 15 }, () => [200, true]));
      expect(byUser(0)).toEqual(Array.from({ length: 15 }, () => [200, false]));
      const logged = await loggedInputs(holder);
      expect(logged).toHaveLength(16);
      expect(new Set(logged.map((inputs) => JSON.stringify(inputs.principal)))).toEqual(
        new Set([JSON.stringify({ [team]: null })]),
      );
    },
  );

  it('keeps the chain verifiable', async () => {
    await cordon.sealer.sealWorkspace(tenant.id);
    expect(await verify(tenant)).toMatchObject({ verified: true });
  });
});

describe('the group commit, when one request’s rows are refused', () => {
  const entry = (documents?: Record<string, unknown>[]): DecisionEntry => ({
    action: 'read',
    operation: 'check',
    subject: 'Task',
    decision: { allowed: false, policyId: null, policyVersion: null, ruleIndex: null, reason: 'default deny' },
    documents,
  });
  const batch = (tenant: TestTenant, requestId: string, entries: DecisionEntry[]): DecisionBatch => ({
    context: {
      workspaceId: tenant.id,
      requestId,
      principal: { id: 'user_writer', roles: ['viewer'], provider: 'clerk' },
      ip: null,
      userAgent: null,
      startedAt: process.hrtime.bigint(),
    },
    entries,
  });

  it('fails only that request; the others in its flush commit in order, and the chain verifies', async () => {
    const tenant = await createTenant(cordon, issuer, 'flush');
    const writer = new DecisionWriter(cordon.database);
    // Appended in one turn of the event loop: one flush, one statement for the workspace.
    const settled = await Promise.allSettled([
      writer.append(batch(tenant, 'first', [entry(), entry()])),
      // A value no request can carry today (bodies are checked): the writer must not trust that.
      writer.append(batch(tenant, 'refused', [entry(), entry([{ note: 'a\u0000b' }])])),
      writer.append(batch(tenant, 'second', [entry([{ note: 'fine' }])])),
      writer.append(batch(tenant, 'third', [entry()])),
    ]);
    expect(settled.map((outcome) => outcome.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(((settled[1] as PromiseRejectedResult).reason as { code?: string }).code).toMatch(/^22/);
    const { rows } = await owner.query(
      "select request_id from decisions where workspace_id = $1 and principal_id = 'user_writer' order by position",
      [tenant.id],
    );
    expect(rows.map((row) => row.request_id)).toEqual(['first', 'first', 'second', 'third']);

    await cordon.sealer.sealWorkspace(tenant.id);
    expect(await verify(tenant)).toMatchObject({ verified: true, unsealed: 0 });
  });
});
