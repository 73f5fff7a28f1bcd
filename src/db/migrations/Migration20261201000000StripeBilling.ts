import { Migration } from '@mikro-orm/migrations';

/**
 * Subscriptions from Stripe. `workspace_billing` learns the billing interval (for MRR) and when a
 * canceled subscription ended (for churn); `billing_events` holds the id of every webhook event
 * applied, written in the transaction of its effect so an event is applied once; `api_usage`
 * records when a month's calls were reported to Stripe's meter.
 *
 * The serving role reads across tenants only through definer functions that return what the
 * caller needs: the workspace of a Stripe customer, the customers to reconcile, the months to
 * report, and the per-workspace billing columns the operator's metrics add up (one row per
 * workspace: a sum over them cannot be multiplied by a join).
 */
export class Migration20261201000000StripeBilling extends Migration {
  override name = 'Migration20261201000000StripeBilling';

  override up(): void {
    this.addSql(`
      alter table workspace_billing
        add column billing_interval text check (billing_interval in ('month', 'year')),
        add column ended_at timestamptz`);
    this.addSql('alter table api_usage add column reported_at timestamptz');

    this.addSql(`
      create table billing_events (
        event_id text primary key,
        workspace_id uuid not null references workspaces (id) on delete cascade,
        type text not null,
        received_at timestamptz not null default now()
      )`);
    this.addSql('create index billing_events_workspace_idx on billing_events (workspace_id, received_at)');
    this.addSql('alter table billing_events enable row level security');
    this.addSql(`
      create policy billing_events_workspace_scope on billing_events
        using (workspace_id = cordon_current_workspace())
        with check (workspace_id = cordon_current_workspace())`);

    this.addSql('drop function cordon_workspace_plans(uuid[])');
    this.addSql(`
      create function cordon_workspace_plans(ids uuid[])
        returns table (workspace_id uuid, plan text, status text, billing_interval text, subscribed boolean)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select b.workspace_id, b.plan, b.status, b.billing_interval, b.stripe_subscription_id is not null
              from workspace_billing b where b.workspace_id = any(ids) $$`);
    this.addSql('revoke all on function cordon_workspace_plans(uuid[]) from public');

    this.addSql(`
      create function cordon_workspace_of_stripe_customer(customer text)
        returns uuid language sql stable security definer set search_path = public, pg_temp
        as $$ select b.workspace_id from workspace_billing b where b.stripe_customer_id = customer $$`);
    this.addSql('revoke all on function cordon_workspace_of_stripe_customer(text) from public');

    this.addSql(`
      create function cordon_stripe_customers()
        returns table (workspace_id uuid, stripe_customer_id text)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select b.workspace_id, b.stripe_customer_id from workspace_billing b
              where b.stripe_customer_id is not null order by b.workspace_id $$`);
    this.addSql('revoke all on function cordon_stripe_customers() from public');

    this.addSql(`
      create function cordon_unreported_api_usage(since date, before date)
        returns table (workspace_id uuid, period date, calls bigint, stripe_customer_id text)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select u.workspace_id, u.period, u.calls, b.stripe_customer_id
              from api_usage u join workspace_billing b on b.workspace_id = u.workspace_id
              where u.reported_at is null and u.period >= since and u.period < before
                and b.stripe_customer_id is not null and u.calls > 0
              order by u.period, u.workspace_id $$`);
    this.addSql('revoke all on function cordon_unreported_api_usage(date, date) from public');

    this.addSql(`
      create function cordon_billing_overview()
        returns table (workspace_id uuid, workspace_status text, created_at timestamptz, plan text, status text,
          billing_interval text, subscribed boolean, current_period_end timestamptz, ended_at timestamptz)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select w.id, w.status, w.created_at, coalesce(b.plan, 'free'), coalesce(b.status, 'none'),
                     b.billing_interval, coalesce(b.stripe_subscription_id is not null, false),
                     b.current_period_end, b.ended_at
              from workspaces w left join workspace_billing b on b.workspace_id = w.id $$`);
    this.addSql('revoke all on function cordon_billing_overview() from public');

    // Members active in the window: those with a decision of their own in it (any workspace).
    this.addSql(`
      create function cordon_platform_totals(window_start timestamptz)
        returns table (members bigint, active_members bigint, records bigint, api_calls bigint)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select
                (select count(*) from members),
                (select count(*) from members m where exists (
                   select 1 from decisions d where d.workspace_id = m.workspace_id and d.principal_id = m.user_id
                     and d.at >= window_start)),
                (select count(*) from records),
                (select coalesce(sum(u.calls), 0)::bigint from api_usage u
                   where u.period >= date_trunc('month', window_start)::date) $$`);
    this.addSql('revoke all on function cordon_platform_totals(timestamptz) from public');
  }
}
