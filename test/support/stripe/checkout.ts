import { StripeApiError } from './errors.ts';
import { integer, list, mergeMetadata, object, text } from './params.ts';
import type { CheckoutSession, PortalSession } from './shapes.ts';
import { newId, type ApiCall, type CheckoutIntent } from './state.ts';

/**
 * POST /v1/checkout/sessions in `subscription` mode, the only mode Cordon uses. The session is
 * `open` and `unpaid` until a test completes it; it expires after 24 hours as Stripe's default
 * (docs.stripe.com/api/checkout/sessions/create#create_checkout_session-expires_at).
 */
export function createCheckoutSession({ state, params }: ApiCall): CheckoutSession {
  const mode = text(params, 'mode', true);
  if (mode !== 'subscription') {
    throw StripeApiError.invalidParam('mode', `The Stripe stand-in supports only mode=subscription, not ${mode}.`);
  }
  const customer = text(params, 'customer');
  const customerEmail = text(params, 'customer_email');
  if (customer !== undefined && customerEmail !== undefined) {
    throw StripeApiError.invalidRequest('You may only specify one of these parameters: customer, customer_email.', {
      param: 'customer_email',
    });
  }
  if (customer !== undefined) state.require('customer', customer, 'customer');
  const lineItems = list(params, 'line_items').map((value, index) => {
    const param = `line_items[${index}]`;
    if (typeof value !== 'object' || Array.isArray(value)) throw StripeApiError.invalidParam(param, 'Invalid object');
    const price = state.require('price', text(value, 'price', true, `${param}[price]`), `${param}[price]`);
    if (!price.recurring) {
      throw StripeApiError.invalidParam(
        `${param}[price]`,
        'You must provide at least one recurring price in `subscription` mode when using prices.',
      );
    }
    const quantity = integer(value, 'quantity', `${param}[quantity]`);
    if (quantity === undefined) throw StripeApiError.missingParam(`${param}[quantity]`);
    return { price, quantity };
  });
  if (lineItems.length === 0) throw StripeApiError.missingParam('line_items');
  const subscriptionData = object(params, 'subscription_data') ?? {};
  const trialPeriodDays = integer(subscriptionData, 'trial_period_days', 'subscription_data[trial_period_days]');
  if (trialPeriodDays !== undefined && trialPeriodDays < 1) {
    throw StripeApiError.invalidParam(
      'subscription_data[trial_period_days]',
      'This value must be greater than or equal to 1.',
      'parameter_invalid_integer',
    );
  }
  const intent: CheckoutIntent = {
    lineItems: lineItems.map(({ price, quantity }) => ({ price: price.id, quantity })),
    subscriptionMetadata: mergeMetadata({}, subscriptionData),
    trialPeriodDays: trialPeriodDays ?? null,
  };
  const amount = trialPeriodDays
    ? 0
    : lineItems.reduce((sum, { price, quantity }) => sum + (price.unit_amount ?? 0) * quantity, 0);
  const now = state.now();
  const id = newId('cs_test_', 58);
  state.checkoutIntents.set(id, intent);
  return state.add<CheckoutSession>({
    id,
    object: 'checkout.session',
    amount_subtotal: amount,
    amount_total: amount,
    cancel_url: text(params, 'cancel_url') ?? null,
    client_reference_id: text(params, 'client_reference_id') ?? null,
    created: now,
    currency: lineItems[0]!.price.currency,
    customer: customer ?? null,
    customer_creation: null,
    customer_email: customerEmail ?? null,
    expires_at: now + 24 * 3600,
    invoice: null,
    livemode: false,
    locale: null,
    metadata: mergeMetadata({}, params),
    mode: 'subscription',
    payment_intent: null,
    payment_method_types: ['card'],
    payment_status: 'unpaid',
    setup_intent: null,
    status: 'open',
    subscription: null,
    success_url: text(params, 'success_url') ?? null,
    ui_mode: 'hosted_page',
    url: `${state.baseUrl}/c/pay/${id}`,
  });
}

export function listCheckoutSessions({ state, params }: ApiCall) {
  const customer = text(params, 'customer');
  const subscription = text(params, 'subscription');
  const status = text(params, 'status');
  const sessions = state
    .all('checkout.session')
    .filter((session) => customer === undefined || session.customer === customer)
    .filter((session) => subscription === undefined || session.subscription === subscription)
    .filter((session) => status === undefined || session.status === status);
  return state.page(sessions, params, '/v1/checkout/sessions');
}

/** POST /v1/billing_portal/sessions: a short-lived link to the customer portal. */
export function createPortalSession({ state, params }: ApiCall): PortalSession {
  const customer = state.require('customer', text(params, 'customer', true), 'customer');
  const id = newId('bps_');
  return state.add<PortalSession>({
    id,
    object: 'billing_portal.session',
    configuration: state.portalConfiguration,
    created: state.now(),
    customer: customer.id,
    customer_account: null,
    flow: null,
    livemode: false,
    locale: null,
    on_behalf_of: null,
    return_url: text(params, 'return_url') ?? null,
    url: `${state.baseUrl}/p/session/${id}`,
  });
}
