import type { Database } from '../../db/database.ts';
import type { AccessControl, Caller } from '../../policy/access.ts';
import type { Plans } from '../../policy/plans.ts';
import { effectivePlan, graceEnd } from '../../policy/standing.ts';
import { monthOf, type UsageMeter } from '../../policy/usage-meter.ts';
import { billingStore } from './billing-store.ts';
import type { BillingResponse } from './billing.schema.ts';

/** A workspace's plan, subscription state, limits and usage (subject `Billing`). */
export class BillingService {
  private readonly database: Database;
  private readonly access: AccessControl;
  private readonly plans: Plans;
  private readonly meter: UsageMeter;
  private readonly graceDays: number;

  constructor(
    options: { database: Database; access: AccessControl },
    billing: { plans: Plans; meter: UsageMeter; graceDays: number },
  ) {
    this.database = options.database;
    this.access = options.access;
    this.plans = billing.plans;
    this.meter = billing.meter;
    this.graceDays = billing.graceDays;
  }

  get(caller: Caller): Promise<BillingResponse> {
    return this.access.read(caller, async () => {
      const now = new Date();
      const { row, usage } = await this.database.withWorkspace(
        caller.workspaceId,
        async (scope) => ({
          row: await billingStore.find(scope),
          usage: await billingStore.usage(scope, monthOf(now).period),
        }),
        { readOnly: true },
      );
      const billing = {
        plan: row?.plan ?? 'free',
        status: row?.status ?? 'none',
        currentPeriodEnd: row?.current_period_end ?? null,
        graceEndsAt: row?.grace_ends_at ?? null,
        updatedAt: row?.updated_at ?? now,
      };
      const grace = graceEnd(billing, this.graceDays);
      const plan = effectivePlan(this.plans, billing, now);
      return {
        // The plan whose limits apply: free once a canceled subscription's period is over.
        plan: plan.id,
        status: billing.status,
        currentPeriodEnd: billing.currentPeriodEnd?.toISOString() ?? null,
        cancelAtPeriodEnd: row?.cancel_at_period_end ?? false,
        graceEndsAt: grace?.toISOString() ?? null,
        limits: plan.limits,
        usage: { ...usage, apiCalls: await this.meter.callsThisMonth(caller.workspaceId, now) },
      };
    });
  }
}
