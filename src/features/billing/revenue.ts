import type { Plans } from '../../policy/plans.ts';

export interface Subscribed {
  plan: string;
  status: string;
  billingInterval: string | null;
  /** Whether a Stripe subscription stands behind the plan (a plan the platform admin assigned bills nothing). */
  subscribed: boolean;
}

/** Statuses whose subscriptions count toward MRR, as Stripe counts it: trials are not revenue yet. */
const earning = new Set(['active', 'past_due']);

/**
 * A workspace's monthly recurring revenue in minor units, unrounded: its plan's price when its
 * subscription is active or past due, a yearly price divided by 12. Sum first, round last.
 */
export function monthlyRevenue(plans: Plans, billing: Subscribed): number {
  if (!billing.subscribed || !earning.has(billing.status)) return 0;
  const plan = plans.find(billing.plan);
  if (!plan) return 0;
  if (billing.billingInterval === 'year') return plan.prices.year / 12;
  if (billing.billingInterval === 'month') return plan.prices.month;
  return 0;
}

/** The currency MRR is stated in: the paid plans' (the plans file names one per plan; Cordon expects one in all). */
export const revenueCurrency = (plans: Plans) =>
  (plans.all.find((plan) => plan.prices.month > 0 || plan.prices.year > 0) ?? plans.all[0]!).currency;
