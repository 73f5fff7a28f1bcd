import { Migration } from '@mikro-orm/migrations';

/**
 * The operator's totals without a scan of the big tables. Records come from `record_counts` (the
 * counters the records triggers keep: their sum is the number of committed records). Members
 * active in the window get an index to probe, one (workspace, principal) at a time, instead of
 * walking a workspace's whole decision log per member.
 *
 * The index costs every decision append one more b-tree insert, and its build holds inserts into
 * `decisions` (every request's) until it is done: on a large log, create it beforehand with
 * `create index concurrently if not exists decisions_workspace_principal_at_idx on decisions
 * (workspace_id, principal_id, at)`, and this migration finds it.
 */
export class Migration20261201036000OperatorTotals extends Migration {
  override name = 'Migration20261201036000OperatorTotals';

  override up(): void {
    this.addSql(
      'create index if not exists decisions_workspace_principal_at_idx on decisions (workspace_id, principal_id, at)',
    );
    this.addSql(`
      create or replace function cordon_platform_totals(window_start timestamptz)
        returns table (members bigint, active_members bigint, records bigint, api_calls bigint)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select
                (select count(*) from members),
                (select count(*) from members m where exists (
                   select 1 from decisions d where d.workspace_id = m.workspace_id and d.principal_id = m.user_id
                     and d.at >= window_start)),
                (select coalesce(sum(c.records), 0)::bigint from record_counts c),
                (select coalesce(sum(u.calls), 0)::bigint from api_usage u
                   where u.period >= date_trunc('month', window_start)::date) $$`);
    this.addSql('revoke all on function cordon_platform_totals(timestamptz) from public');
  }
}
