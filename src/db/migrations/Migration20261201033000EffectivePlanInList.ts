import { Migration } from '@mikro-orm/migrations';

/**
 * The workspace list reports the plan whose limits apply: a canceled subscription is on free once
 * its period has ended, so the list needs the period's end beside the stored plan.
 */
export class Migration20261201033000EffectivePlanInList extends Migration {
  override name = 'Migration20261201033000EffectivePlanInList';

  override up(): void {
    this.addSql('drop function cordon_workspace_plans(uuid[])');
    this.addSql(`
      create function cordon_workspace_plans(ids uuid[])
        returns table (workspace_id uuid, plan text, status text, billing_interval text, subscribed boolean,
          current_period_end timestamptz)
        language sql stable security definer set search_path = public, pg_temp
        as $$ select b.workspace_id, b.plan, b.status, b.billing_interval, b.stripe_subscription_id is not null,
                     b.current_period_end
              from workspace_billing b where b.workspace_id = any(ids) $$`);
    this.addSql('revoke all on function cordon_workspace_plans(uuid[]) from public');
  }
}
