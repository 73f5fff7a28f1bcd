import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { monthOf } from '../src/policy/usage-meter.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant } from './support/tenant.ts';

/** The monthly API-call quota on an instance that has not yet read the month's total (a cold meter). */

const plansFile = fileURLToPath(new URL('./fixtures/plans.json', import.meta.url));

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

beforeAll(async () => {
  cordon = await startTestApp({ env: { PLANS_FILE: plansFile } });
  owner = await ownerClient();
  issuer = await TestIssuer.start();
});
afterAll(async () => {
  await cordon.close();
  await owner.end();
  await issuer.close();
});

describe('API quota on a cold meter', () => {
  it('admits exactly one of many calls that arrive together with one call left', async () => {
    // Made by the platform admin, who is not metered: this instance has not read its usage yet.
    const tenant = await createTenant(cordon, issuer, 'cold-quota', 'free'); // the fixture's free plan: 8 calls
    const limit = 8;
    const now = new Date();
    await owner.query('insert into api_usage (workspace_id, period, calls) values ($1, $2, $3)', [
      tenant.id,
      monthOf(now).period,
      limit - 1,
    ]);
    // All in one turn of the event loop: every call waits on the one read of the month's total.
    const outcomes = await Promise.allSettled(
      Array.from({ length: 10 }, () => cordon.usage.admit(tenant.id, limit, now)),
    );
    expect(outcomes.filter((outcome) => outcome.status === 'fulfilled')).toHaveLength(1);
    expect(outcomes.filter((outcome) => outcome.status === 'rejected').map((outcome) => outcome.reason.code)).toEqual(
      Array(9).fill('api_quota_exceeded'),
    );

    // The spent quota holds over HTTP, and the one admitted call is what gets stored.
    const member = await tenant.token('user_admin', 'admin');
    const response = await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/structures`)
      .auth(member, { type: 'bearer' })
      .expect(429);
    expect(response.body.code).toBe('api_quota_exceeded');
    await cordon.usage.flush();
    const { rows } = await owner.query('select calls from api_usage where workspace_id = $1 and period = $2', [
      tenant.id,
      monthOf(now).period,
    ]);
    expect(Number(rows[0].calls)).toBe(limit);
  });
});
