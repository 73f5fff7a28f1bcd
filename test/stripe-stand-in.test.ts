import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import Stripe from 'stripe';
import { StripeStandIn, type StripeEvent } from './support/stripe-stand-in.ts';

/**
 * The stand-in driven only through the real `stripe` client, as Cordon will drive it: if the
 * client accepts these answers, Cordon's billing code meets Stripe's shapes here first.
 */

let standIn: StripeStandIn;
let stripe: Stripe;

beforeAll(async () => {
  standIn = await StripeStandIn.start();
  stripe = standIn.client();
});

afterAll(async () => {
  await standIn.close();
});

interface Plan {
  product: Stripe.Product;
  month: Stripe.Price;
  year: Stripe.Price;
}

/** A plan as Cordon's sync will create it: one product, a monthly and a yearly price found by lookup_key. */
async function createPlan(name: string, monthly: number): Promise<Plan> {
  const id = `cordon_${name}_${randomUUID().slice(0, 8)}`;
  const product = await stripe.products.create({ id, name, metadata: { plan: name } });
  const price = (interval: 'month' | 'year', amount: number) =>
    stripe.prices.create({
      product: product.id,
      currency: 'usd',
      unit_amount: amount,
      recurring: { interval },
      lookup_key: `${id}_${interval}`,
      metadata: { plan: name },
    });
  return { product, month: await price('month', monthly), year: await price('year', monthly * 10) };
}

async function subscribe(price: Stripe.Price, options: { trialDays?: number; status?: 'active' | 'trialing' } = {}) {
  const workspaceId = randomUUID();
  const customer = await stripe.customers.create({ name: 'Acme', metadata: { workspaceId } });
  const session = await stripe.checkout.sessions.create({
    mode: 'subscription',
    customer: customer.id,
    line_items: [{ price: price.id, quantity: 1 }],
    success_url: 'https://app.example/billing/success?session_id={CHECKOUT_SESSION_ID}',
    cancel_url: 'https://app.example/billing',
    client_reference_id: workspaceId,
    subscription_data: {
      metadata: { workspaceId },
      ...(options.trialDays ? { trial_period_days: options.trialDays } : {}),
    },
  });
  const events = standIn.completeCheckout(session.id, options.status ? { status: options.status } : {});
  const subscriptionId = (events[1]!.data.object as { id: string }).id;
  return { workspaceId, customer, session, events, subscription: await stripe.subscriptions.retrieve(subscriptionId) };
}

function oneMonthAfter(seconds: number): number {
  const date = new Date(seconds * 1000);
  date.setUTCMonth(date.getUTCMonth() + 1);
  return date.getTime() / 1000;
}

describe('products and prices', () => {
  it('finds prices by lookup_key, with their product expanded', async () => {
    const plan = await createPlan('starter', 2900);
    const found = await stripe.prices.list({
      lookup_keys: [plan.month.lookup_key!, plan.year.lookup_key!],
      active: true,
      expand: ['data.product'],
    });
    expect(found.object).toBe('list');
    expect(found.url).toBe('/v1/prices');
    expect(found.data.map((price) => price.id).sort()).toEqual([plan.month.id, plan.year.id].sort());
    const monthly = found.data.find((price) => price.id === plan.month.id)!;
    expect(monthly).toMatchObject({
      object: 'price',
      livemode: false,
      currency: 'usd',
      unit_amount: 2900,
      type: 'recurring',
      recurring: { interval: 'month', interval_count: 1, usage_type: 'licensed' },
      product: { object: 'product', id: plan.product.id, name: 'starter' },
    });
  });

  it('also reads curl-style expand[] and lookup_keys[] from the query', async () => {
    const plan = await createPlan('curl', 1000);
    const query = `lookup_keys[]=${plan.month.lookup_key}&expand[]=data.product`;
    const response = await fetch(`${standIn.url}/v1/prices?${query}`, {
      headers: { Authorization: `Bearer ${standIn.secretKey}` },
    });
    const body = (await response.json()) as { data: { id: string; product: { id: string } }[] };
    expect(body.data).toHaveLength(1);
    expect(body.data[0]).toMatchObject({ id: plan.month.id, product: { id: plan.product.id } });
  });

  it('refuses a lookup_key another price holds, unless transfer_lookup_key moves it', async () => {
    const plan = await createPlan('pro', 9900);
    const { subscription } = await subscribe(plan.month);
    const again = {
      product: plan.product.id,
      currency: 'usd',
      unit_amount: 10900,
      recurring: { interval: 'month' as const },
    };
    const refusal = stripe.prices.create({ ...again, lookup_key: plan.month.lookup_key! });
    await expect(refusal).rejects.toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    await expect(refusal).rejects.toMatchObject({
      statusCode: 400,
      message: `A price (\`${plan.month.id}\`) already uses that lookup key.`,
    });
    const moved = await stripe.prices.create({
      ...again,
      lookup_key: plan.month.lookup_key!,
      transfer_lookup_key: true,
    });
    const found = await stripe.prices.list({ lookup_keys: [plan.month.lookup_key!] });
    expect(found.data.map((price) => price.id)).toEqual([moved.id]);
    expect((await stripe.prices.retrieve(plan.month.id)).lookup_key).toBeNull();
    // The old price keeps its metadata and product; its subscribers' items show it without the key.
    const [item] = (await stripe.subscriptions.retrieve(subscription.id)).items.data;
    expect(item!.price).toMatchObject({
      id: plan.month.id,
      lookup_key: null,
      metadata: { plan: 'pro' },
      product: plan.product.id,
    });
  });

  it('refuses a product id that is taken', async () => {
    const plan = await createPlan('taken', 100);
    await expect(stripe.products.create({ id: plan.product.id, name: 'again' })).rejects.toMatchObject({
      type: 'StripeInvalidRequestError',
      code: 'resource_already_exists',
    });
  });
});

describe('idempotency', () => {
  it('creates one customer for one key and replays the first answer', async () => {
    const key = randomUUID();
    const email = `${randomUUID()}@example.com`;
    const first = await stripe.customers.create({ email, metadata: { workspaceId: 'w1' } }, { idempotencyKey: key });
    const second = await stripe.customers.create({ email, metadata: { workspaceId: 'w1' } }, { idempotencyKey: key });
    expect(second.id).toBe(first.id);
    expect(second.lastResponse.headers['idempotent-replayed']).toBe('true');
    expect(first.lastResponse.headers['idempotent-replayed']).toBeUndefined();
    expect((await stripe.customers.list({ email })).data).toHaveLength(1);
    const posts = standIn.requests.filter((request) => request.idempotencyKey === key);
    expect(posts.map((request) => [request.method, request.path, request.replayed])).toEqual([
      ['POST', '/v1/customers', false],
      ['POST', '/v1/customers', true],
    ]);
  });

  it('refuses the same key with other parameters', async () => {
    const key = randomUUID();
    await stripe.customers.create({ name: 'one' }, { idempotencyKey: key });
    const reuse = stripe.customers.create({ name: 'two' }, { idempotencyKey: key });
    await expect(reuse).rejects.toBeInstanceOf(Stripe.errors.StripeIdempotencyError);
    await expect(reuse).rejects.toMatchObject({ statusCode: 400, rawType: 'idempotency_error' });
  });

  it('keys every POST the client sends, even without one given', async () => {
    await stripe.customers.create({ name: 'unkeyed' });
    expect(standIn.requests.at(-1)!.idempotencyKey).toMatch(/^stripe-node-retry-/);
  });
});

describe('checkout and subscriptions', () => {
  it('turns a completed Checkout Session into a subscription whose period is on its item', async () => {
    const plan = await createPlan('starter', 2900);
    const { workspaceId, customer, session, events, subscription } = await subscribe(plan.month);
    expect(session).toMatchObject({ object: 'checkout.session', status: 'open', payment_status: 'unpaid' });
    expect(session.id).toMatch(/^cs_test_/);
    expect(session.url!.startsWith(`${standIn.url}/`)).toBe(true);
    expect((await fetch(session.url!)).status).toBe(200);
    expect(events.map((event) => event.type)).toEqual([
      'checkout.session.completed',
      'customer.subscription.created',
      'invoice.paid',
    ]);

    expect(subscription).toMatchObject({
      object: 'subscription',
      status: 'active',
      customer: customer.id,
      metadata: { workspaceId },
      cancel_at_period_end: false,
      trial_end: null,
    });
    expect(subscription).not.toHaveProperty('current_period_end');
    const item = subscription.items.data[0]!;
    expect(item.id).toMatch(/^si_/);
    expect(item.price).toMatchObject({ id: plan.month.id, unit_amount: 2900 });
    expect(item.current_period_start).toBe(subscription.start_date);
    expect(item.current_period_end).toBe(oneMonthAfter(item.current_period_start));

    const invoice = events[2]!.data.object as unknown as Stripe.Invoice;
    expect(invoice).not.toHaveProperty('subscription');
    expect(invoice).toMatchObject({
      object: 'invoice',
      status: 'paid',
      customer: customer.id,
      amount_paid: 2900,
      billing_reason: 'subscription_create',
      parent: { type: 'subscription_details', subscription_details: { subscription: subscription.id } },
    });
    const expanded = await stripe.subscriptions.retrieve(subscription.id, { expand: ['latest_invoice'] });
    expect(expanded.latest_invoice).toMatchObject({ id: invoice.id, object: 'invoice' });
    expect(await stripe.checkout.sessions.retrieve(session.id)).toMatchObject({
      status: 'complete',
      payment_status: 'paid',
      subscription: subscription.id,
    });
  });

  it('starts a trial from subscription_data[trial_period_days]', async () => {
    const plan = await createPlan('trial', 2900);
    const { events, subscription } = await subscribe(plan.month, { trialDays: 7 });
    expect(subscription.status).toBe('trialing');
    expect(subscription.trial_end! - subscription.trial_start!).toBe(7 * 86_400);
    expect(subscription.items.data[0]!.current_period_end).toBe(subscription.trial_end);
    expect((events[2]!.data.object as unknown as Stripe.Invoice).amount_paid).toBe(0);
    expect((events[0]!.data.object as unknown as Stripe.Checkout.Session).payment_status).toBe('no_payment_required');
  });

  it("lists a customer's subscriptions page by page, canceled ones only when asked", async () => {
    const plan = await createPlan('paging', 500);
    const first = await subscribe(plan.month);
    const customer = first.customer.id;
    const ids = [first.subscription.id];
    for (let index = 0; index < 2; index += 1) {
      const session = await stripe.checkout.sessions.create({
        mode: 'subscription',
        customer,
        line_items: [{ price: plan.month.id, quantity: 1 }],
      });
      ids.push((standIn.completeCheckout(session.id)[1]!.data.object as { id: string }).id);
    }
    await stripe.subscriptions.cancel(ids[0]!);

    const page = await stripe.subscriptions.list({ customer, limit: 1 });
    expect(page).toMatchObject({ object: 'list', has_more: true, url: '/v1/subscriptions' });
    expect(page.data.map((subscription) => subscription.id)).toEqual([ids[2]]);
    const next = await stripe.subscriptions.list({ customer, limit: 1, starting_after: ids[2] });
    expect(next.data.map((subscription) => subscription.id)).toEqual([ids[1]]);
    expect(next.has_more).toBe(false);

    const all = await stripe.subscriptions.list({ customer, status: 'all' }).autoPagingToArray({ limit: 10 });
    expect(all.map((subscription) => subscription.id)).toEqual([...ids].reverse());
    const canceled = await stripe.subscriptions.list({ customer, status: 'canceled' });
    expect(canceled.data.map((subscription) => [subscription.id, subscription.status])).toEqual([[ids[0], 'canceled']]);
  });

  it("upgrades by changing the item's price: same period, or a new one for another interval", async () => {
    const starter = await createPlan('starter', 2900);
    const professional = await createPlan('professional', 9900);
    const { subscription } = await subscribe(starter.month);
    const item = subscription.items.data[0]!;
    const eventsBefore = standIn.events.length;

    const upgraded = await stripe.subscriptions.update(subscription.id, {
      items: [{ id: item.id, price: professional.month.id }],
    });
    expect(upgraded.items.data).toHaveLength(1);
    expect(upgraded.items.data[0]).toMatchObject({
      id: item.id,
      price: { id: professional.month.id, unit_amount: 9900 },
      current_period_start: item.current_period_start,
      current_period_end: item.current_period_end,
    });
    const updated = standIn.events.slice(eventsBefore);
    expect(updated.map((event) => event.type)).toEqual(['customer.subscription.updated']);
    expect(updated[0]!.data.previous_attributes).toHaveProperty('items');
    expect(updated[0]!.request).toEqual({ id: upgraded.lastResponse.requestId, idempotency_key: expect.any(String) });

    const yearly = await stripe.subscriptions.update(subscription.id, {
      items: [{ id: item.id, price: professional.year.id }],
    });
    const period = yearly.items.data[0]!;
    expect(period.current_period_end - period.current_period_start).toBeGreaterThanOrEqual(365 * 86_400);
    expect(standIn.events.at(-2)!.type).toBe('invoice.paid');
  });

  it('answers a declined immediate charge with 402 when asked to, and goes past_due by default', async () => {
    const plan = await createPlan('declined', 2900);
    const { customer, subscription } = await subscribe(plan.month);
    const toYearly = { items: [{ id: subscription.items.data[0]!.id, price: plan.year.id }] };
    standIn.declinePayments(customer.id);

    const strict = stripe.subscriptions.update(subscription.id, {
      ...toYearly,
      payment_behavior: 'error_if_incomplete',
    });
    await expect(strict).rejects.toBeInstanceOf(Stripe.errors.StripeCardError);
    await expect(strict).rejects.toMatchObject({
      statusCode: 402,
      code: 'card_declined',
      decline_code: 'generic_decline',
    });
    expect((await stripe.subscriptions.retrieve(subscription.id)).items.data[0]!.price.id).toBe(plan.month.id);

    const lenient = await stripe.subscriptions.update(subscription.id, toYearly);
    expect(lenient.status).toBe('past_due');
    expect(standIn.events.at(-2)!.type).toBe('invoice.payment_failed');
  });

  it('cancels at period end, ends with the period, and then refuses changes', async () => {
    const plan = await createPlan('leaving', 2900);
    const { subscription } = await subscribe(plan.month);
    const scheduled = await stripe.subscriptions.update(subscription.id, { cancel_at_period_end: true });
    expect(scheduled).toMatchObject({
      status: 'active',
      cancel_at_period_end: true,
      cancel_at: subscription.items.data[0]!.current_period_end,
    });
    const [ended] = standIn.advancePeriod(subscription.id);
    expect(ended!.type).toBe('customer.subscription.deleted');
    expect((await stripe.subscriptions.retrieve(subscription.id)).status).toBe('canceled');
    await expect(stripe.subscriptions.update(subscription.id, { cancel_at_period_end: false })).rejects.toMatchObject({
      type: 'StripeInvalidRequestError',
      message: 'A canceled subscription can only update its cancellation_details and metadata.',
    });
  });

  it('goes past_due on a failed charge and back to active when the invoice is paid', async () => {
    const plan = await createPlan('late', 2900);
    const { subscription } = await subscribe(plan.month);
    const failed = standIn.setSubscriptionStatus(subscription.id, 'past_due');
    expect(failed.map((event) => event.type)).toEqual(['invoice.payment_failed', 'customer.subscription.updated']);
    expect(failed[1]!.data.previous_attributes).toMatchObject({ status: 'active' });
    expect((await stripe.subscriptions.retrieve(subscription.id)).status).toBe('past_due');
    const invoice = await stripe.invoices.retrieve((failed[0]!.data.object as { id: string }).id);
    expect(invoice).toMatchObject({ status: 'open', attempted: true, amount_remaining: 2900 });

    const paid = standIn.setSubscriptionStatus(subscription.id, 'active');
    expect(paid.map((event) => event.type)).toEqual(['invoice.paid', 'customer.subscription.updated']);
    expect((await stripe.invoices.retrieve(invoice.id)).status).toBe('paid');

    const renewal = standIn.advancePeriod(subscription.id, { paid: false });
    expect(renewal.map((event) => event.type)).toEqual(['invoice.payment_failed', 'customer.subscription.updated']);
    const renewed = await stripe.subscriptions.retrieve(subscription.id);
    expect(renewed.status).toBe('past_due');
    expect(renewed.items.data[0]!.current_period_start).toBe(subscription.items.data[0]!.current_period_end);
  });

  it('opens the customer portal for a customer', async () => {
    const customer = await stripe.customers.create({ name: 'Portal' });
    const portal = await stripe.billingPortal.sessions.create({
      customer: customer.id,
      return_url: 'https://app.example',
    });
    expect(portal).toMatchObject({ object: 'billing_portal.session', customer: customer.id });
    expect(portal.url.startsWith(`${standIn.url}/p/session/bps_`)).toBe(true);
  });
});

describe('billing meters', () => {
  it('accepts a meter event once per identifier and refuses the repeat as Stripe does', async () => {
    const eventName = `api_calls_${randomUUID().slice(0, 8)}`;
    const meter = await stripe.billing.meters.create({
      display_name: 'API calls',
      event_name: eventName,
      default_aggregation: { formula: 'sum' },
      customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
      value_settings: { event_payload_key: 'value' },
    });
    expect(meter).toMatchObject({ object: 'billing.meter', status: 'active', event_name: eventName });
    expect((await stripe.billing.meters.list()).data.map((found) => found.id)).toContain(meter.id);

    const customer = await stripe.customers.create({ name: 'Metered' });
    const identifier = `w1:api_calls:2026-11`;
    const report = () =>
      stripe.billing.meterEvents.create({
        event_name: eventName,
        payload: { stripe_customer_id: customer.id, value: '1200' },
        identifier,
      });
    const accepted = await report();
    expect(accepted).toMatchObject({ object: 'billing.meter_event', identifier, payload: { value: '1200' } });

    const repeat = report();
    await expect(repeat).rejects.toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    await expect(repeat).rejects.toMatchObject({
      statusCode: 400,
      code: undefined,
      message: `An event already exists with identifier ${identifier}.`,
    });
    const reached = standIn.meterEvents.filter((event) => event.identifier === identifier);
    expect(reached).toEqual([
      expect.objectContaining({ meter: meter.id, payload: { stripe_customer_id: customer.id, value: '1200' } }),
    ]);
  });
});

describe('errors', () => {
  it('answers a missing object with resource_missing, which the client raises as StripeInvalidRequestError', async () => {
    const missing = stripe.customers.retrieve('cus_missing');
    await expect(missing).rejects.toBeInstanceOf(Stripe.errors.StripeInvalidRequestError);
    await expect(missing).rejects.toMatchObject({
      statusCode: 404,
      code: 'resource_missing',
      param: 'id',
      message: "No such customer: 'cus_missing'",
    });
  });

  it('names the parameter that is missing or refers to nothing', async () => {
    await expect(stripe.checkout.sessions.create({ mode: 'subscription' })).rejects.toMatchObject({
      code: 'parameter_missing',
      param: 'line_items',
    });
    await expect(
      stripe.checkout.sessions.create({ mode: 'subscription', line_items: [{ price: 'price_nope', quantity: 1 }] }),
    ).rejects.toMatchObject({ statusCode: 400, code: 'resource_missing', param: 'line_items[0][price]' });
  });

  it('refuses a key it does not know with 401', async () => {
    const stranger = new Stripe('sk_test_someone_else_123456', standIn.clientOptions);
    await expect(stranger.customers.list()).rejects.toBeInstanceOf(Stripe.errors.StripeAuthenticationError);
  });
});

describe('webhook deliveries', () => {
  const secret = `whsec_${randomUUID().replaceAll('-', '')}`;
  const received: Stripe.Event[] = [];
  let server: Server;
  let endpoint: string;

  beforeAll(async () => {
    // A receiver written as Stripe tells integrators to write one: the raw body, constructEvent.
    const app = express();
    app.post('/webhook', express.raw({ type: 'application/json' }), (request, response) => {
      try {
        received.push(stripe.webhooks.constructEvent(request.body as Buffer, request.get('stripe-signature')!, secret));
        response.status(200).end();
      } catch {
        response.status(400).end();
      }
    });
    server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}/webhook`;
  });

  afterAll(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  async function checkoutEvents(): Promise<StripeEvent[]> {
    const plan = await createPlan('hooks', 2900);
    return (await subscribe(plan.month)).events;
  }

  it('signs every event so that constructEvent accepts it', async () => {
    const events = await checkoutEvents();
    for (const event of events) expect(await standIn.send(event, endpoint, { secret })).toBe(200);
    const delivered = received.slice(-events.length);
    expect(delivered.map((event) => event.id)).toEqual(events.map((event) => event.id));
    expect(delivered[1]).toMatchObject({
      object: 'event',
      type: 'customer.subscription.created',
      api_version: Stripe.API_VERSION,
      livemode: false,
    });
  });

  it('is refused when tampered with, signed with another secret, or older than the tolerance', async () => {
    const [event] = await checkoutEvents();
    const count = received.length;
    const now = Math.floor(Date.now() / 1000);
    const tamper = (payload: string) => payload.replace('"livemode": false', '"livemode": true');
    expect(await standIn.send(event!, endpoint, { secret, tamper })).toBe(400);
    expect(await standIn.send(event!, endpoint, { secret: 'whsec_forged' })).toBe(400);
    expect(await standIn.send(event!, endpoint, { secret, timestamp: now - 301 })).toBe(400);
    expect(received).toHaveLength(count);
    expect(await standIn.send(event!, endpoint, { secret, timestamp: now - 240 })).toBe(200);
  });
});
