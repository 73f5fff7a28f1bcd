import type { Invoice, InvoiceLine, Plan, Price, Subscription, SubscriptionItem } from './shapes.ts';
import { newId, type StripeState } from './state.ts';

const day = 86_400;

/**
 * The `periods`-th boundary after `anchor`: months and years keep the anchor's day of month,
 * clamped to shorter months (an anchor on the 31st bills on Feb 28 then Mar 31), as Stripe's
 * billing_cycle_anchor does.
 */
export function boundary(anchor: number, recurring: NonNullable<Price['recurring']>, periods: number): number {
  const steps = recurring.interval_count * periods;
  if (recurring.interval === 'day') return anchor + steps * day;
  if (recurring.interval === 'week') return anchor + steps * 7 * day;
  const start = new Date(anchor * 1000);
  const months = recurring.interval === 'year' ? steps * 12 : steps;
  const target = new Date(Date.UTC(start.getUTCFullYear(), start.getUTCMonth() + months, 1));
  const lastDay = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  target.setUTCDate(Math.min(start.getUTCDate(), lastDay));
  target.setUTCHours(start.getUTCHours(), start.getUTCMinutes(), start.getUTCSeconds());
  return Math.floor(target.getTime() / 1000);
}

/** The first boundary after `after`, counting from the subscription's billing_cycle_anchor. */
export function nextBoundary(anchor: number, recurring: NonNullable<Price['recurring']>, after: number): number {
  let periods = 1;
  while (boundary(anchor, recurring, periods) <= after) periods += 1;
  return boundary(anchor, recurring, periods);
}

/** The legacy Plan view every subscription item still carries beside its price. */
export function planOf(price: Price): Plan {
  return {
    id: price.id,
    object: 'plan',
    active: price.active,
    amount: price.unit_amount,
    amount_decimal: price.unit_amount_decimal,
    billing_scheme: 'per_unit',
    created: price.created,
    currency: price.currency,
    interval: price.recurring!.interval,
    interval_count: price.recurring!.interval_count,
    livemode: false,
    metadata: price.metadata,
    meter: price.recurring!.meter,
    nickname: price.nickname,
    product: price.product as string,
    tiers_mode: null,
    transform_usage: null,
    trial_period_days: null,
    usage_type: price.recurring!.usage_type,
  };
}

export function newItem(
  state: StripeState,
  subscription: string,
  price: Price,
  quantity: number,
  period: [number, number],
): SubscriptionItem {
  return {
    id: newId('si_', 14),
    object: 'subscription_item',
    billing_thresholds: null,
    created: state.now(),
    current_period_end: period[1],
    current_period_start: period[0],
    current_trial: null,
    discounts: [],
    metadata: {},
    plan: planOf(price),
    price: structuredClone(price),
    quantity,
    subscription,
    tax_rates: [],
  };
}

export function subscriptionAmount(subscription: Subscription): number {
  return subscription.items.data.reduce((sum, item) => sum + (item.price.unit_amount ?? 0) * (item.quantity ?? 1), 0);
}

export type InvoiceReason = 'subscription_create' | 'subscription_cycle' | 'subscription_update';

/**
 * A finalized invoice for the subscription's current items. Since 2025-03-31.basil it names the
 * subscription only under `parent.subscription_details` (docs.stripe.com/changelog/basil). `paid`
 * settles it at once; otherwise it stays open after one failed attempt.
 */
export function createInvoice(
  state: StripeState,
  subscription: Subscription,
  reason: InvoiceReason,
  paid: boolean,
  options: { amount?: number; accrual?: [number, number] } = {},
): Invoice {
  const now = state.now();
  const amount = options.amount ?? subscriptionAmount(subscription);
  const accrual = options.accrual ?? [now, now];
  const customer = state.get('customer', subscription.customer as string);
  const id = newId('in_');
  const first = subscription.items.data[0]!;
  const lines: InvoiceLine[] = subscription.items.data.map((item) => ({
    id: newId('il_'),
    object: 'line_item',
    amount: amount === 0 ? 0 : (item.price.unit_amount ?? 0) * (item.quantity ?? 1),
    currency: item.price.currency,
    description: `${item.quantity ?? 1} × ${item.price.nickname ?? item.price.product} (at ${item.price.unit_amount})`,
    discount_amounts: [],
    discountable: true,
    discounts: [],
    invoice: id,
    livemode: false,
    metadata: {},
    parent: {
      invoice_item_details: null,
      subscription_item_details: {
        invoice_item: null,
        proration: false,
        proration_details: { credited_items: null },
        subscription: subscription.id,
        subscription_item: item.id,
      },
      type: 'subscription_item_details',
    },
    period: { start: item.current_period_start, end: item.current_period_end },
    pretax_credit_amounts: [],
    pricing: {
      type: 'price_details',
      price_details: { price: item.price.id, product: item.price.product as string },
      unit_amount_decimal: item.price.unit_amount_decimal ?? '0',
    },
    quantity: item.quantity ?? 1,
    subtotal: amount === 0 ? 0 : (item.price.unit_amount ?? 0) * (item.quantity ?? 1),
    taxes: [],
  }));
  const invoice = state.add<Invoice>({
    id,
    object: 'invoice',
    amount_due: amount,
    amount_overpaid: 0,
    amount_paid: paid ? amount : 0,
    amount_remaining: paid ? 0 : amount,
    attempt_count: amount === 0 ? 0 : 1,
    attempted: amount !== 0,
    auto_advance: !paid,
    billing_reason: reason,
    collection_method: 'charge_automatically',
    created: now,
    currency: first.price.currency,
    customer: subscription.customer as string,
    customer_email: customer?.email ?? null,
    customer_name: customer?.name ?? null,
    description: null,
    due_date: null,
    effective_at: now,
    hosted_invoice_url: `${state.baseUrl}/i/${id}`,
    invoice_pdf: `${state.baseUrl}/i/${id}/pdf`,
    lines: { object: 'list', data: lines, has_more: false, total_count: lines.length, url: `/v1/invoices/${id}/lines` },
    livemode: false,
    metadata: {},
    next_payment_attempt: paid ? null : now + 3 * day,
    number: null,
    parent: {
      quote_details: null,
      subscription_details: { metadata: { ...subscription.metadata }, subscription: subscription.id },
      type: 'subscription_details',
    },
    // The window in which invoice items could join this invoice (stripe-node's Invoice.period_end):
    // the period just ended for a renewal, the moment of creation otherwise. The service period is
    // on each line.
    period_end: accrual[1],
    period_start: accrual[0],
    status: paid ? 'paid' : 'open',
    status_transitions: {
      finalized_at: now,
      marked_uncollectible_at: null,
      paid_at: paid ? now : null,
      voided_at: null,
    },
    subtotal: amount,
    total: amount,
    webhooks_delivered_at: now,
  });
  invoice.number = `${customer?.invoice_prefix ?? 'STANDIN'}-${String(state.all('invoice').length).padStart(4, '0')}`;
  subscription.latest_invoice = invoice.id;
  return invoice;
}

export function payInvoice(state: StripeState, invoice: Invoice): void {
  invoice.status = 'paid';
  invoice.amount_paid = invoice.amount_due;
  invoice.amount_remaining = 0;
  invoice.next_payment_attempt = null;
  invoice.status_transitions.paid_at = state.now();
}

/**
 * Event.data.previous_attributes: the old value of every top-level field that changed
 * (docs.stripe.com/api/events/object), computed from a snapshot taken before the change.
 */
export function changes(before: object, after: object): Record<string, unknown> {
  const previous: Record<string, unknown> = {};
  const old = before as Record<string, unknown>;
  for (const [key, value] of Object.entries(after)) {
    if (JSON.stringify(old[key]) !== JSON.stringify(value)) previous[key] = old[key] ?? null;
  }
  return previous;
}
