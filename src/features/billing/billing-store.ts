import { sql } from 'kysely';
import type { Scope, Transaction } from '../../db/database.ts';
import type { BillingStatus } from '../../policy/standing.ts';

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

  /** The platform admin's assignment: active, with no period end (nothing bills it). */
  async assign(scope: Scope, plan: string): Promise<void> {
    await scope.query(
      sql`insert into workspace_billing (workspace_id, plan, status)
        values (${scope.workspaceId}::uuid, ${plan}, 'active')
        on conflict (workspace_id) do update set plan = excluded.plan, status = 'active', current_period_end = null,
          cancel_at_period_end = false, grace_ends_at = null, updated_at = now()`,
    );
  },

  /**
   * A status change as a subscription reports it: moving into past_due starts the grace period
   * (BILLING_GRACE_DAYS), any other status ends it.
   */
  async setStatus(scope: Scope, status: BillingStatus, graceDays: number): Promise<void> {
    await scope.query(
      sql`update workspace_billing set status = ${status},
          grace_ends_at = case when ${status} <> 'past_due' then null
                               when status = 'past_due' then grace_ends_at
                               else now() + make_interval(days => ${graceDays}::integer) end,
          updated_at = now()
        where workspace_id = ${scope.workspaceId}::uuid`,
    );
  },

  async find(scope: Scope): Promise<BillingRow | undefined> {
    const [row] = await scope.query(
      sql<BillingRow>`select plan, status, current_period_end, cancel_at_period_end, grace_ends_at, updated_at
        from workspace_billing where workspace_id = ${scope.workspaceId}::uuid`,
    );
    return row;
  },

  /** Plan and status of many workspaces (the platform list), through a definer function. */
  async plansOf(
    transaction: Pick<Transaction, 'query'>,
    ids: string[],
  ): Promise<Map<string, { plan: string; status: string }>> {
    if (!ids.length) return new Map();
    const rows = await transaction.query(
      sql<{ workspace_id: string; plan: string; status: string }>`select * from cordon_workspace_plans(${ids}::uuid[])`,
    );
    return new Map(rows.map((row) => [row.workspace_id, { plan: row.plan, status: row.status }]));
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
