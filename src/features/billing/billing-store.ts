import { sql } from 'kysely';
import type { Database, Scope, Transaction } from '../../db/database.ts';
import type { BillingStatus } from '../../policy/standing.ts';
import type { Subscribed } from './revenue.ts';

export interface BillingRow {
  plan: string;
  status: BillingStatus;
  current_period_end: Date | null;
  cancel_at_period_end: boolean;
  grace_ends_at: Date | null;
  updated_at: Date;
}

export interface Usage {
  /** Members plus pending invitations: what counts toward the members limit. */
  members: number;
  records: Record<string, number>;
  apiCalls: number;
}

/** The first day of the month (UTC) that `at` falls in, as a date: the period API calls count toward. */
export const periodOf = (at: Date): string =>
  new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1)).toISOString().slice(0, 10);

/** The workspace_billing row: written with the workspace, changed by plan assignment (and, later, Stripe). */
export const billingStore = {
  async create(scope: Scope, plan: string): Promise<void> {
    await scope.query(
      sql`insert into workspace_billing (workspace_id, plan, status)
        values (${scope.workspaceId}::uuid, ${plan}, ${plan === 'free' ? 'none' : 'active'})`,
    );
  },

  /**
   * The platform admin's assignment: active, with no period end and no subscription behind it
   * (nothing bills it, so no MRR). The Stripe customer is kept; with Stripe configured the next
   * webhook or reconciliation writes the customer's subscription again, if it has one.
   */
  async assign(scope: Scope, plan: string): Promise<void> {
    await scope.query(
      sql`insert into workspace_billing (workspace_id, plan, status)
        values (${scope.workspaceId}::uuid, ${plan}, 'active')
        on conflict (workspace_id) do update set plan = excluded.plan, status = 'active', current_period_end = null,
          cancel_at_period_end = false, grace_ends_at = null, billing_interval = null, stripe_subscription_id = null,
          ended_at = null, updated_at = now()`,
    );
  },

  async find(scope: Scope): Promise<BillingRow | undefined> {
    const [row] = await scope.query(
      sql<BillingRow>`select plan, status, current_period_end, cancel_at_period_end, grace_ends_at, updated_at
        from workspace_billing where workspace_id = ${scope.workspaceId}::uuid`,
    );
    return row;
  },

  /** Plan, status and subscription of many workspaces (the platform list), through a definer function. */
  async plansOf(
    transaction: Pick<Transaction, 'query'>,
    ids: string[],
  ): Promise<Map<string, Subscribed & { currentPeriodEnd: Date | null }>> {
    if (!ids.length) return new Map();
    const rows = await transaction.query(
      sql<{
        workspace_id: string;
        plan: string;
        status: string;
        billing_interval: string | null;
        subscribed: boolean;
        current_period_end: Date | null;
      }>`select * from cordon_workspace_plans(${ids}::uuid[])`,
    );
    return new Map(
      rows.map((row) => [
        row.workspace_id,
        {
          plan: row.plan,
          status: row.status,
          billingInterval: row.billing_interval,
          subscribed: row.subscribed,
          currentPeriodEnd: row.current_period_end,
        },
      ]),
    );
  },

  /** Records per structure and in all, members with pending invitations, and the month's flushed API calls. */
  async usage(scope: Scope, period: string): Promise<Usage> {
    const [row] = await scope.query(
      sql<{ members: string; records: Record<string, string> | null; api_calls: string | null }>`select
          (select count(*) from members m where m.workspace_id = ${scope.workspaceId}::uuid)
            + (select count(*) from invitations i where i.workspace_id = ${scope.workspaceId}::uuid
                 and i.status = 'pending' and i.expires_at > now()) as members,
          (select json_object_agg(structure, n) from (
             select r.structure, count(*) as n from records r where r.workspace_id = ${scope.workspaceId}::uuid
             group by r.structure) counted) as records,
          (select calls from api_usage u where u.workspace_id = ${scope.workspaceId}::uuid
             and u.period = ${period}::date) as api_calls`,
    );
    const byStructure = Object.entries(row?.records ?? {}).map(([name, count]) => [name, Number(count)] as const);
    return {
      members: Number(row?.members ?? 0),
      records: { '*': byStructure.reduce((sum, [, count]) => sum + count, 0), ...Object.fromEntries(byStructure) },
      apiCalls: Number(row?.api_calls ?? 0),
    };
  },
};

/** A subscription as Stripe reports it, in the columns it sets. */
export interface SubscriptionState {
  plan: string;
  status: BillingStatus;
  interval: 'month' | 'year';
  subscriptionId: string;
  currentPeriodEnd: Date;
  cancelAtPeriodEnd: boolean;
  endedAt: Date | null;
}

/** Stripe's side of the workspace_billing row: the customer, and the subscription state webhooks keep. */
export const stripeStore = {
  async customer(scope: Scope): Promise<{ customer: string | null; subscription: string | null; status: string }> {
    const [row] = await scope.query(
      sql<{ stripe_customer_id: string | null; stripe_subscription_id: string | null; status: string }>`select
          stripe_customer_id, stripe_subscription_id, status
        from workspace_billing where workspace_id = ${scope.workspaceId}::uuid`,
    );
    return {
      customer: row?.stripe_customer_id ?? null,
      subscription: row?.stripe_subscription_id ?? null,
      status: row?.status ?? 'none',
    };
  },

  /** Keeps the first customer stored for the workspace: a second, racing one is not kept. */
  async keepCustomer(scope: Scope, customer: string): Promise<string> {
    const [row] = await scope.query(
      sql<{ stripe_customer_id: string }>`update workspace_billing
        set stripe_customer_id = coalesce(stripe_customer_id, ${customer}), updated_at = now()
        where workspace_id = ${scope.workspaceId}::uuid returning stripe_customer_id`,
    );
    if (!row) throw new Error(`workspace ${scope.workspaceId} has no billing row`);
    return row.stripe_customer_id;
  },

  /** The workspace a Stripe customer was created for, across tenants (a definer function). */
  async workspaceOf(database: Database, customer: string): Promise<string | undefined> {
    const [row] = await database.query(
      sql<{ workspace_id: string | null }>`select cordon_workspace_of_stripe_customer(${customer}) as workspace_id`,
    );
    return row?.workspace_id ?? undefined;
  },

  async customers(database: Database): Promise<{ workspace_id: string; stripe_customer_id: string }[]> {
    return database.query(
      sql<{ workspace_id: string; stripe_customer_id: string }>`select * from cordon_stripe_customers()`,
    );
  },

  /** Records a webhook event's id; false when it was applied before (its effect committed with it). */
  async recordEvent(scope: Scope, event: { id: string; type: string }): Promise<boolean> {
    const rows = await scope.query(
      sql`insert into billing_events (event_id, workspace_id, type) values (${event.id}, ${scope.workspaceId}::uuid, ${event.type})
        on conflict (workspace_id, event_id) do nothing returning event_id`,
    );
    return rows.length === 1;
  },

  /** Holds the row until the transaction ends: one workspace's syncs apply one after the other. */
  async lock(scope: Scope): Promise<void> {
    await scope.query(sql`select 1 from workspace_billing where workspace_id = ${scope.workspaceId}::uuid for update`);
  },

  /**
   * Writes the subscription's state; moving into past_due starts the grace period, any other
   * status ends it. True when anything changed (the caches are told only then).
   */
  async apply(scope: Scope, state: SubscriptionState, graceDays: number): Promise<boolean> {
    const rows = await scope.query(
      sql`update workspace_billing set plan = ${state.plan}, status = ${state.status},
          billing_interval = ${state.interval}, stripe_subscription_id = ${state.subscriptionId},
          current_period_end = ${state.currentPeriodEnd}::timestamptz, cancel_at_period_end = ${state.cancelAtPeriodEnd},
          ended_at = ${state.endedAt}::timestamptz,
          grace_ends_at = case when ${state.status} <> 'past_due' then null
                               when status = 'past_due' then grace_ends_at
                               else now() + make_interval(days => ${graceDays}::integer) end,
          updated_at = now()
        where workspace_id = ${scope.workspaceId}::uuid
          and (plan, status, billing_interval, stripe_subscription_id, current_period_end, cancel_at_period_end, ended_at)
            is distinct from (${state.plan}, ${state.status}, ${state.interval}, ${state.subscriptionId},
              ${state.currentPeriodEnd}::timestamptz, ${state.cancelAtPeriodEnd}, ${state.endedAt}::timestamptz)
        returning 1`,
    );
    return rows.length === 1;
  },

  /** Closed months' API calls not yet reported to the meter, of workspaces with a Stripe customer. */
  async unreportedUsage(
    database: Database,
    since: string,
    before: string,
  ): Promise<{ workspace_id: string; period: string; calls: string; stripe_customer_id: string }[]> {
    return database.query(
      sql<{
        workspace_id: string;
        period: string;
        calls: string;
        stripe_customer_id: string;
      }>`select workspace_id, to_char(period, 'YYYY-MM-DD') as period, calls, stripe_customer_id
        from cordon_unreported_api_usage(${since}::date, ${before}::date)`,
    );
  },

  async markReported(scope: Scope, period: string): Promise<void> {
    await scope.query(
      sql`update api_usage set reported_at = now()
        where workspace_id = ${scope.workspaceId}::uuid and period = ${period}::date and reported_at is null`,
    );
  },
};
