import { Migration } from '@mikro-orm/migrations';

/**
 * Billing state per workspace, and API calls per workspace and month.
 *
 * `workspace_billing` replaces `workspaces.plan`: one row per workspace, written in the
 * transaction that creates the workspace (existing ones are backfilled here), so enforcement
 * joins it without a "no row means free" case. It is a tenant table (RLS, like every row keyed by
 * a workspace); the platform list reads plan and status across tenants through a definer function
 * that returns those two columns only.
 *
 * Records limits take an advisory lock per (workspace, structure) — shared far from the limit,
 * exclusive near it — and count committed rows after the lock: a VOLATILE function takes a fresh
 * snapshot for its count, where a count in the INSERT statement itself would use the snapshot
 * taken before the lock was granted, and miss rows committed while it waited.
 */
export class Migration20261130030000Billing extends Migration {
  override name = 'Migration20261130030000Billing';

  override up(): void {
    this.addSql(`
      create table workspace_billing (
        workspace_id uuid primary key references workspaces (id) on delete cascade,
        plan text not null default 'free',
        status text not null default 'none'
          check (status in ('none', 'trialing', 'active', 'past_due', 'unpaid', 'canceled')),
        current_period_end timestamptz,
        cancel_at_period_end boolean not null default false,
        grace_ends_at timestamptz,
        stripe_customer_id text constraint workspace_billing_stripe_customer_id_key unique,
        stripe_subscription_id text,
        updated_at timestamptz not null default now()
      )`);
    this.addSql(`
      insert into workspace_billing (workspace_id, plan, status)
        select id, plan, case when plan = 'free' then 'none' else 'active' end from workspaces`);
    this.addSql('alter table workspaces drop column plan');

    this.addSql(`
      create table api_usage (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        period date not null check (extract(day from period) = 1),
        calls bigint not null default 0 check (calls >= 0),
        primary key (workspace_id, period)
      )`);

    for (const table of ['workspace_billing', 'api_usage']) {
      this.addSql(`alter table ${table} enable row level security`);
      this.addSql(`
        create policy ${table}_workspace_scope on ${table}
          using (workspace_id = cordon_current_workspace())
          with check (workspace_id = cordon_current_workspace())`);
    }

    this.addSql(`
      create function cordon_workspace_plans(ids uuid[])
        returns table (workspace_id uuid, plan text, status text)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select b.workspace_id, b.plan, b.status from workspace_billing b where b.workspace_id = any(ids) $$`);
    this.addSql('revoke all on function cordon_workspace_plans(uuid[]) from public');

    // Runs as the caller (row-level security applies). A null bound is no limit: no lock, no count.
    this.addSql(`
      create function cordon_records_under_limit(target_workspace uuid, target_structure text, bound bigint, exclusive boolean)
        returns bigint language plpgsql volatile set search_path = public, pg_temp
        as $$
        declare
          lock_key bigint := hashtextextended('cordon:records:' || target_workspace::text || ':' || coalesce(target_structure, '*'), 0);
          counted bigint;
        begin
          if bound is null then
            return 0;
          end if;
          if exclusive then
            perform pg_advisory_xact_lock(lock_key);
          else
            perform pg_advisory_xact_lock_shared(lock_key);
          end if;
          select count(*) into counted from (
            select 1 from records r
            where r.workspace_id = target_workspace and (target_structure is null or r.structure = target_structure)
            limit bound) bounded;
          return counted;
        end $$`);
    this.addSql('revoke all on function cordon_records_under_limit(uuid, text, bigint, boolean) from public');
  }
}
