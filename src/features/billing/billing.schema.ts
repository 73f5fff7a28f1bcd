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
  plan: z.string(),
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
