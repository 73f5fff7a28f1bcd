import { sql } from 'kysely';
import type { Scope } from '../../db/database.ts';
import type { Plan } from '../../policy/plans.ts';
import { planLimitReached } from '../../policy/standing.ts';

/**
 * Room for one more member or pending invitation under the plan's members limit (pending,
 * unexpired invitations count: each becomes a member when accepted). Member changes are rare, so
 * every one takes the workspace's members lock exclusively and counts exactly — in a statement
 * after the lock, whose snapshot sees whatever committed while it waited. Held to the end of the
 * transaction, so concurrent adds at the limit − 1 give exactly one success.
 */
export async function requireMemberRoom(scope: Scope, plan: Plan): Promise<void> {
  const limit = plan.limits.members;
  if (limit === null) return;
  await scope.query(
    sql`select pg_advisory_xact_lock(hashtextextended('cordon:members:' || ${scope.workspaceId}::text, 0))`,
  );
  const [row] = await scope.query(
    sql<{ count: string }>`select
        (select count(*) from members m where m.workspace_id = ${scope.workspaceId}::uuid)
        + (select count(*) from invitations i where i.workspace_id = ${scope.workspaceId}::uuid
             and i.status = 'pending' and i.expires_at > now()) as count`,
  );
  const count = Number(row?.count ?? 0);
  if (count >= limit) throw planLimitReached(plan, 'members', count, limit);
}
