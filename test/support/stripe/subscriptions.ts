import { boundary, changes, createInvoice, newItem, planOf } from './billing.ts';
import { StripeApiError } from './errors.ts';
import { cancelNow, setCancelAtPeriodEnd, subscriptionStatuses } from './lifecycle.ts';
import { boolean, integer, list, mergeMetadata, text, type Params } from './params.ts';
import type { Price, Subscription, SubscriptionItem } from './shapes.ts';
import type { ApiCall, StripeState } from './state.ts';

/**
 * Without `status`, every subscription that is not canceled; `ended` is canceled and
 * incomplete_expired; `all` is everything (docs.stripe.com/api/subscriptions/list).
 */
export function listSubscriptions({ state, params }: ApiCall) {
  const customer = text(params, 'customer');
  const price = text(params, 'price');
  const status = text(params, 'status');
  if (
    status !== undefined &&
    status !== 'all' &&
    status !== 'ended' &&
    !subscriptionStatuses.some((s) => s === status)
  ) {
    throw StripeApiError.invalidParam(
      'status',
      `Invalid status: must be one of ${[...subscriptionStatuses, 'ended', 'all'].join(', ')}`,
    );
  }
  const subscriptions = state
    .all('subscription')
    .filter((subscription) => customer === undefined || subscription.customer === customer)
    .filter((subscription) => price === undefined || subscription.items.data.some((item) => item.price.id === price))
    .filter((subscription) => {
      if (status === undefined) return subscription.status !== 'canceled';
      if (status === 'all') return true;
      if (status === 'ended') return subscription.status === 'canceled' || subscription.status === 'incomplete_expired';
      return subscription.status === status;
    });
  return state.page(subscriptions, params, '/v1/subscriptions');
}

const allowedOnCanceled = new Set(['metadata', 'cancellation_details', 'expand']);

/**
 * Changing an item's price keeps its billing period unless the interval changes (month → year):
 * then the billing date resets to now and the new price is invoiced at once
 * (docs.stripe.com/api/subscriptions/update). Prorations themselves are not modelled. When that
 * charge is declined, the default `payment_behavior=allow_incomplete` applies the change and leaves
 * the subscription past_due; `error_if_incomplete` answers 402 and changes nothing (same page).
 */
export function updateSubscription({ state, params, id, origin }: ApiCall): Subscription {
  const subscription = state.require('subscription', id);
  // "A canceled subscription can only update its cancellation_details and metadata." (fjordllc/bootcamp#10390)
  if (subscription.status === 'canceled' && Object.keys(params).some((key) => !allowedOnCanceled.has(key))) {
    throw StripeApiError.invalidRequest(
      'A canceled subscription can only update its cancellation_details and metadata.',
    );
  }
  const metadata = mergeMetadata(subscription.metadata, params);
  const cancelAtPeriodEnd = boolean(params, 'cancel_at_period_end');
  const resolved = resolveItems(itemChanges(params), subscription, state);
  const intervalChanged = resolved.some(({ newInterval }) => newInterval);
  const declined = intervalChanged && state.declinedCustomers.has(subscription.customer as string);
  if (declined && text(params, 'payment_behavior') === 'error_if_incomplete') throw StripeApiError.cardDeclined();

  const before = structuredClone(subscription);
  applyItems(resolved, subscription, state);
  subscription.metadata = metadata;
  if (cancelAtPeriodEnd !== undefined) setCancelAtPeriodEnd(state, subscription, cancelAtPeriodEnd);
  if (intervalChanged) {
    const now = state.now();
    subscription.billing_cycle_anchor = now;
    for (const item of subscription.items.data) {
      item.current_period_start = now;
      item.current_period_end = boundary(now, item.price.recurring!, 1);
    }
    if (subscription.cancel_at_period_end) subscription.cancel_at = subscription.items.data[0]!.current_period_end;
    const invoice = createInvoice(state, subscription, 'subscription_update', !declined);
    if (declined) subscription.status = 'past_due';
    state.emit(declined ? 'invoice.payment_failed' : 'invoice.paid', invoice, undefined, origin);
  }
  state.emit('customer.subscription.updated', subscription, changes(before, subscription), origin);
  return subscription;
}

interface ItemChange {
  index: number;
  id: string | undefined;
  price: string | undefined;
  quantity: number | undefined;
  deleted: boolean;
}

function itemChanges(params: Params): ItemChange[] {
  return list(params, 'items').map((value, index) => {
    if (typeof value !== 'object' || Array.isArray(value)) {
      throw StripeApiError.invalidParam(`items[${index}]`, 'Invalid object');
    }
    return {
      index,
      id: text(value, 'id', false, `items[${index}][id]`),
      price: text(value, 'price', false, `items[${index}][price]`),
      quantity: integer(value, 'quantity', `items[${index}][quantity]`),
      deleted: boolean(value, 'deleted', `items[${index}][deleted]`) ?? false,
    };
  });
}

interface ResolvedChange {
  change: ItemChange;
  price: Price | undefined;
  existing: SubscriptionItem | undefined;
  /** A price of another billing interval replaces the item's. */
  newInterval: boolean;
}

/** Checks every `items[]` entry before any is applied, so a refused update changes nothing. */
function resolveItems(requested: ItemChange[], subscription: Subscription, state: StripeState): ResolvedChange[] {
  const items = subscription.items.data;
  const resolved = requested.map((change) => {
    const param = `items[${change.index}]`;
    const price = change.price ? state.require('price', change.price, `${param}[price]`) : undefined;
    if (price && !price.recurring) {
      throw StripeApiError.invalidParam(
        `${param}[price]`,
        'The price specified is set to `type=one_time` but this field only accepts prices with `type=recurring`.',
      );
    }
    const existing = change.id ? items.find((item) => item.id === change.id) : undefined;
    if (change.id && !existing) throw StripeApiError.noSuch('subscription_item', change.id, `${param}[id]`);
    if (!existing && !price) throw StripeApiError.missingParam(`${param}[price]`);
    const old = existing?.price.recurring;
    const next = price?.recurring;
    const newInterval =
      !change.deleted &&
      old !== undefined &&
      old !== null &&
      next !== undefined &&
      next !== null &&
      (old.interval !== next.interval || old.interval_count !== next.interval_count);
    return { change, price, existing, newInterval };
  });
  const removed = resolved.filter(({ change, existing }) => existing && change.deleted).length;
  const added = resolved.filter(({ existing }) => !existing).length;
  if (items.length - removed + added === 0) {
    throw StripeApiError.invalidParam('items', 'A subscription must have at least one item.');
  }
  return resolved;
}

function applyItems(resolved: ResolvedChange[], subscription: Subscription, state: StripeState): void {
  const items = subscription.items.data;
  const period: [number, number] = [items[0]!.current_period_start, items[0]!.current_period_end];
  for (const { change, price, existing } of resolved) {
    if (!existing) {
      items.push(newItem(state, subscription.id, price!, change.quantity ?? 1, period));
    } else if (change.deleted) {
      items.splice(items.indexOf(existing), 1);
    } else {
      if (price) {
        existing.price = structuredClone(price);
        existing.plan = planOf(price);
      }
      existing.quantity = change.quantity ?? existing.quantity;
    }
  }
  subscription.items.total_count = items.length;
}

/** DELETE /v1/subscriptions/:id. A canceled subscription answers "No such subscription" (stripe/stripe-go#1887). */
export function cancelSubscription({ state, id, origin }: ApiCall): Subscription {
  const subscription = state.require('subscription', id);
  if (subscription.status === 'canceled') throw StripeApiError.noSuch('subscription', id);
  cancelNow(state, subscription, origin);
  return subscription;
}

export function listInvoices({ state, params }: ApiCall) {
  const customer = text(params, 'customer');
  const subscription = text(params, 'subscription');
  const status = text(params, 'status');
  const invoices = state
    .all('invoice')
    .filter((invoice) => customer === undefined || invoice.customer === customer)
    .filter(
      (invoice) => subscription === undefined || invoice.parent?.subscription_details?.subscription === subscription,
    )
    .filter((invoice) => status === undefined || invoice.status === status);
  return state.page(invoices, params, '/v1/invoices');
}
