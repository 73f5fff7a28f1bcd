import {
  createCustomer,
  createPrice,
  createProduct,
  listCustomers,
  listPrices,
  listProducts,
  updateCustomer,
  updatePrice,
  updateProduct,
} from './catalog.ts';
import { createCheckoutSession, createPortalSession, listCheckoutSessions } from './checkout.ts';
import { StripeApiError } from './errors.ts';
import { createMeter, createMeterEvent, listMeters } from './meters.ts';
import { strings, text } from './params.ts';
import type { Stored } from './shapes.ts';
import type { ApiCall } from './state.ts';
import { cancelSubscription, listInvoices, listSubscriptions, updateSubscription } from './subscriptions.ts';

type Handler = (call: ApiCall) => unknown;

function retrieve(kind: keyof Stored): Handler {
  return ({ state, id }) => state.require(kind, id);
}

function listEvents({ state, params }: ApiCall) {
  const type = text(params, 'type');
  const types = strings(params, 'types');
  const events = [...state.events]
    .reverse()
    .filter((event) => type === undefined || event.type === type)
    .filter((event) => types.length === 0 || types.includes(event.type));
  return state.page(events, params, '/v1/events');
}

/** `:id` matches one path segment; every route is under /v1. */
const routes: [method: string, path: string, handler: Handler][] = [
  ['POST', '/v1/customers', createCustomer],
  ['GET', '/v1/customers', listCustomers],
  ['GET', '/v1/customers/:id', retrieve('customer')],
  ['POST', '/v1/customers/:id', updateCustomer],
  ['POST', '/v1/products', createProduct],
  ['GET', '/v1/products', listProducts],
  ['GET', '/v1/products/:id', retrieve('product')],
  ['POST', '/v1/products/:id', updateProduct],
  ['POST', '/v1/prices', createPrice],
  ['GET', '/v1/prices', listPrices],
  ['GET', '/v1/prices/:id', retrieve('price')],
  ['POST', '/v1/prices/:id', updatePrice],
  ['POST', '/v1/checkout/sessions', createCheckoutSession],
  ['GET', '/v1/checkout/sessions', listCheckoutSessions],
  ['GET', '/v1/checkout/sessions/:id', retrieve('checkout.session')],
  ['POST', '/v1/billing_portal/sessions', createPortalSession],
  ['GET', '/v1/subscriptions', listSubscriptions],
  ['GET', '/v1/subscriptions/:id', retrieve('subscription')],
  ['POST', '/v1/subscriptions/:id', updateSubscription],
  ['DELETE', '/v1/subscriptions/:id', cancelSubscription],
  ['GET', '/v1/invoices', listInvoices],
  ['GET', '/v1/invoices/:id', retrieve('invoice')],
  ['POST', '/v1/billing/meters', createMeter],
  ['GET', '/v1/billing/meters', listMeters],
  ['GET', '/v1/billing/meters/:id', retrieve('billing.meter')],
  ['POST', '/v1/billing/meter_events', createMeterEvent],
  ['GET', '/v1/events', listEvents],
  ['GET', '/v1/events/:id', retrieve('event')],
];

const compiled = routes.map(([method, path, handler]) => ({
  method,
  pattern: new RegExp(`^${path.replace(':id', '([^/]+)')}$`),
  handler,
}));

/** The handler for a request, or Stripe's answer to an unknown URL. */
export function route(method: string, path: string): { handler: Handler; id: string } {
  for (const candidate of compiled) {
    const match = candidate.method === method ? candidate.pattern.exec(path) : null;
    if (match) return { handler: candidate.handler, id: decodeURIComponent(match[1] ?? '') };
  }
  // Stripe's wording for a path it does not serve (onetimesecret/onetimesecret#569).
  throw new StripeApiError(
    404,
    'invalid_request_error',
    `Unrecognized request URL (${method}: ${path}). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.`,
    { saved: false },
  );
}
