import { sql } from 'kysely';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Database } from '../../db/database.ts';
import type { Plans } from '../../policy/plans.ts';
import { billingStatuses, effectivePlan } from '../../policy/standing.ts';
import type { AdminMetricsResponse } from './billing.schema.ts';
import { monthlyRevenue, revenueCurrency } from './revenue.ts';

interface OverviewRow {
  workspace_id: string;
  workspace_status: string;
  created_at: Date;
  plan: string;
  status: string;
  billing_interval: string | null;
  subscribed: boolean;
  current_period_end: Date | null;
  ended_at: Date | null;
}

interface TotalsRow {
  members: string;
  active_members: string;
  records: string;
  api_calls: string;
}

const dayMillis = 86_400_000;
const cacheMillis = 5_000;

type Overview = Omit<AdminMetricsResponse, 'users' | 'records' | 'apiCalls'>;

/**
 * The operator's view across tenants (GET /v1/admin/metrics and the Prometheus gauges): one
 * billing row per workspace from a definer function, added up here, so no join can count a
 * subscription twice. The gauges need only that overview; the totals of members, records and API
 * calls are read for the admin route alone.
 */
export class OperatorMetrics {
  private readonly database: Database;
  private readonly plans: Plans;
  private cached: { at: number; value: Promise<Overview> } | undefined;

  constructor(database: Database, plans: Plans) {
    this.database = database;
    this.plans = plans;
  }

  async compute(now = new Date()): Promise<AdminMetricsResponse> {
    const windowStart = new Date(now.getTime() - 30 * dayMillis);
    const [overview, [totals]] = await Promise.all([
      this.overview(now),
      this.database.query(sql<TotalsRow>`select * from cordon_platform_totals(${windowStart}::timestamptz)`),
    ]);
    return {
      ...overview,
      users: { members: Number(totals?.members ?? 0), activeLast30Days: Number(totals?.active_members ?? 0) },
      records: Number(totals?.records ?? 0),
      apiCalls: { last30Days: Number(totals?.api_calls ?? 0) },
    };
  }

  /** Tenants, subscriptions and revenue: one row per workspace, nothing counted in the big tables. */
  async overview(now = new Date()): Promise<Overview> {
    const windowStart = new Date(now.getTime() - 30 * dayMillis);
    const rows = await this.database.query(sql<OverviewRow>`select * from cordon_billing_overview()`);
    const byPlan: Record<string, number> = Object.fromEntries(this.plans.all.map((plan) => [plan.id, 0]));
    const byStatus: Record<string, number> = Object.fromEntries(billingStatuses.map((status) => [status, 0]));
    const subscriptions = { active: 0, trialing: 0, pastDue: 0 };
    let mrr = 0;
    let suspended = 0;
    let newTenants = 0;
    let churned = 0;
    for (const row of rows) {
      const billing = {
        plan: row.plan,
        status: row.status,
        currentPeriodEnd: row.current_period_end,
        graceEndsAt: null,
        updatedAt: now,
      };
      const plan = effectivePlan(this.plans, billing, now).id;
      byPlan[plan] = (byPlan[plan] ?? 0) + 1;
      byStatus[row.status] = (byStatus[row.status] ?? 0) + 1;
      if (row.workspace_status === 'suspended') suspended += 1;
      if (row.created_at >= windowStart) newTenants += 1;
      if (row.subscribed) {
        if (row.status === 'active') subscriptions.active += 1;
        if (row.status === 'trialing') subscriptions.trialing += 1;
        if (row.status === 'past_due') subscriptions.pastDue += 1;
        if (row.status === 'canceled' && row.ended_at && row.ended_at >= windowStart) churned += 1;
      }
      mrr += monthlyRevenue(this.plans, { ...row, billingInterval: row.billing_interval });
    }
    const amount = Math.round(mrr);
    const currency = revenueCurrency(this.plans);
    return {
      tenants: { total: rows.length, active: rows.length - suspended, suspended, byPlan, byStatus },
      subscriptions,
      mrr: { amount, currency },
      arr: { amount: amount * 12, currency },
      newTenants30Days: newTenants,
      churned30Days: churned,
    };
  }

  /** Scrapes within a few seconds share one overview. */
  private recent(): Promise<Overview> {
    if (!this.cached || Date.now() - this.cached.at > cacheMillis) {
      this.cached = { at: Date.now(), value: this.overview() };
      this.cached.value.catch(() => (this.cached = undefined));
    }
    return this.cached.value;
  }

  /** Gauges of tenants by subscription status and of MRR, computed when Prometheus scrapes. */
  register(registry: Registry, logger: Logger): void {
    const recent = () => this.recent();
    new Gauge({
      name: 'cordon_tenants',
      help: 'Workspaces by subscription status',
      labelNames: ['status'],
      registers: [registry],
      async collect() {
        try {
          const value = await recent();
          for (const [status, count] of Object.entries(value.tenants.byStatus)) this.set({ status }, count);
        } catch (error) {
          logger.warn({ err: error }, 'tenant gauges not updated');
        }
      },
    });
    new Gauge({
      name: 'cordon_mrr_minor_units',
      help: 'Monthly recurring revenue (active and past-due subscriptions, yearly prices / 12), in minor units',
      labelNames: ['currency'],
      registers: [registry],
      async collect() {
        try {
          const value = await recent();
          this.reset();
          this.set({ currency: value.mrr.currency }, value.mrr.amount);
        } catch (error) {
          logger.warn({ err: error }, 'MRR gauge not updated');
        }
      },
    });
  }
}
