import { z } from 'zod';
import { billingStatuses } from '../../policy/standing.ts';

const limit = z.number().int().nullable().describe('null: unlimited');

export const limitsResponse = z.object({
  members: limit,
  records: z.record(z.string(), limit).describe('"*": every structure together; a structure name: that structure'),
  apiCallsPerMonth: limit,
});

export const planResponse = z.object({
  id: z.string(),
  name: z.string(),
  prices: z.object({ month: z.number().int(), year: z.number().int() }).describe('In minor units (cents)'),
  currency: z.string(),
  features: z.array(z.string()),
  limits: limitsResponse,
});

export const planListResponse = z.object({ data: z.array(planResponse) });

export const billingResponse = z.object({
  plan: z.string().describe('The plan whose limits apply now: free once a canceled subscription’s period is over'),
  status: z.enum(billingStatuses),
  currentPeriodEnd: z.iso.datetime().nullable(),
  cancelAtPeriodEnd: z.boolean(),
  graceEndsAt: z.iso.datetime().nullable(),
  limits: limitsResponse,
  usage: z.object({
    members: z.number().int().describe('Members plus pending invitations: what counts toward the members limit'),
    records: z.record(z.string(), z.number().int()),
    apiCalls: z.number().int().describe("This month's (UTC) calls"),
  }),
});

export type BillingResponse = z.output<typeof billingResponse>;

const returnUrl = z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }).max(2_000);

export const checkoutBody = z.strictObject({
  plan: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a plan identifier'),
  interval: z.enum(['month', 'year']),
  successUrl: returnUrl,
  cancelUrl: returnUrl,
});

export const portalBody = z.strictObject({ returnUrl });

export const redirectResponse = z.object({ url: z.url().describe("Stripe's page to send the user to") });

export const webhookResponse = z.object({ received: z.literal(true) });

const money = z.object({
  amount: z.number().int().describe('In minor units (cents)'),
  currency: z.string(),
});

export const adminMetricsResponse = z.object({
  tenants: z.object({
    total: z.number().int(),
    active: z.number().int(),
    suspended: z.number().int(),
    byPlan: z.record(z.string(), z.number().int()).describe('The plan whose limits apply now'),
    byStatus: z.record(z.string(), z.number().int()).describe('Subscription status'),
  }),
  subscriptions: z.object({ active: z.number().int(), trialing: z.number().int(), pastDue: z.number().int() }),
  mrr: money.describe("Active and past-due subscriptions' prices, yearly ones divided by 12; trials excluded"),
  arr: money.describe('MRR × 12'),
  users: z.object({
    members: z.number().int(),
    activeLast30Days: z.number().int().describe('Members with a decision of their own in the last 30 days'),
  }),
  records: z.number().int(),
  apiCalls: z.object({
    last30Days: z.number().int().describe('Calls of the calendar months (UTC) that overlap the last 30 days'),
  }),
  newTenants30Days: z.number().int(),
  churned30Days: z.number().int().describe('Subscriptions that ended in the last 30 days'),
});

export type CheckoutBody = z.output<typeof checkoutBody>;
export type PortalBody = z.output<typeof portalBody>;
export type AdminMetricsResponse = z.output<typeof adminMetricsResponse>;
