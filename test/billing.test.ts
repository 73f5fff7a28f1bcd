import { fileURLToPath } from 'node:url';
import type pg from 'pg';
import { monthOf } from '../src/policy/usage-meter.ts';
import { listedWorkspace, ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { fillRecords, storedRecords } from './support/stored-records.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Plans and limits without Stripe: the platform admin assigns plans; records, members and API
 * calls are held to the plan (test/fixtures/plans.json: small limits), also under racing creates
 * on one instance and on two; unpaid and past-due-after-grace workspaces are read-only.
 */

const plansFile = fileURLToPath(new URL('./fixtures/plans.json', import.meta.url));
const env = { PLANS_FILE: plansFile };

let cordon: TestApp;
let other: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

beforeAll(async () => {
  cordon = await startTestApp({ env, listen: true });
  other = await startTestApp({ env, listen: true });
  owner = await ownerClient();
  issuer = await TestIssuer.start();
});

afterAll(async () => {
  await cordon?.close();
  await other?.close();
  await owner?.end();
  await issuer?.close();
});

interface Tenant extends TestTenant {
  admin: string;
  as: (
    method: 'get' | 'post' | 'patch' | 'put' | 'delete',
    path: string,
    app?: TestApp,
  ) => ReturnType<ReturnType<TestApp['http']>['get']>;
}

async function tenantOn(plan: string): Promise<Tenant> {
  const tenant = await createTenant(cordon, issuer, `bill-${plan}`, plan);
  const admin = await tenant.token('user_admin', 'admin');
  const as: Tenant['as'] = (method, path, app = cordon) =>
    app.http()[method](`/v1/workspaces/${tenant.slug}${path}`).auth(admin, { type: 'bearer' });
  await as('post', '/structures')
    .send({ name: 'Project', fields: { title: { type: 'text' } } })
    .expect(201);
  await as('post', '/structures')
    .send({ name: 'Task', fields: { title: { type: 'text' } } })
    .expect(201);
  return { ...tenant, admin, as };
}

/** The trigger-kept counters agree with the rows, per structure and in all. */
async function expectCountersAgree(workspaceId: string): Promise<void> {
  const { rows } = await owner.query(
    `select s.name, (select count(*) from records r where r.workspace_id = s.workspace_id and r.structure = s.name)::int as rows,
            (select coalesce(sum(c.records), 0) from record_counts c
              where c.workspace_id = s.workspace_id and c.structure = s.name)::int as counted
     from structures s where s.workspace_id = $1`,
    [workspaceId],
  );
  expect(rows.length).toBeGreaterThan(0);
  for (const row of rows)
    expect({ structure: row.name, counted: row.counted }).toEqual({ structure: row.name, counted: row.rows });
}

/**
 * Runs `creates` while the structure row is locked for update, so every create gets through its
 * limit check and waits at the structure's share lock (or at the limit's lock), then lets them all
 * go at once: the race is as tight as it can be made, not left to timing.
 */
async function racing<T>(
  workspaceId: string,
  structure: string,
  creates: () => Promise<T>[],
  seen: { limitWaits?: number } = {},
): Promise<T[]> {
  const blocker = await ownerClient();
  try {
    await blocker.query('begin');
    await blocker.query('select 1 from structures where workspace_id = $1 and name = $2 for update', [
      workspaceId,
      structure,
    ]);
    const responses = Promise.all(creates());
    const deadline = Date.now() + 10_000;
    // Each app's pool has 5 connections: at least 5 creates are in the database, waiting.
    let waiting = 0;
    while (waiting < 5 && Date.now() < deadline) {
      const { rows } = await owner.query(
        `select count(*) from pg_locks l join pg_stat_activity a using (pid)
         where not l.granted and a.datname = current_database() and a.query like '%cordon_insert_record%'`,
      );
      waiting = Number(rows[0].count);
      if (waiting < 5) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(waiting).toBeGreaterThanOrEqual(5);
    const { rows } = await owner.query(
      `select count(*) from pg_locks l join pg_stat_activity a using (pid)
       where not l.granted and l.locktype = 'advisory' and a.datname = current_database()
         and a.query like '%cordon_insert_record%'`,
    );
    seen.limitWaits = Number(rows[0].count);
    await blocker.query('commit');
    return await responses;
  } finally {
    await blocker.end();
  }
}

/** The workspace's billing row changed behind the API's back; a rename announces it to the caches. */
async function setBilling(tenant: Tenant, columns: string, values: unknown[]): Promise<void> {
  await owner.query(`update workspace_billing set ${columns} where workspace_id = $1`, [tenant.id, ...values]);
  await cordon.admin().patch(`/v1/workspaces/${tenant.slug}`).send({ name: 'renamed' }).expect(200);
}

describe('plans', () => {
  it('lists the plans without authentication, with prices in minor units and null for unlimited', async () => {
    const { body } = await cordon.http().get('/v1/plans').expect(200);
    expect(body.data.map((plan: { id: string }) => plan.id)).toEqual(['free', 'starter', 'professional', 'enterprise']);
    expect(body.data[1]).toMatchObject({
      prices: { month: 2900, year: 29000 },
      currency: 'usd',
      limits: { members: 5, records: { '*': 12, Project: 10 } },
    });
    expect(body.data[3].limits).toEqual({ members: null, records: { '*': null }, apiCallsPerMonth: null });
  });

  it('ships seeds/plans.json with the issue’s plans', async () => {
    const { Plans } = await import('../src/policy/plans.ts');
    const plans = Plans.load();
    expect(plans.find('starter')).toMatchObject({ prices: { month: 2900 }, limits: { members: 5 } });
    expect(plans.find('starter')!.limits.records.Project).toBe(10);
    expect(plans.find('professional')).toMatchObject({ prices: { month: 9900 }, limits: { members: null } });
    expect(plans.find('professional')!.limits.records.Project).toBe(50);
    expect(plans.find('enterprise')).toMatchObject({ prices: { month: 29900 }, limits: { members: null } });
  });

  it('refuses a bad plans file with one line naming what is wrong', async () => {
    const { Plans } = await import('../src/policy/plans.ts');
    const bad = new URL('./fixtures/plans-bad.json', import.meta.url);
    const { writeFile, rm } = await import('node:fs/promises');
    await writeFile(bad, JSON.stringify({ plans: [{ id: 'starter', name: 'S' }] }));
    try {
      expect(() => Plans.load(bad)).toThrow(/^Plans file .* is invalid: .*plans\.0\.prices/);
    } finally {
      await rm(bad);
    }
  });
});

describe('assigning a plan', () => {
  it('puts a new workspace on free, and the platform admin assigns a plan: active, no period end', async () => {
    const created = (
      await cordon
        .admin()
        .post('/v1/workspaces')
        .send({ slug: `bill-new-${Date.now()}`, name: 'new' })
        .expect(201)
    ).body;
    expect(created).toMatchObject({ plan: 'free', billingStatus: 'none' });
    const patched = (await cordon.admin().patch(`/v1/workspaces/${created.slug}`).send({ plan: 'starter' }).expect(200))
      .body;
    expect(patched).toMatchObject({ plan: 'starter', billingStatus: 'active' });
    expect(await listedWorkspace(cordon, created.id)).toMatchObject({
      plan: 'starter',
      billingStatus: 'active',
    });
    const billing = (await cordon.admin().get(`/v1/workspaces/${created.slug}/billing`).expect(200)).body;
    expect(billing).toMatchObject({
      plan: 'starter',
      status: 'active',
      currentPeriodEnd: null,
      cancelAtPeriodEnd: false,
      graceEndsAt: null,
      limits: { members: 5, records: { '*': 12, Project: 10 } },
    });
  });

  it('refuses an unknown plan with 400 and changes nothing', async () => {
    const tenant = await tenantOn('starter');
    const { body } = await cordon.admin().patch(`/v1/workspaces/${tenant.slug}`).send({ plan: 'gold' }).expect(400);
    expect(body.code).toBe('validation_failed');
    expect((await cordon.admin().get(`/v1/workspaces/${tenant.slug}`).expect(200)).body.plan).toBe('starter');
  });

  it('lets the admin read billing, and refuses members and viewers with 403', async () => {
    const tenant = await tenantOn('starter');
    await tenant.as('get', '/billing').expect(200);
    for (const role of ['member', 'viewer']) {
      const token = await tenant.token(`user_${role}`, role);
      await cordon.http().get(`/v1/workspaces/${tenant.slug}/billing`).auth(token, { type: 'bearer' }).expect(403);
    }
  });
});

describe('records limits', () => {
  it('refuses the 11th Project on starter with 402 naming the limit, and logs the refusal', async () => {
    const tenant = await tenantOn('starter');
    await fillRecords(owner, tenant.id, 'Project', 10);
    const { body } = await tenant
      .as('post', '/records/Project')
      .send({ data: { title: 'one too many' } })
      .expect(402);
    expect(body).toMatchObject({
      code: 'plan_limit_reached',
      limit: 'records.Project',
      plan: 'starter',
      current: 10,
      maximum: 10,
    });
    expect(await storedRecords(owner, tenant.id, 'Project')).toBe(10);
    const { rows } = await owner.query(
      `select allowed, reason from decisions where workspace_id = $1 and subject = 'Project' and operation = 'create'`,
      [tenant.id],
    );
    expect(rows).toEqual([{ allowed: true, reason: expect.stringMatching(/not done: 402 plan_limit_reached$/) }]);
    // Another structure still has room under "*" (12).
    await tenant
      .as('post', '/records/Task')
      .send({ data: { title: 'fine' } })
      .expect(201);
  });

  it('holds the overall "*" limit across structures', async () => {
    const tenant = await tenantOn('starter');
    await fillRecords(owner, tenant.id, 'Task', 11);
    await tenant
      .as('post', '/records/Project')
      .send({ data: { title: 'twelfth' } })
      .expect(201);
    const { body } = await tenant
      .as('post', '/records/Task')
      .send({ data: { title: 'thirteenth' } })
      .expect(402);
    expect(body).toMatchObject({ limit: 'records.*', current: 12, maximum: 12 });
    expect(await storedRecords(owner, tenant.id)).toBe(12);
  });

  it('gives exactly one success of ten concurrent creates at limit − 1 (one instance)', async () => {
    const tenant = await tenantOn('starter');
    await fillRecords(owner, tenant.id, 'Project', 9);
    const responses = await racing(tenant.id, 'Project', () =>
      Array.from({ length: 10 }, (_, i) => tenant.as('post', '/records/Project').send({ data: { title: `r${i}` } })),
    );
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([201, ...Array(9).fill(402)]);
    expect(await storedRecords(owner, tenant.id, 'Project')).toBe(10);
    await expectCountersAgree(tenant.id);
  });

  it('gives exactly one success of ten concurrent creates at limit − 1 across two instances', async () => {
    const tenant = await tenantOn('starter');
    await fillRecords(owner, tenant.id, 'Project', 9);
    const responses = await racing(tenant.id, 'Project', () =>
      Array.from({ length: 10 }, (_, i) =>
        tenant.as('post', '/records/Project', i % 2 ? other : cordon).send({ data: { title: `r${i}` } }),
      ),
    );
    expect(responses.map((response) => response.status).sort()).toEqual([201, ...Array(9).fill(402)]);
    expect(await storedRecords(owner, tenant.id, 'Project')).toBe(10);
  });

  it('holds a limit above max_connections: the shared count turns exact near it (two instances)', async () => {
    const [{ max_connections: margin }] = (await owner.query('show max_connections')).rows;
    // professional: "*" 2000, checked shared (bound 2000 − margin) until the count nears it.
    expect(Number(margin)).toBeLessThan(2000);
    const tenant = await tenantOn('professional');
    await fillRecords(owner, tenant.id, 'Task', 1999);
    const responses = await racing(tenant.id, 'Task', () =>
      Array.from({ length: 10 }, (_, i) =>
        tenant.as('post', '/records/Task', i % 2 ? other : cordon).send({ data: { title: `r${i}` } }),
      ),
    );
    expect(responses.map((response) => response.status).sort()).toEqual([201, ...Array(9).fill(402)]);
    expect(await storedRecords(owner, tenant.id)).toBe(2000);
  });

  it('lets creates far from the limit proceed together: all of them pass the limit check at once', async () => {
    const tenant = await tenantOn('professional');
    // Under an exclusive lock only one create at a time would reach the structure's lock.
    const seen: { limitWaits?: number } = {};
    const responses = await racing(
      tenant.id,
      'Task',
      () =>
        Array.from({ length: 10 }, (_, i) =>
          tenant.as('post', '/records/Task', i % 2 ? other : cordon).send({ data: { title: `r${i}` } }),
        ),
      seen,
    );
    expect(seen.limitWaits).toBe(0);
    expect(responses.every((response) => response.status === 201)).toBe(true);
    expect(await storedRecords(owner, tenant.id)).toBe(10);
    await expectCountersAgree(tenant.id);
  });

  it('gives a deleted record’s room back, and forgets a deleted structure’s count', async () => {
    const tenant = await tenantOn('starter');
    await fillRecords(owner, tenant.id, 'Project', 10);
    await tenant
      .as('post', '/records/Project')
      .send({ data: { title: 'over' } })
      .expect(402);
    const { body: page } = await tenant.as('get', '/records/Project?limit=2').expect(200);
    await tenant.as('delete', `/records/Project/${page.data[0].id}`).expect(204);
    await owner.query('delete from records where id = $1', [page.data[1].id]);
    await tenant
      .as('post', '/records/Project')
      .send({ data: { title: 'room again' } })
      .expect(201);
    await expectCountersAgree(tenant.id);

    // The structure goes with its records and its counts; one of the same name starts from none.
    await tenant.as('delete', '/structures/Project?force=true').expect(204);
    expect(
      (
        await owner.query('select count(*)::int as n from record_counts where workspace_id = $1 and structure = $2', [
          tenant.id,
          'Project',
        ])
      ).rows[0].n,
    ).toBe(0);
    await tenant
      .as('post', '/structures')
      .send({ name: 'Project', fields: { title: { type: 'text' } } })
      .expect(201);
    await tenant
      .as('post', '/records/Project')
      .send({ data: { title: 'first again' } })
      .expect(201);
    await expectCountersAgree(tenant.id);
  });
});

describe('members limit', () => {
  it('refuses the 6th member on starter with 402 (a pending invitation counts) and stores nothing', async () => {
    const tenant = await tenantOn('starter');
    for (const user of ['a', 'b', 'c', 'd']) {
      await tenant
        .as('post', '/members')
        .send({ userId: `user_${user}`, roles: ['viewer'] })
        .expect(201);
    }
    await tenant
      .as('post', '/invitations')
      .send({ email: 'fifth@example.com', roles: ['viewer'] })
      .expect(201);
    const refused = await tenant
      .as('post', '/members')
      .send({ userId: 'user_f', roles: ['viewer'] })
      .expect(402);
    expect(refused.body).toMatchObject({ code: 'plan_limit_reached', limit: 'members', current: 5, maximum: 5 });
    await tenant
      .as('post', '/invitations')
      .send({ email: 'sixth@example.com', roles: ['viewer'] })
      .expect(402);
    // Re-inviting the pending email replaces its invitation: no more room is taken.
    await tenant
      .as('post', '/invitations')
      .send({ email: 'fifth@example.com', roles: ['viewer'] })
      .expect(201);
    const members = await owner.query('select count(*) from members where workspace_id = $1', [tenant.id]);
    const pending = await owner.query(
      `select count(*) from invitations where workspace_id = $1 and status = 'pending'`,
      [tenant.id],
    );
    expect([Number(members.rows[0].count), Number(pending.rows[0].count)]).toEqual([4, 1]);
    const usage = (await tenant.as('get', '/billing').expect(200)).body.usage;
    expect(usage.members).toBe(5);
  });

  it('adds exactly one of ten racing members at limit − 1', async () => {
    const tenant = await tenantOn('starter');
    for (const user of ['a', 'b', 'c', 'd']) {
      await tenant
        .as('post', '/members')
        .send({ userId: `user_${user}`, roles: ['viewer'] })
        .expect(201);
    }
    const responses = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        tenant.as('post', '/members', i % 2 ? other : cordon).send({ userId: `racer_${i}`, roles: ['viewer'] }),
      ),
    );
    expect(responses.map((response) => response.status).sort()).toEqual([201, ...Array(9).fill(402)]);
  });
});

describe('read-only statuses', () => {
  const writes = (tenant: Tenant) => [
    tenant.as('post', '/records/Task').send({ data: { title: 'x' } }),
    tenant.as('post', '/members').send({ userId: 'user_x', roles: ['viewer'] }),
    tenant.as('post', '/invitations').send({ email: 'x@example.com', roles: ['viewer'] }),
    tenant.as('post', '/structures').send({ name: 'Other', fields: { title: { type: 'text' } } }),
    tenant.as('post', '/policies').send({ name: 'p', roles: ['viewer'], rules: [{ action: 'read', subject: 'Task' }] }),
  ];

  it.each([
    ['unpaid', 'status = $2', ['unpaid']],
    ['past_due after its grace', 'status = $2, grace_ends_at = now() - interval $$1 hour$$', ['past_due']],
  ])(
    'makes the workspace read-only when %s: writes 402, reads, export and billing 200',
    async (_name, columns, values) => {
      const tenant = await tenantOn('starter');
      const record = (
        await tenant
          .as('post', '/records/Task')
          .send({ data: { title: 'kept' } })
          .expect(201)
      ).body;
      await setBilling(tenant, columns, values);
      for (const response of await Promise.all(writes(tenant))) {
        expect([response.status, response.body.code]).toEqual([402, 'subscription_inactive']);
      }
      await tenant
        .as('patch', `/records/Task/${record.id}`)
        .send({ data: { title: 'changed' } })
        .expect(402);
      await tenant.as('delete', `/records/Task/${record.id}`).expect(402);
      await tenant.as('get', `/records/Task/${record.id}`).expect(200);
      await tenant.as('get', '/records/Task').expect(200);
      await tenant.as('get', '/members').expect(200);
      await tenant.as('get', '/decisions/export').expect(200);
      await tenant.as('get', '/billing').expect(200);
      expect(await storedRecords(owner, tenant.id)).toBe(1);
    },
  );

  it('keeps full use while past_due within its grace, and after a plan is assigned again', async () => {
    const tenant = await tenantOn('starter');
    await setBilling(tenant, `status = 'past_due', grace_ends_at = now() + interval '1 day'`, []);
    await tenant
      .as('post', '/records/Task')
      .send({ data: { title: 'in grace' } })
      .expect(201);
    expect((await tenant.as('get', '/billing').expect(200)).body).toMatchObject({
      status: 'past_due',
      graceEndsAt: expect.any(String),
    });
    await setBilling(tenant, `status = 'unpaid'`, []);
    await tenant
      .as('post', '/records/Task')
      .send({ data: { title: 'refused' } })
      .expect(402);
    await cordon.admin().patch(`/v1/workspaces/${tenant.slug}`).send({ plan: 'starter' }).expect(200);
    await tenant
      .as('post', '/records/Task')
      .send({ data: { title: 'again' } })
      .expect(201);
  });

  it('puts a canceled workspace on the free plan’s limits', async () => {
    const tenant = await tenantOn('enterprise');
    await setBilling(tenant, `status = 'canceled'`, []);
    const billing = (await tenant.as('get', '/billing').expect(200)).body;
    // The plan reported is the one whose limits apply; the list says the same.
    expect(billing).toMatchObject({ plan: 'free', status: 'canceled', limits: { members: 3 } });
    const listed = (await cordon.admin().get(`/v1/workspaces/${tenant.slug}`).expect(200)).body;
    expect(listed).toMatchObject({ plan: 'free', billingStatus: 'canceled' });
  });
});

describe('API quota and usage', () => {
  // The instance has not read this new workspace's total yet: every call waits on that one read.
  it('admits exactly one of many calls that arrive together with one call left, on a cold meter', async () => {
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

  it('answers 429 api_quota_exceeded with Retry-After once the month’s calls are spent', async () => {
    const tenant = await tenantOn('free'); // the fixture's free plan: 8 calls a month
    let response = await tenant.as('get', '/records/Task');
    let calls = 2; // the two structure creates
    while (response.status === 200) {
      calls++;
      response = await tenant.as('get', '/records/Task');
    }
    expect(calls).toBe(8);
    expect(response.status).toBe(429);
    expect(response.body.code).toBe('api_quota_exceeded');
    const now = new Date();
    const nextMonth = Date.UTC(now.getUTCFullYear(), now.getUTCMonth() + 1, 1);
    const retryAfter = Number(response.headers['retry-after']);
    expect(Math.abs(retryAfter - (nextMonth - now.getTime()) / 1000)).toBeLessThan(5);
    // The platform admin is not a workspace principal: not metered.
    await cordon.admin().get(`/v1/workspaces/${tenant.slug}/billing`).expect(200);
    // The way to a bigger plan stays open (checkout and the portal answer as without a quota:
    // here, with no Stripe configured, 503), and is counted; the rest stays refused.
    const billing = (await tenant.as('get', '/billing').expect(200)).body;
    expect(billing.usage.apiCalls).toBe(9);
    const checkout = {
      plan: 'starter',
      interval: 'month',
      successUrl: 'https://app.example.com/ok',
      cancelUrl: 'https://app.example.com/no',
    };
    const portal = { returnUrl: 'https://app.example.com/billing' };
    for (const [path, body] of [
      ['/billing/checkout', checkout],
      ['/billing/portal', portal],
    ] as const) {
      expect((await tenant.as('post', path).send(body).expect(503)).body.code).toBe('billing_not_configured');
    }
    expect((await tenant.as('get', '/records/Task').expect(429)).body.code).toBe('api_quota_exceeded');
    expect((await tenant.as('get', '/billing').expect(200)).body.usage.apiCalls).toBe(12);
  });

  it('counts API calls in memory and flushes them in one upsert per workspace; reports usage', async () => {
    const tenant = await tenantOn('starter');
    await tenant
      .as('post', '/records/Project')
      .send({ data: { title: 'p' } })
      .expect(201);
    await tenant
      .as('post', '/records/Task')
      .send({ data: { title: 't' } })
      .expect(201);
    await tenant
      .as('post', '/members')
      .send({ userId: 'user_a', roles: ['viewer'] })
      .expect(201);
    const period = new Date().toISOString().slice(0, 8) + '01';
    const stored = async () =>
      (await owner.query('select calls from api_usage where workspace_id = $1 and period = $2', [tenant.id, period]))
        .rows[0]?.calls;
    expect(await stored()).toBeUndefined();
    await cordon.usage.flush();
    expect(Number(await stored())).toBe(5);
    const usage = (await tenant.as('get', '/billing').expect(200)).body.usage;
    expect(usage).toEqual({ members: 1, records: { '*': 2, Project: 1, Task: 1 }, apiCalls: 6 });
  });
});
