import { createCustomer } from './catalog.ts';
import {
  cancelNow,
  changeStatus,
  renew,
  setCancelAtPeriodEnd,
  startSubscription,
  update,
  type SubscriptionStatus,
} from './lifecycle.ts';
import type { Params } from './params.ts';
import type { StripeEvent, Subscription } from './shapes.ts';
import type { StripeState } from './state.ts';

/**
 * What a test does in Stripe's place: a customer paying at Checkout, a renewal, a failed charge,
 * a cancelation. Each returns the events Stripe would send for it, in the order generated; Stripe
 * itself does not promise delivery order (docs.stripe.com/webhooks#event-ordering), so a test may
 * send them in any order. Only the events Cordon's endpoint subscribes to are generated.
 */
export function completeCheckout(state: StripeState, sessionId: string, status?: 'active' | 'trialing'): StripeEvent[] {
  const session = state.get('checkout.session', sessionId);
  if (!session) throw new Error(`no checkout session ${sessionId}`);
  if (session.status !== 'open') throw new Error(`checkout session ${sessionId} is ${session.status}, not open`);
  if (!session.customer) {
    const params: Params = session.customer_email ? { email: session.customer_email } : {};
    session.customer = createCustomer({ state, params, id: '', origin: { id: null, idempotency_key: null } }).id;
  }
  const subscription = startSubscription(state, session, state.checkoutIntents.get(sessionId)!, status);
  const invoice = state.require('invoice', subscription.latest_invoice as string);
  session.status = 'complete';
  session.payment_status = invoice.amount_due === 0 ? 'no_payment_required' : 'paid';
  session.subscription = subscription.id;
  session.invoice = invoice.id;
  return [
    state.emit('checkout.session.completed', session),
    state.emit('customer.subscription.created', subscription),
    state.emit('invoice.paid', invoice),
  ];
}

function subscriptionOf(state: StripeState, id: string): Subscription {
  const subscription = state.get('subscription', id);
  if (!subscription) throw new Error(`no subscription ${id}`);
  return subscription;
}

export function setSubscriptionStatus(state: StripeState, id: string, status: SubscriptionStatus): StripeEvent[] {
  return changeStatus(state, subscriptionOf(state, id), status);
}

/** The current period ends: renewal (paid or failed), or the end of a subscription set to cancel. */
export function advancePeriod(state: StripeState, id: string, paid = true): StripeEvent[] {
  return renew(state, subscriptionOf(state, id), paid);
}

export function cancel(state: StripeState, id: string, atPeriodEnd: boolean): StripeEvent[] {
  const subscription = subscriptionOf(state, id);
  if (subscription.status === 'canceled') throw new Error(`${id} is already canceled`);
  if (!atPeriodEnd) return cancelNow(state, subscription);
  return [update(state, subscription, () => setCancelAtPeriodEnd(state, subscription, true))];
}
