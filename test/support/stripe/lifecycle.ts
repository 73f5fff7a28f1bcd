import { boundary, changes, createInvoice, newItem, nextBoundary, payInvoice } from './billing.ts';
import type { CheckoutSession, StripeEvent, Subscription } from './shapes.ts';
import { newId, type CheckoutIntent, type RequestOrigin, type StripeState } from './state.ts';

/** Statuses per docs.stripe.com/api/subscriptions/object#subscription_object-status. */
export const subscriptionStatuses = [
  'trialing',
  'active',
  'past_due',
  'unpaid',
  'canceled',
  'incomplete',
  'incomplete_expired',
  'paused',
] as const;
export type SubscriptionStatus = (typeof subscriptionStatuses)[number];

const day = 86_400;
const automatic: RequestOrigin = { id: null, idempotency_key: null };

export function periodEnd(subscription: Subscription): number {
  return Math.max(...subscription.items.data.map((item) => item.current_period_end));
}

/**
 * The subscription a completed Checkout Session creates: metadata from `subscription_data`, a
 * trial from `subscription_data[trial_period_days]` (or 14 days when a test asks for `trialing`),
 * and its first invoice, paid ($0 during a trial). Flexible billing mode is the default for
 * subscriptions created since 2025-09-30.clover (docs.stripe.com/changelog/clover/2025-09-30/billing-mode-default-flexible).
 */
export function startSubscription(
  state: StripeState,
  session: CheckoutSession,
  intent: CheckoutIntent,
  requested?: 'active' | 'trialing',
): Subscription {
  const now = state.now();
  const status = requested ?? (intent.trialPeriodDays ? 'trialing' : 'active');
  const trialEnd = status === 'trialing' ? now + (intent.trialPeriodDays ?? 14) * day : null;
  const anchor = trialEnd ?? now;
  const id = newId('sub_');
  const items = intent.lineItems.map(({ price, quantity }) => {
    const stored = state.require('price', price);
    return newItem(state, id, stored, quantity, [now, trialEnd ?? boundary(anchor, stored.recurring!, 1)]);
  });
  const subscription = state.add<Subscription>({
    id,
    object: 'subscription',
    application: null,
    application_fee_percent: null,
    automatic_tax: { disabled_reason: null, enabled: false, liability: null },
    billing_cycle_anchor: anchor,
    billing_cycle_anchor_config: null,
    billing_mode: { flexible: { proration_discounts: 'included' }, type: 'flexible', updated_at: now },
    billing_thresholds: null,
    cancel_at: null,
    cancel_at_period_end: false,
    canceled_at: null,
    cancellation_details: { comment: null, feedback: null, feedback_option: null, reason: null },
    collection_method: 'charge_automatically',
    created: now,
    currency: items[0]!.price.currency,
    customer: session.customer as string,
    days_until_due: null,
    default_payment_method: newId('pm_'),
    default_source: null,
    description: null,
    discounts: [],
    ended_at: null,
    items: {
      object: 'list',
      data: items,
      has_more: false,
      total_count: items.length,
      url: `/v1/subscription_items?subscription=${id}`,
    },
    latest_invoice: null,
    livemode: false,
    metadata: { ...intent.subscriptionMetadata },
    pause_collection: null,
    pending_setup_intent: null,
    pending_update: null,
    schedule: null,
    start_date: now,
    status,
    test_clock: null,
    trial_end: trialEnd,
    trial_start: trialEnd ? now : null,
  });
  createInvoice(state, subscription, 'subscription_create', true, trialEnd ? { amount: 0 } : {});
  return subscription;
}

/** Immediate cancelation: status canceled, ended now (DELETE /v1/subscriptions/:id). */
export function cancelNow(state: StripeState, subscription: Subscription, origin = automatic): StripeEvent[] {
  const now = state.now();
  subscription.status = 'canceled';
  subscription.canceled_at = now;
  subscription.ended_at = now;
  subscription.cancellation_details = { ...subscription.cancellation_details!, reason: 'cancellation_requested' };
  return [state.emit('customer.subscription.deleted', subscription, undefined, origin)];
}

/**
 * `cancel_at_period_end`: the subscription stays in force until its period ends. canceled_at
 * records when the cancelation was asked for, not when it takes effect
 * (docs.stripe.com/api/subscriptions/object#subscription_object-canceled_at).
 */
export function setCancelAtPeriodEnd(state: StripeState, subscription: Subscription, atPeriodEnd: boolean): void {
  subscription.cancel_at_period_end = atPeriodEnd;
  subscription.cancel_at = atPeriodEnd ? periodEnd(subscription) : null;
  subscription.canceled_at = atPeriodEnd ? state.now() : null;
  subscription.cancellation_details = {
    ...subscription.cancellation_details!,
    reason: atPeriodEnd ? 'cancellation_requested' : null,
  };
}

/** Applies `change` and records customer.subscription.updated with the old values. */
export function update(
  state: StripeState,
  subscription: Subscription,
  change: () => void,
  origin = automatic,
): StripeEvent {
  const before = structuredClone(subscription);
  change();
  return state.emit('customer.subscription.updated', subscription, changes(before, subscription), origin);
}

/**
 * The end of the current period: a subscription set to cancel at period end ends; any other
 * renews into its next period with a renewal invoice, paid (trial over, past_due cleared) or
 * failed (past_due).
 */
export function renew(state: StripeState, subscription: Subscription, paid: boolean): StripeEvent[] {
  if (subscription.status === 'canceled') {
    throw new Error(`${subscription.id} is canceled: there is no next period`);
  }
  if (subscription.cancel_at_period_end) {
    subscription.status = 'canceled';
    subscription.ended_at = periodEnd(subscription);
    return [state.emit('customer.subscription.deleted', subscription)];
  }
  const before = structuredClone(subscription);
  const first = subscription.items.data[0]!;
  const ended: [number, number] = [first.current_period_start, first.current_period_end];
  for (const item of subscription.items.data) {
    const start = item.current_period_end;
    item.current_period_start = start;
    item.current_period_end = nextBoundary(subscription.billing_cycle_anchor, item.price.recurring!, start);
  }
  const invoice = createInvoice(state, subscription, 'subscription_cycle', paid, { accrual: ended });
  subscription.status = paid ? 'active' : 'past_due';
  const invoiceEvent = state.emit(paid ? 'invoice.paid' : 'invoice.payment_failed', invoice);
  const updated = state.emit('customer.subscription.updated', subscription, changes(before, subscription));
  return [invoiceEvent, updated];
}

/**
 * Moves a subscription to `status` the way Stripe gets there: past_due through a failed renewal
 * invoice (invoice.payment_failed), back to active by paying the open invoice (invoice.paid),
 * canceled by ending it (customer.subscription.deleted); other statuses are set as they are.
 */
export function changeStatus(
  state: StripeState,
  subscription: Subscription,
  status: SubscriptionStatus,
): StripeEvent[] {
  if (!subscriptionStatuses.includes(status)) throw new Error(`unknown subscription status ${status}`);
  if (subscription.status === 'canceled') throw new Error(`${subscription.id} is canceled and stays canceled`);
  if (status === 'canceled') return cancelNow(state, subscription);
  const events: StripeEvent[] = [];
  const before = structuredClone(subscription);
  const latest = subscription.latest_invoice ? state.get('invoice', subscription.latest_invoice as string) : undefined;
  if (status === 'past_due') {
    events.push(state.emit('invoice.payment_failed', createInvoice(state, subscription, 'subscription_cycle', false)));
  } else if (status === 'active' && latest?.status === 'open') {
    payInvoice(state, latest);
    events.push(state.emit('invoice.paid', latest));
  }
  const wasPaused = subscription.status === 'paused';
  subscription.status = status;
  if (status === 'paused' && !wasPaused) events.push(state.emit('customer.subscription.paused', subscription));
  if (wasPaused && status !== 'paused') events.push(state.emit('customer.subscription.resumed', subscription));
  events.push(state.emit('customer.subscription.updated', subscription, changes(before, subscription)));
  return events;
}
