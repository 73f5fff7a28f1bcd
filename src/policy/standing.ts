import type { TenantBilling } from '../auth/workspace-directory.ts';
import { ProblemError } from '../http/errors.ts';
import type { Plan, Plans } from './plans.ts';

export const billingStatuses = ['none', 'trialing', 'active', 'past_due', 'unpaid', 'canceled'] as const;
export type BillingStatus = (typeof billingStatuses)[number];

const dayMillis = 86_400_000;

/** A workspace without a billing row (none is made without one): the free plan, no subscription. */
export const unbilled: TenantBilling = {
  plan: 'free',
  status: 'none',
  currentPeriodEnd: null,
  graceEndsAt: null,
  updatedAt: new Date(0),
};

/**
 * When a past_due workspace turns read-only: its recorded grace end, or — for a status set without
 * one — BILLING_GRACE_DAYS after the status last changed.
 */
export function graceEnd(billing: TenantBilling, graceDays: number): Date | null {
  if (billing.status !== 'past_due') return null;
  return billing.graceEndsAt ?? new Date(billing.updatedAt.getTime() + graceDays * dayMillis);
}

/** Whether the workspace may change its data now: unpaid, and past_due after its grace, are read-only. */
export function isReadOnly(billing: TenantBilling, graceDays: number, now = new Date()): boolean {
  if (billing.status === 'unpaid') return true;
  if (billing.status !== 'past_due') return false;
  return now >= graceEnd(billing, graceDays)!;
}

/** The plan whose limits apply: a canceled subscription is back on free once its period has ended. */
export function effectivePlan(plans: Plans, billing: TenantBilling, now = new Date()): Plan {
  const ended = !billing.currentPeriodEnd || billing.currentPeriodEnd <= now;
  return plans.of(billing.status === 'canceled' && ended ? 'free' : billing.plan);
}

export const subscriptionInactive = (billing: TenantBilling) =>
  new ProblemError(
    'subscription_inactive',
    billing.status === 'unpaid'
      ? 'The subscription is unpaid: the workspace is read-only until it is paid'
      : 'The subscription is past due and its grace period has ended: the workspace is read-only until it is paid',
  );

/** 402 naming the limit, the plan, the current count and the limit (also as problem extension members). */
export const planLimitReached = (plan: Plan, limitName: string, count: number, limit: number) =>
  new ProblemError(
    'plan_limit_reached',
    `The ${plan.name} plan allows ${limit} ${limitName}; the workspace has ${count}`,
    { extensions: { limit: limitName, plan: plan.id, current: count, maximum: limit } },
  );
