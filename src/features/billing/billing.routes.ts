import type { Api } from '../../http/api.ts';
import type { Plans } from '../../policy/plans.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { BillingService } from './billing.service.ts';
import type { OperatorMetrics } from './operator-metrics.ts';
import {
  adminMetricsResponse,
  billingResponse,
  checkoutBody,
  planListResponse,
  portalBody,
  redirectResponse,
  webhookResponse,
} from './billing.schema.ts';
import { billingNotConfigured } from './stripe-client.ts';
import type { StripeBilling } from './stripe-billing.service.ts';

const tag = 'Billing';
const unconfigured = { 503: { description: 'Stripe is not configured (billing_not_configured)' } };

export function billingRoutes(
  api: Api,
  billing: BillingService,
  plans: Plans,
  options: { stripe: StripeBilling | undefined; metrics: OperatorMetrics },
): void {
  const { stripe, metrics } = options;
  const configured = () => stripe ?? throwing(billingNotConfigured());
  api.route(
    {
      method: 'get',
      path: '/v1/plans',
      summary: 'The plans, their prices and limits (null: unlimited)',
      tag,
      security: 'none',
      responses: { 200: { description: 'Every plan', schema: planListResponse } },
    },
    (_input, _request, response) => {
      response.json({ data: plans.all });
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/billing',
      summary: "The workspace's plan, subscription status, limits and usage",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject: 'Billing', operation: 'get' },
      beyondQuota: true,
      params: workspaceParams,
      responses: { 200: { description: 'Plan, status, limits and usage', schema: billingResponse } },
    },
    async ({ caller }, _request, response) => {
      response.json(await billing.get(caller));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/billing/checkout',
      summary: 'Start a Stripe Checkout for a paid plan; the subscription it creates is kept by webhooks',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject: 'Billing', operation: 'update' },
      beyondQuota: true,
      params: workspaceParams,
      body: checkoutBody,
      responses: {
        200: { description: "The Checkout page's URL", schema: redirectResponse },
        409: { description: 'The workspace has a subscription already: use the portal' },
        ...unconfigured,
      },
    },
    async ({ caller, body }, _request, response) => {
      response.json(await configured().checkout(caller, body));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/billing/portal',
      summary: "Open Stripe's customer portal (plan changes, payment methods, invoices, cancelation)",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject: 'Billing', operation: 'update' },
      beyondQuota: true,
      params: workspaceParams,
      body: portalBody,
      responses: { 200: { description: "The portal session's URL", schema: redirectResponse }, ...unconfigured },
    },
    async ({ caller, body }, _request, response) => {
      response.json(await configured().portal(caller, body));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/billing/webhook',
      summary: "Stripe's webhook: the raw event body, verified against its Stripe-Signature header",
      tag,
      security: 'none',
      responses: {
        200: { description: 'Received (applied once, or not about a Cordon customer)', schema: webhookResponse },
        400: { description: 'Signature invalid or older than 5 minutes (webhook_signature_invalid)' },
        ...unconfigured,
      },
    },
    async (_input, request, response) => {
      const payload = Buffer.isBuffer(request.body) ? request.body : Buffer.alloc(0);
      response.json(await configured().receive(payload, request.get('stripe-signature')));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/admin/metrics',
      summary: 'Tenants, subscriptions, MRR and usage across every workspace',
      tag: 'Workspaces',
      security: 'admin',
      responses: { 200: { description: 'The SaaS metrics', schema: adminMetricsResponse } },
    },
    async (_input, _request, response) => {
      response.json(await metrics.compute());
    },
  );
}

function throwing(error: Error): never {
  throw error;
}
