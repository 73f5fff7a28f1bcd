import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { parseCrontab } from 'graphile-worker';
import type pg from 'pg';
import { pino } from 'pino';
import type Stripe from 'stripe';
import { monthOf } from '../src/policy/usage-meter.ts';
import { Plans } from '../src/policy/plans.ts';
import { every } from '../src/background.ts';
import { meterIdentifier } from '../src/features/billing/billing-jobs.ts';
import { StripeCatalog } from '../src/features/billing/stripe-catalog.ts';
import { createScratchDatabase, ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { startService } from './support/process.ts';
import { StripeStandIn, type StripeEvent } from './support/stripe-stand-in.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Billing through Stripe, end to end: the real `stripe` client against the stateful stand-in,
 * webhooks POSTed over real HTTP and signed as Stripe signs them, PostgreSQL as it is.
 * test/fixtures/plans.json: starter allows 10 Projects, professional 50.
 */

const plansFile = fileURLToPath(new URL('./fixtures/plans.json', import.meta.url));
const day = 86_400_000;

let standIn: StripeStandIn;
let stripe: Stripe;
let cordon: TestApp;
let server: Server;
let webhookUrl: string;
let owner: pg.Client;
let issuer: TestIssuer;
/** The stand-in's clock runs this far from the real one (a test that needs a period already over). */
let clockOffset = 0;
/** While set, the stand-in's clock stands still here (events of one second). */
let frozenAt: number | undefined;
const webhookSecret = `whsec_${randomBytes(24).toString('base64url')}`;

const stripeEnv = (standInUrl: string, secretKey: string) => ({
  PLANS_FILE: plansFile,
  STRIPE_SECRET_KEY: secretKey,
  STRIPE_WEBHOOK_SECRET: webhookSecret,
  STRIPE_API_URL: standInUrl,
});

beforeAll(async () => {
  standIn = await StripeStandIn.start({ clock: () => frozenAt ?? Date.now() + clockOffset });
  stripe = standIn.client();
  cordon = await startTestApp({ env: stripeEnv(standIn.url, standIn.secretKey), listen: true });
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  webhookUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/billing/webhook`;
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  await cordon.billing!.catalog.sync();
});

afterAll(async () => {
  server?.closeAllConnections();
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  await cordon?.close();
  await owner?.end();
  await issuer?.close();
  await standIn?.close();
});

interface Tenant extends TestTenant {
  admin: string;
  as: (method: 'get' | 'post' | 'patch' | 'delete', path: string) => ReturnType<ReturnType<TestApp['http']>['get']>;
}

async function tenant(app: TestApp = cordon): Promise<Tenant> {
  const created = await createTenant(app, issuer, 'stripe', 'free');
  const admin = await created.token('user_admin', 'admin');
  const as: Tenant['as'] = (method, path) =>
    app.http()[method](`/v1/workspaces/${created.slug}${path}`).auth(admin, { type: 'bearer' });
  await as('post', '/structures')
    .send({ name: 'Project', fields: { title: { type: 'text' } } })
    .expect(201);
  return { ...created, admin, as };
}

const checkoutBody = (plan: string, interval: 'month' | 'year' = 'month') => ({
  plan,
  interval,
  successUrl: 'https://app.example.com/billing/done',
  cancelUrl: 'https://app.example.com/billing',
});

/** Starts a Checkout through Cordon and answers the Checkout Session it created. */
async function checkout(t: Tenant, plan: string, interval: 'month' | 'year' = 'month') {
  const { body } = await t.as('post', '/billing/checkout').send(checkoutBody(plan, interval)).expect(200);
  const sessionId = (body.url as string).split('/').pop()!;
  return standIn.find('checkout.session', sessionId)!;
}

async function deliver(events: StripeEvent[], options: { timestamp?: number } = {}): Promise<number[]> {
  const statuses: number[] = [];
  for (const event of events)
    statuses.push(await standIn.send(event, webhookUrl, { secret: webhookSecret, ...options }));
  return statuses;
}

const byType = (events: StripeEvent[], ...types: string[]) => events.filter((event) => types.includes(event.type));

/** A workspace on `plan` through Checkout, its checkout.session.completed and subscription.created delivered. */
async function subscribed(
  plan: string,
  options: { interval?: 'month' | 'year'; status?: 'active' | 'trialing'; app?: TestApp } = {},
): Promise<{ t: Tenant; subscription: string; events: StripeEvent[] }> {
  const t = await tenant(options.app);
  const session = await checkout(t, plan, options.interval);
  const events = standIn.completeCheckout(session.id, options.status ? { status: options.status } : {});
  const url = options.app ? await urlOf(options.app) : webhookUrl;
  for (const event of byType(events, 'checkout.session.completed', 'customer.subscription.created')) {
    expect(await standIn.send(event, url, { secret: webhookSecret })).toBe(200);
  }
  return { t, subscription: standIn.find('checkout.session', session.id)!.subscription as string, events };
}

const listening = new Map<TestApp, string>();
async function urlOf(app: TestApp): Promise<string> {
  if (!listening.has(app)) {
    const started = app.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => started.once('listening', resolve));
    listening.set(app, `http://127.0.0.1:${(started.address() as AddressInfo).port}/v1/billing/webhook`);
    afterAllClose.push(started);
  }
  return listening.get(app)!;
}
const afterAllClose: Server[] = [];
afterAll(async () => {
  for (const started of afterAllClose) {
    started.closeAllConnections();
    await new Promise((resolve) => started.close(resolve));
  }
});

const billingOf = async (t: Tenant) => (await t.as('get', '/billing').expect(200)).body;

const storedEvents = async (workspaceId: string) =>
  (await owner.query('select event_id from billing_events where workspace_id = $1', [workspaceId])).rows.map(
    (row: { event_id: string }) => row.event_id,
  );

async function fill(workspaceId: string, count: number): Promise<void> {
  await owner.query(
    `insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at)
     select gen_random_uuid(), $1, 'Project', jsonb_build_object('title', 'seeded ' || i), 'seed', now(), now()
     from generate_series(1, $2::int) as i`,
    [workspaceId, count],
  );
}

const createProject = (t: Tenant) => t.as('post', '/records/Project').send({ data: { title: 'new' } });

describe('catalog', () => {
  it('creates each paid plan’s prices once by lookup_key, even with two instances starting at once', async () => {
    const fresh = await StripeStandIn.start();
    const env = stripeEnv(fresh.url, fresh.secretKey);
    const [one, two] = await Promise.all([startTestApp({ env }), startTestApp({ env })]);
    try {
      await Promise.all([one.billing!.catalog.sync(), two.billing!.catalog.sync(), one.billing!.catalog.sync()]);
      const keys = ['starter', 'professional', 'enterprise'].flatMap((plan) => [
        `cordon_${plan}_month`,
        `cordon_${plan}_year`,
      ]);
      const prices = (await fresh.client().prices.list({ lookup_keys: keys, limit: 100 })).data;
      expect(prices.map((price) => price.lookup_key).sort()).toEqual([...keys].sort());
      expect(prices.find((price) => price.lookup_key === 'cordon_professional_year')).toMatchObject({
        unit_amount: 99000,
        currency: 'usd',
        recurring: { interval: 'year' },
        product: 'cordon_professional',
      });
      const executed = (path: string) =>
        fresh.requests.filter((request) => request.method === 'POST' && request.path === path && !request.replayed);
      expect(executed('/v1/prices').filter((request) => request.status === 200)).toHaveLength(6);
      expect(executed('/v1/products').filter((request) => request.status === 200)).toHaveLength(3);
      // The free plan has no price; every POST carried an Idempotency-Key.
      expect(prices.some((price) => price.lookup_key?.startsWith('cordon_free'))).toBe(false);
      expect(fresh.requests.filter((request) => request.method === 'POST' && !request.idempotencyKey)).toEqual([]);
      const meters = (await fresh.client().billing.meters.list({ status: 'active' })).data;
      expect(meters.map((meter) => meter.event_name)).toEqual(['cordon_api_calls']);
    } finally {
      await one.close();
      await two.close();
      await fresh.close();
    }
  });
  it('moves the lookup_key to a new price when a plan’s amount changes; the old price is left to its subscriptions', async () => {
    const fresh = await StripeStandIn.start();
    const dir = await mkdtemp(path.join(tmpdir(), 'cordon-plans-'));
    const changed = path.join(dir, 'plans.json');
    const file = JSON.parse(await readFile(plansFile, 'utf8')) as {
      plans: { id: string; prices: { month: number } }[];
    };
    file.plans.find((plan) => plan.id === 'starter')!.prices.month = 3900;
    await writeFile(changed, JSON.stringify(file));
    const before = await startTestApp({ env: stripeEnv(fresh.url, fresh.secretKey) });
    const after = await startTestApp({ env: { ...stripeEnv(fresh.url, fresh.secretKey), PLANS_FILE: changed } });
    try {
      await before.billing!.catalog.sync();
      const [old] = (await fresh.client().prices.list({ lookup_keys: ['cordon_starter_month'] })).data;
      await after.billing!.catalog.sync();
      await after.billing!.catalog.sync();
      const [current] = (await fresh.client().prices.list({ lookup_keys: ['cordon_starter_month'] })).data;
      expect(current).toMatchObject({ unit_amount: 3900, product: 'cordon_starter' });
      expect(current!.id).not.toBe(old!.id);
      expect(fresh.find('price', old!.id)).toMatchObject({ unit_amount: 2900, lookup_key: null, active: true });
      const created = fresh.requests.filter((request) => request.path === '/v1/prices' && request.method === 'POST');
      expect(created.filter((request) => !request.replayed && request.status === 200)).toHaveLength(7);
    } finally {
      await before.close();
      await after.close();
      await fresh.close();
      await rm(dir, { recursive: true });
    }
  });
});

/** The fixture plans with one monthly amount changed, in a file of their own. */
async function plansWith(dir: string, planId: string, month: number): Promise<string> {
  const changed = path.join(dir, 'plans.json');
  const file = JSON.parse(await readFile(plansFile, 'utf8')) as { plans: { id: string; prices: { month: number } }[] };
  file.plans.find((plan) => plan.id === planId)!.prices.month = month;
  await writeFile(changed, JSON.stringify(file));
  return changed;
}

describe('a plan’s amount changes', () => {
  it('still maps the old price’s subscribers to their plan: cancelation ends on free, past_due gets its grace', async () => {
    // A stand-in of its own (the lookup_key moves), running 40 days behind: a period ends in the past.
    const fresh = await StripeStandIn.start({ clock: () => Date.now() - 40 * day });
    const app = await startTestApp({ env: stripeEnv(fresh.url, fresh.secretKey), listen: true });
    const dir = await mkdtemp(path.join(tmpdir(), 'cordon-plans-'));
    try {
      await app.billing!.catalog.sync();
      const url = await urlOf(app);
      const send = async (events: StripeEvent[]) => {
        for (const event of events) expect(await fresh.send(event, url, { secret: webhookSecret })).toBe(200);
      };
      const subscribe = async () => {
        const t = await tenant(app);
        const { body } = await t.as('post', '/billing/checkout').send(checkoutBody('starter')).expect(200);
        const sessionId = (body.url as string).split('/').pop()!;
        await send(byType(fresh.completeCheckout(sessionId), 'customer.subscription.created'));
        return { t, subscription: fresh.find('checkout.session', sessionId)!.subscription as string };
      };
      const canceling = await subscribe();
      const lapsing = await subscribe();
      expect(await billingOf(canceling.t)).toMatchObject({ plan: 'starter', status: 'active' });

      // Starter's monthly amount changes: the next start's catalog sync gives its lookup_key to a new price.
      const changed = Plans.load(await plansWith(dir, 'starter', 3900));
      await new StripeCatalog(fresh.client(), changed, {
        logger: pino({ level: 'silent' }),
        meterEventName: 'cordon_api_calls',
      }).sync();
      const [item] = fresh.find('subscription', canceling.subscription)!.items.data;
      expect(item!.price).toMatchObject({ lookup_key: null, unit_amount: 2900 });

      await send(fresh.cancel(canceling.subscription, { atPeriodEnd: true }));
      expect(await billingOf(canceling.t)).toMatchObject({
        plan: 'starter',
        status: 'active',
        cancelAtPeriodEnd: true,
      });
      await send(fresh.advancePeriod(canceling.subscription));
      expect(await billingOf(canceling.t)).toMatchObject({
        plan: 'free',
        status: 'canceled',
        limits: { records: { '*': 1000 } },
      });

      await send(fresh.setSubscriptionStatus(lapsing.subscription, 'past_due'));
      const lapsed = await billingOf(lapsing.t);
      expect(lapsed).toMatchObject({ plan: 'starter', status: 'past_due' });
      expect(Date.parse(lapsed.graceEndsAt)).toBeGreaterThan(Date.now() + 6 * day);
    } finally {
      await app.close();
      await fresh.close();
      await rm(dir, { recursive: true });
    }
  });
});

describe('checkout', () => {
  it('creates the Stripe customer first, once per workspace however many checkouts race, and keeps it', async () => {
    const t = await tenant();
    // No subscription exists yet, so each racing request gets a Checkout Session of its own (one customer).
    const responses = await Promise.all(
      Array.from({ length: 3 }, () => t.as('post', '/billing/checkout').send(checkoutBody('starter'))),
    );
    expect(responses.map((response) => response.status)).toEqual([200, 200, 200]);
    const sessions = responses.map((response) => standIn.find('checkout.session', response.body.url.split('/').pop())!);
    const customers = new Set(sessions.map((session) => session.customer));
    expect(customers.size).toBe(1);
    const [customer] = [...customers] as string[];
    const { rows } = await owner.query('select stripe_customer_id from workspace_billing where workspace_id = $1', [
      t.id,
    ]);
    expect(rows[0].stripe_customer_id).toBe(customer);
    expect(standIn.find('customer', customer!)!.metadata).toEqual({ workspace_id: t.id });
    const second = await checkout(t, 'professional', 'year');
    expect(second.customer).toBe(customer);
  });

  it('puts the workspace on starter with starter’s limits after checkout.session.completed and subscription.created', async () => {
    const t = await tenant();
    const session = await checkout(t, 'starter');
    const events = standIn.completeCheckout(session.id);
    expect(await deliver(byType(events, 'checkout.session.completed', 'customer.subscription.created'))).toEqual([
      200, 200,
    ]);
    const completed = standIn.find('checkout.session', session.id)!;
    const subscription = standIn.find('subscription', completed.subscription as string)!;
    expect(subscription.metadata).toEqual({ workspace_id: t.id });
    const billing = await billingOf(t);
    expect(billing).toMatchObject({
      plan: 'starter',
      status: 'active',
      cancelAtPeriodEnd: false,
      graceEndsAt: null,
      limits: { members: 5, records: { '*': 12, Project: 10 } },
    });
    expect(Date.parse(billing.currentPeriodEnd)).toBe(subscription.items.data[0]!.current_period_end * 1000);
    await fill(t.id, 10);
    expect((await createProject(t).expect(402)).body).toMatchObject({ code: 'plan_limit_reached', plan: 'starter' });
    const listed = (await cordon.admin().get(`/v1/workspaces/${t.slug}`).expect(200)).body;
    expect(listed).toMatchObject({ plan: 'starter', billingStatus: 'active', mrr: { amount: 2900, currency: 'usd' } });
  });

  it('applies an upgrade to professional at once: its limits hold with the next request', async () => {
    const { t, subscription } = await subscribed('starter');
    await fill(t.id, 10);
    await createProject(t).expect(402);
    const current = await stripe.subscriptions.retrieve(subscription);
    const price = (await stripe.prices.list({ lookup_keys: ['cordon_professional_month'] })).data[0]!;
    await stripe.subscriptions.update(subscription, { items: [{ id: current.items.data[0]!.id, price: price.id }] });
    expect(await deliver(byType(standIn.events, 'customer.subscription.updated').slice(-1))).toEqual([200]);
    expect(await billingOf(t)).toMatchObject({ plan: 'professional', limits: { records: { Project: 50 } } });
    await createProject(t).expect(201);
  });

  it('refuses a second Checkout while a subscription bills (409), and refuses bad input with stable codes', async () => {
    const { t } = await subscribed('starter');
    expect((await t.as('post', '/billing/checkout').send(checkoutBody('professional')).expect(409)).body.code).toBe(
      'subscription_exists',
    );
    const other = await tenant();
    for (const body of [
      { ...checkoutBody('starter'), interval: 'week' },
      { ...checkoutBody('starter'), successUrl: 'javascript:alert(1)' },
      { ...checkoutBody('starter'), extra: true },
      { plan: 'starter' },
    ]) {
      const { body: problem } = await other.as('post', '/billing/checkout').send(body).expect(400);
      expect(problem.code).toBe('validation_failed');
    }
    for (const plan of ['free', 'gold']) {
      const { body: problem } = await other.as('post', '/billing/checkout').send(checkoutBody(plan)).expect(400);
      expect(problem).toMatchObject({ code: 'validation_failed', errors: [{ pointer: '/plan' }] });
    }
    await other.as('post', '/billing/portal').send({ returnUrl: 'not a url' }).expect(400);
    const { rows } = await owner.query('select stripe_customer_id from workspace_billing where workspace_id = $1', [
      other.id,
    ]);
    expect(rows[0].stripe_customer_id).toBeNull();
  });

  it('refuses a Checkout after one completed in Stripe whose webhooks have not arrived yet (409)', async () => {
    const t = await tenant();
    const session = await checkout(t, 'starter');
    standIn.completeCheckout(session.id);
    expect(await billingOf(t)).toMatchObject({ plan: 'free', status: 'none' });
    const sessions = standIn.requests.filter((request) => request.path === '/v1/checkout/sessions').length;
    const { body } = await t.as('post', '/billing/checkout').send(checkoutBody('professional')).expect(409);
    expect(body.code).toBe('subscription_exists');
    expect(standIn.requests.filter((request) => request.path === '/v1/checkout/sessions').length).toBe(sessions);
    const subscriptions = await stripe.subscriptions.list({ customer: session.customer as string });
    expect(subscriptions.data).toHaveLength(1);
  });

  it('refuses members, viewers, other workspaces and no token on checkout and portal; nothing is created', async () => {
    const t = await tenant();
    const other = await tenant();
    const before = standIn.requests.length;
    for (const path of ['/billing/checkout', '/billing/portal']) {
      const body = path.endsWith('checkout') ? checkoutBody('starter') : { returnUrl: 'https://app.example.com' };
      for (const role of ['member', 'viewer']) {
        const token = await t.token(`user_${role}`, role);
        await cordon
          .http()
          .post(`/v1/workspaces/${t.slug}${path}`)
          .auth(token, { type: 'bearer' })
          .send(body)
          .expect(403);
      }
      await cordon
        .http()
        .post(`/v1/workspaces/${t.slug}${path}`)
        .auth(other.admin, { type: 'bearer' })
        .send(body)
        .expect((response) => expect([401, 403, 404]).toContain(response.status));
      await cordon.http().post(`/v1/workspaces/${t.slug}${path}`).send(body).expect(401);
    }
    expect(standIn.requests.length).toBe(before);
    const { rows } = await owner.query('select stripe_customer_id from workspace_billing where workspace_id = $1', [
      t.id,
    ]);
    expect(rows[0].stripe_customer_id).toBeNull();
  });

  it('opens the customer portal for the workspace’s customer', async () => {
    const { t } = await subscribed('starter');
    const { body } = await t
      .as('post', '/billing/portal')
      .send({ returnUrl: 'https://app.example.com/settings' })
      .expect(200);
    const portal = standIn.find('billing_portal.session', body.url.split('/').pop())!;
    const { rows } = await owner.query('select stripe_customer_id from workspace_billing where workspace_id = $1', [
      t.id,
    ]);
    expect(portal).toMatchObject({
      customer: rows[0].stripe_customer_id,
      return_url: 'https://app.example.com/settings',
    });
  });
});

describe('webhook', () => {
  it('refuses a forged signature with 400 and stores nothing', async () => {
    const t = await tenant();
    const session = await checkout(t, 'starter');
    const [completed, created] = standIn.completeCheckout(session.id);
    const status = await standIn.send(created!, webhookUrl, {
      secret: webhookSecret,
      tamper: (payload) => payload.replace('"active"', '"trialing"'),
    });
    expect(status).toBe(400);
    expect(
      await standIn.send(completed!, webhookUrl, { secret: `whsec_${randomBytes(24).toString('base64url')}` }),
    ).toBe(400);
    const unsigned = await fetch(webhookUrl, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify(created),
    });
    expect(unsigned.status).toBe(400);
    expect(((await unsigned.json()) as { code: string }).code).toBe('webhook_signature_invalid');
    expect(await storedEvents(t.id)).toEqual([]);
    expect(await billingOf(t)).toMatchObject({ plan: 'free', status: 'none' });
  });

  it('refuses a delivery signed more than 5 minutes ago with 400 and stores nothing', async () => {
    const t = await tenant();
    const session = await checkout(t, 'starter');
    const [, created] = standIn.completeCheckout(session.id);
    expect(await deliver([created!], { timestamp: Math.floor(Date.now() / 1000) - 301 })).toEqual([400]);
    expect(await storedEvents(t.id)).toEqual([]);
    expect(await billingOf(t)).toMatchObject({ plan: 'free', status: 'none' });
  });

  it('applies a replayed event id once: the replay does not read Stripe again', async () => {
    const { t, subscription, events } = await subscribed('starter');
    const [created] = byType(events, 'customer.subscription.created');
    expect(await storedEvents(t.id)).toHaveLength(2);
    // Stripe's state moves on, and its event is not delivered; the old event's replay must not apply it.
    standIn.setSubscriptionStatus(subscription, 'unpaid');
    const reads = standIn.requests.length;
    expect(await deliver([created!, created!])).toEqual([200, 200]);
    expect(standIn.requests.length).toBe(reads);
    expect(await billingOf(t)).toMatchObject({ status: 'active' });
    expect((await storedEvents(t.id)).filter((id) => id === created!.id)).toHaveLength(1);
  });

  it('ends in Stripe’s state when updated arrives before created', async () => {
    const t = await tenant();
    const session = await checkout(t, 'starter');
    const events = standIn.completeCheckout(session.id);
    const subscription = standIn.find('checkout.session', session.id)!.subscription as string;
    const current = await stripe.subscriptions.retrieve(subscription);
    const price = (await stripe.prices.list({ lookup_keys: ['cordon_professional_month'] })).data[0]!;
    await stripe.subscriptions.update(subscription, { items: [{ id: current.items.data[0]!.id, price: price.id }] });
    const [updated] = byType(standIn.events, 'customer.subscription.updated').slice(-1);
    expect(await deliver([updated!])).toEqual([200]);
    expect(await billingOf(t)).toMatchObject({ plan: 'professional', status: 'active' });
    expect(await deliver(byType(events, 'customer.subscription.created', 'checkout.session.completed'))).toEqual([
      200, 200,
    ]);
    expect(await billingOf(t)).toMatchObject({ plan: 'professional', status: 'active' });
  });

  it('ends in Stripe’s state when two updates of the same second with different states arrive in reverse order', async () => {
    const { t, subscription } = await subscribed('starter');
    let lapsed: StripeEvent | undefined;
    let paid: StripeEvent | undefined;
    frozenAt = Date.now();
    try {
      [lapsed] = byType(standIn.setSubscriptionStatus(subscription, 'past_due'), 'customer.subscription.updated');
      [paid] = byType(standIn.setSubscriptionStatus(subscription, 'active'), 'customer.subscription.updated');
    } finally {
      frozenAt = undefined;
    }
    expect(lapsed!.created).toBe(paid!.created);
    expect([lapsed!.data.object, paid!.data.object]).toMatchObject([{ status: 'past_due' }, { status: 'active' }]);
    // The older state arrives last: applying payloads would end past_due; the re-read ends where Stripe is.
    expect(await deliver([paid!, lapsed!])).toEqual([200, 200]);
    expect(await billingOf(t)).toMatchObject({ plan: 'starter', status: 'active', graceEndsAt: null });
    expect(await storedEvents(t.id)).toEqual(expect.arrayContaining([lapsed!.id, paid!.id]));
  });

  it('ends in Stripe’s state when two events of the same second arrive at once', async () => {
    const { t, subscription } = await subscribed('starter');
    const events = standIn.setSubscriptionStatus(subscription, 'past_due');
    expect(new Set(events.map((event) => event.created)).size).toBe(1);
    const statuses = await Promise.all(
      events.map((event) => standIn.send(event, webhookUrl, { secret: webhookSecret })),
    );
    expect(statuses).toEqual(events.map(() => 200));
    const billing = await billingOf(t);
    expect(billing).toMatchObject({ plan: 'starter', status: 'past_due' });
    expect(Date.parse(billing.graceEndsAt)).toBeGreaterThan(Date.now() + 6 * day);
    expect(await storedEvents(t.id)).toEqual(expect.arrayContaining(events.map((event) => event.id)));
  });

  it('answers 502 billing_provider_error when Stripe cannot be read, stores nothing, and applies the retry', async () => {
    const t = await tenant();
    const session = await checkout(t, 'starter');
    const [, created] = standIn.completeCheckout(session.id);
    standIn.outage((method, path) => method === 'GET' && path === '/v1/subscriptions');
    let status: number;
    try {
      status = await standIn.send(created!, webhookUrl, { secret: webhookSecret });
    } finally {
      standIn.outage(false);
    }
    expect(status).toBe(502);
    expect(await storedEvents(t.id)).toEqual([]);
    expect(await deliver([created!])).toEqual([200]);
    expect(await billingOf(t)).toMatchObject({ plan: 'starter', status: 'active' });
  });

  it('acknowledges events of customers it does not know, logs them and stores nothing', async () => {
    const customer = await stripe.customers.create({ email: 'someone@example.com' }, { idempotencyKey: 'x-unknown' });
    const [event] = byType(standIn.events, 'customer.subscription.created').slice(-1);
    const foreign = {
      ...event!,
      id: `evt_foreign_${randomBytes(6).toString('hex')}`,
      data: { object: { ...event!.data.object, customer: customer.id } },
    } as StripeEvent;
    expect(await deliver([foreign])).toEqual([200]);
    const { rows } = await owner.query('select 1 from billing_events where event_id = $1', [foreign.id]);
    expect(rows).toEqual([]);
  });

  it('never lifts a suspension set by the platform admin', async () => {
    const { t, subscription } = await subscribed('starter');
    await cordon.admin().patch(`/v1/workspaces/${t.slug}`).send({ status: 'suspended' }).expect(200);
    await deliver(standIn.setSubscriptionStatus(subscription, 'active').slice(-1));
    await deliver(standIn.setSubscriptionStatus(subscription, 'past_due'));
    await deliver(standIn.setSubscriptionStatus(subscription, 'active'));
    expect((await cordon.admin().get(`/v1/workspaces/${t.slug}`).expect(200)).body).toMatchObject({
      status: 'suspended',
      billingStatus: 'active',
    });
    await t.as('get', '/billing').expect(403);
  });
});

describe('reconciliation', () => {
  it('repairs a webhook that was never sent, with the webhook’s own apply', async () => {
    const t = await tenant();
    const session = await checkout(t, 'professional', 'year');
    standIn.completeCheckout(session.id);
    expect(await billingOf(t)).toMatchObject({ plan: 'free', status: 'none' });
    const result = await cordon.billing!.jobs.reconcile();
    expect(result.repaired).toBeGreaterThanOrEqual(1);
    expect(await billingOf(t)).toMatchObject({
      plan: 'professional',
      status: 'active',
      limits: { records: { Project: 50 } },
    });
    // A second run finds nothing to repair here.
    const again = await cordon.billing!.jobs.reconcile();
    expect(again.repaired).toBe(0);
  });

  it('leaves a plan the platform admin assigned after the subscription ended: an ended one not stored is not applied', async () => {
    const { t, subscription } = await subscribed('starter');
    await deliver(standIn.cancel(subscription, { atPeriodEnd: false }));
    expect(await billingOf(t)).toMatchObject({ status: 'canceled', limits: { records: { '*': 1000 } } });
    await cordon.admin().patch(`/v1/workspaces/${t.slug}`).send({ plan: 'professional' }).expect(200);
    await cordon.billing!.jobs.reconcile();
    expect(await billingOf(t)).toMatchObject({
      plan: 'professional',
      status: 'active',
      limits: { records: { Project: 50 } },
    });
  });

  it('runs as a job on the queue, with the webhook’s repair', async () => {
    // A database of its own: its workers run every job added to it.
    const queued = await startTestApp({
      env: stripeEnv(standIn.url, standIn.secretKey),
      ownDatabase: true,
      background: true,
    });
    try {
      const t = await tenant(queued);
      const session = await checkout(t, 'starter');
      standIn.completeCheckout(session.id);
      await queued.background.queue.addNow([{ task: 'cordon_billing_reconcile', payload: {} }]);
      await eventually(async () => (await billingOf(t)).status === 'active');
      expect(await billingOf(t)).toMatchObject({ plan: 'starter', status: 'active' });
    } finally {
      await queued.close();
    }
  });

  it('is scheduled on the queue every BILLING_RECONCILE_MINUTES, and the queue registers it', async () => {
    expect(every(15)).toBe('*/15 * * * *');
    expect(every(1)).toBe('* * * * *');
    expect(every(120)).toBe('0 */2 * * *');
    expect(every(1_440)).toBe('0 0 * * *');
    const queued = await startTestApp({
      env: { ...stripeEnv(standIn.url, standIn.secretKey), BILLING_RECONCILE_MINUTES: '5' },
      ownDatabase: true,
      background: true,
    });
    const queuedOwner = await ownerClient(queued.ownerUrl);
    try {
      const items = parseCrontab(queued.background.crontab);
      const reconcile = items.find((item) => item.identifier === 'billing_reconcile')!;
      expect(reconcile.task).toBe('cordon_billing_reconcile');
      const at = (min: number) => ({ min, hour: 3, date: 1, month: 1, dow: 1 });
      expect([0, 5, 10, 55].map((min) => reconcile.match(at(min)))).toEqual([true, true, true, true]);
      expect([1, 7, 59].map((min) => reconcile.match(at(min)))).toEqual([false, false, false]);
      expect(items.find((item) => item.identifier === 'billing_meter')?.task).toBe('cordon_billing_meter');
      // The running worker knows both schedules (graphile-worker records each one it registered).
      const { rows } = await queuedOwner.query(
        'select identifier from graphile_worker._private_known_crontabs order by identifier',
      );
      expect(rows.map((row: { identifier: string }) => row.identifier)).toEqual(
        expect.arrayContaining(['billing_meter', 'billing_reconcile']),
      );
    } finally {
      await queuedOwner.end();
      await queued.close();
    }
  });
});

describe('subscription states', () => {
  it('past_due: writes until the grace ends, then read-only (402) while reads work; invoice.paid restores writes', async () => {
    const { t, subscription } = await subscribed('starter');
    await deliver(byType(standIn.setSubscriptionStatus(subscription, 'past_due'), 'invoice.payment_failed'));
    const billing = await billingOf(t);
    expect(billing.status).toBe('past_due');
    expect(Date.parse(billing.graceEndsAt)).toBeGreaterThan(Date.now() + 6 * day);
    await createProject(t).expect(201);

    // The grace period runs out (its end moved into the past), and a rename tells the caches.
    await owner.query(
      `update workspace_billing set grace_ends_at = now() - interval '1 minute' where workspace_id = $1`,
      [t.id],
    );
    await cordon.admin().patch(`/v1/workspaces/${t.slug}`).send({ name: 'grace over' }).expect(200);
    expect((await createProject(t).expect(402)).body.code).toBe('subscription_inactive');
    await t.as('get', '/records/Project').expect(200);
    await t.as('get', '/billing').expect(200);
    await t.as('post', '/billing/portal').send({ returnUrl: 'https://app.example.com' }).expect(200);

    const paid = standIn.setSubscriptionStatus(subscription, 'active');
    expect(await deliver(byType(paid, 'invoice.paid'))).toEqual([200]);
    expect(await billingOf(t)).toMatchObject({ status: 'active', graceEndsAt: null });
    await createProject(t).expect(201);
  });

  it('unpaid: read-only at once, reads and billing still work', async () => {
    const { t, subscription } = await subscribed('starter');
    await deliver(standIn.setSubscriptionStatus(subscription, 'unpaid'));
    expect(await billingOf(t)).toMatchObject({ status: 'unpaid' });
    expect((await createProject(t).expect(402)).body.code).toBe('subscription_inactive');
    await t.as('get', '/records/Project').expect(200);
    await t.as('post', '/billing/portal').send({ returnUrl: 'https://app.example.com' }).expect(200);
  });

  it('canceled at period end: the plan holds until the period ends, then the free plan applies', async () => {
    const { t, subscription } = await subscribed('starter');
    await deliver(standIn.cancel(subscription, { atPeriodEnd: true }));
    expect(await billingOf(t)).toMatchObject({ plan: 'starter', status: 'active', cancelAtPeriodEnd: true });
    await deliver(standIn.advancePeriod(subscription));
    const billing = await billingOf(t);
    // Stripe ended it at the period's end, still ahead: starter's limits until then.
    expect(billing).toMatchObject({ plan: 'starter', status: 'canceled', limits: { records: { Project: 10 } } });
    expect(Date.parse(billing.currentPeriodEnd)).toBeGreaterThan(Date.now());
    expect((await cordon.admin().get(`/v1/workspaces/${t.slug}`).expect(200)).body.mrr.amount).toBe(0);
  });

  it('canceled once the period is over: back on the free plan’s limits', async () => {
    clockOffset = -40 * day;
    try {
      const { t, subscription } = await subscribed('starter');
      await deliver(standIn.cancel(subscription, { atPeriodEnd: true }));
      await deliver(standIn.advancePeriod(subscription));
      const billing = await billingOf(t);
      expect(billing).toMatchObject({ plan: 'free', status: 'canceled', limits: { records: { '*': 1000 } } });
      expect(Date.parse(billing.currentPeriodEnd)).toBeLessThan(Date.now());
      expect((await cordon.admin().get(`/v1/workspaces/${t.slug}`).expect(200)).body).toMatchObject({
        plan: 'free',
        billingStatus: 'canceled',
      });
    } finally {
      clockOffset = 0;
    }
  });
});

describe('usage reporting', () => {
  it('reports each workspace’s closed month to the meter once, however often the job runs', async () => {
    const one = await subscribed('starter');
    const two = await subscribed('professional');
    const unbilled = await tenant();
    const lastMonth = monthOf(new Date(Date.parse(monthOf(new Date()).period) - 1)).period;
    const thisMonth = monthOf(new Date()).period;
    for (const [workspace, period, calls] of [
      [one.t.id, lastMonth, 120],
      [two.t.id, lastMonth, 7],
      [one.t.id, thisMonth, 50],
      [unbilled.id, lastMonth, 9],
    ] as const) {
      await owner.query(
        `insert into api_usage (workspace_id, period, calls) values ($1, $2, $3)
         on conflict (workspace_id, period) do update set calls = excluded.calls`,
        [workspace, period, calls],
      );
    }
    await Promise.all([cordon.billing!.jobs.reportUsage(), cordon.billing!.jobs.reportUsage()]);
    await cordon.billing!.jobs.reportUsage();
    // A run that died after Stripe took the event but before it was marked sends it again.
    await owner.query('update api_usage set reported_at = null where workspace_id = $1', [one.t.id]);
    await cordon.billing!.jobs.reportUsage();

    const customers = await owner.query(
      'select workspace_id, stripe_customer_id from workspace_billing where workspace_id = any($1)',
      [[one.t.id, two.t.id]],
    );
    const customerOf = new Map(customers.rows.map((row) => [row.workspace_id, row.stripe_customer_id]));
    const ours = standIn.meterEvents.filter((event) =>
      [one.t.id, two.t.id, unbilled.id].some((id) => event.identifier.includes(id)),
    );
    expect(ours.map((event) => [event.identifier, event.payload]).sort()).toEqual(
      [
        [
          meterIdentifier(one.t.id, 'api_calls', lastMonth),
          { stripe_customer_id: customerOf.get(one.t.id), value: '120' },
        ],
        [
          meterIdentifier(two.t.id, 'api_calls', lastMonth),
          { stripe_customer_id: customerOf.get(two.t.id), value: '7' },
        ],
      ].sort(),
    );
    expect(ours.every((event) => event.event_name === 'cordon_api_calls' && event.meter !== null)).toBe(true);
    const { rows } = await owner.query(
      'select workspace_id, period::text, reported_at is not null as reported from api_usage where workspace_id = any($1) order by calls',
      [[one.t.id, two.t.id, unbilled.id]],
    );
    expect(rows).toEqual(
      expect.arrayContaining([
        { workspace_id: two.t.id, period: lastMonth, reported: true },
        { workspace_id: one.t.id, period: thisMonth, reported: false },
        { workspace_id: unbilled.id, period: lastMonth, reported: false },
        { workspace_id: one.t.id, period: lastMonth, reported: true },
      ]),
    );
  });
});

describe('start while Stripe is unreachable', () => {
  it('starts all the same, ready, with a warning that names no secret', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-stripe-down-'));
    await chmod(dataDir, 0o755);
    const scratch = await createScratchDatabase();
    const secretKey = `sk_test_${randomBytes(16).toString('hex')}`;
    const service = await startService(
      {
        NODE_ENV: 'test',
        PORT: '0',
        DATA_DIR: dataDir,
        DATABASE_URL: scratch.url,
        ADMIN_API_KEY: randomBytes(32).toString('hex'),
        LOG_LEVEL: 'info',
        ...stripeEnv(`http://127.0.0.1:${port}`, secretKey),
      },
      { timeoutMs: 90_000 },
    ).catch(async (error: unknown) => {
      await scratch.drop();
      throw error;
    });
    try {
      expect((await fetch(`http://127.0.0.1:${service.port}/readyz`)).status).toBe(200);
      expect(service.output()).toContain('Stripe catalog not synced at start');
      expect(service.output()).not.toContain(secretKey);
      expect(service.output()).not.toContain(webhookSecret);
    } finally {
      expect(await service.stop()).toBe(0);
      await scratch.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  }, 120_000);

  it('makes the catalog and meter the start could not make before the meter job reports usage', async () => {
    const fresh = await StripeStandIn.start();
    const app = await startTestApp({ env: stripeEnv(fresh.url, fresh.secretKey) });
    try {
      await app.billing!.jobs.reportUsage();
      const meters = (await fresh.client().billing.meters.list({ status: 'active' })).data;
      expect(meters.map((meter) => meter.event_name)).toEqual(['cordon_api_calls']);
      // Synced once: the next run asks Stripe nothing about the catalog.
      const before = fresh.requests.length;
      await app.billing!.jobs.reportUsage();
      expect(fresh.requests.length).toBe(before);
    } finally {
      await app.close();
      await fresh.close();
    }
  });
});

describe('without Stripe', () => {
  let plain: TestApp;
  beforeAll(async () => {
    plain = await startTestApp({ env: { PLANS_FILE: plansFile } });
  });
  afterAll(async () => {
    await plain?.close();
  });

  it('answers checkout, portal and the webhook with 503 billing_not_configured; the admin assigns plans', async () => {
    const t = await tenant(plain);
    for (const [path, body] of [
      ['/billing/checkout', checkoutBody('starter')],
      ['/billing/portal', { returnUrl: 'https://app.example.com' }],
    ] as const) {
      const { body: problem } = await t.as('post', path).send(body).expect(503);
      expect(problem.code).toBe('billing_not_configured');
    }
    const { body: problem } = await plain
      .http()
      .post('/v1/billing/webhook')
      .set('Content-Type', 'application/json')
      .set('Stripe-Signature', 't=1,v1=00')
      .send('{}')
      .expect(503);
    expect(problem.code).toBe('billing_not_configured');
    await plain.admin().patch(`/v1/workspaces/${t.slug}`).send({ plan: 'starter' }).expect(200);
    expect(await billingOf(t)).toMatchObject({ plan: 'starter', status: 'active' });
  });
});

describe('operator metrics', () => {
  let ops: TestApp;
  let opsOwner: pg.Client;
  beforeAll(async () => {
    // A database of its own: the figures are of every tenant, and other files make tenants too.
    ops = await startTestApp({
      env: { ...stripeEnv(standIn.url, standIn.secretKey), API_USAGE_FLUSH_MS: '300000' },
      ownDatabase: true,
      listen: true,
    });
    opsOwner = await ownerClient(ops.ownerUrl);
    await ops.billing!.catalog.sync();
  });
  afterAll(async () => {
    await opsOwner?.end();
    await ops?.close();
  });

  it('adds up tenants, subscriptions, MRR and usage as computed by hand, in the list and the gauges too', async () => {
    const url = await urlOf(ops);
    const send = async (events: StripeEvent[]) => {
      for (const event of events) expect(await standIn.send(event, url, { secret: webhookSecret })).toBe(200);
    };
    const monthly = await subscribed('starter', { app: ops }); // 2900
    const yearly = await subscribed('professional', { app: ops, interval: 'year' }); // 99000 / 12 = 8250
    const trialing = await subscribed('starter', { app: ops, status: 'trialing' }); // a trial: 0
    const pastDue = await subscribed('professional', { app: ops }); // 9900
    await send(standIn.setSubscriptionStatus(pastDue.subscription, 'past_due'));
    const canceled = await subscribed('starter', { app: ops, interval: 'year' }); // ended now: 0, churned
    await send(standIn.cancel(canceled.subscription, { atPeriodEnd: false }));
    const free = await tenant(ops);
    const assigned = await tenant(ops); // enterprise by the platform admin, suspended: no subscription, no MRR
    await ops
      .admin()
      .patch(`/v1/workspaces/${assigned.slug}`)
      .send({ plan: 'enterprise', status: 'suspended' })
      .expect(200);

    for (const userId of ['user_a1', 'user_a2']) {
      await monthly.t
        .as('post', '/members')
        .send({ userId, roles: ['member'] })
        .expect(201);
    }
    await yearly.t
      .as('post', '/members')
      .send({ userId: 'user_b1', roles: ['member'] })
      .expect(201);
    const memberToken = await monthly.t.token('user_a1', 'member');
    await ops
      .http()
      .get(`/v1/workspaces/${monthly.t.slug}/records/Project`)
      .auth(memberToken, { type: 'bearer' })
      .expect(200);
    await createProject(monthly.t).expect(201);
    await createProject(monthly.t).expect(201);
    await createProject(yearly.t).expect(201);
    const thisMonth = monthOf(new Date()).period;
    const yearAgo = monthOf(new Date(Date.now() - 365 * day)).period;
    for (const [workspace, period, calls] of [
      [monthly.t.id, thisMonth, 100],
      [yearly.t.id, thisMonth, 25],
      [monthly.t.id, yearAgo, 1000],
    ] as const) {
      await opsOwner.query('insert into api_usage (workspace_id, period, calls) values ($1, $2, $3)', [
        workspace,
        period,
        calls,
      ]);
    }

    const { body } = await ops.admin().get('/v1/admin/metrics').expect(200);
    expect(body).toEqual({
      tenants: {
        total: 7,
        active: 6,
        suspended: 1,
        byPlan: { free: 2, starter: 2, professional: 2, enterprise: 1 },
        byStatus: { none: 1, trialing: 1, active: 3, past_due: 1, unpaid: 0, canceled: 1 },
      },
      subscriptions: { active: 2, trialing: 1, pastDue: 1 },
      mrr: { amount: 2900 + 8250 + 9900, currency: 'usd' },
      arr: { amount: (2900 + 8250 + 9900) * 12, currency: 'usd' },
      users: { members: 3, activeLast30Days: 1 },
      records: 3,
      apiCalls: { last30Days: 125 },
      newTenants30Days: 7,
      churned30Days: 1,
    });

    const listed = (await ops.admin().get('/v1/workspaces?limit=50').expect(200)).body.data as {
      id: string;
      plan: string;
      billingStatus: string;
      mrr: { amount: number };
    }[];
    const summary = Object.fromEntries(
      listed.map((workspace) => [workspace.id, [workspace.plan, workspace.billingStatus, workspace.mrr.amount]]),
    );
    expect(summary).toEqual({
      [monthly.t.id]: ['starter', 'active', 2900],
      [yearly.t.id]: ['professional', 'active', 8250],
      [trialing.t.id]: ['starter', 'trialing', 0],
      [pastDue.t.id]: ['professional', 'past_due', 9900],
      [canceled.t.id]: ['free', 'canceled', 0],
      [free.id]: ['free', 'none', 0],
      [assigned.id]: ['enterprise', 'active', 0],
    });

    const scraped = (await ops.admin().get('/metrics').expect(200)).text;
    expect(scraped).toMatch(/^cordon_tenants\{status="active"\} 3$/m);
    expect(scraped).toMatch(/^cordon_tenants\{status="canceled"\} 1$/m);
    expect(scraped).toMatch(/^cordon_mrr_minor_units\{currency="usd"\} 21050$/m);

    await ops.http().get('/v1/admin/metrics').expect(401);
    const tenantAdmin = await ops.http().get('/v1/admin/metrics').auth(monthly.t.admin, { type: 'bearer' });
    expect(tenantAdmin.status).toBe(401);
  });
});
