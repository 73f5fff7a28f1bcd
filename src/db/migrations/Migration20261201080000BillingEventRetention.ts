import { Migration } from '@mikro-orm/migrations';

/**
 * `billing_events` keeps the id of every Stripe webhook event applied, so a redelivery is applied
 * once. Stripe redelivers for three days (and the dashboard resends events of the last 30), so
 * old ids need not be kept: the retention job deletes them, in batches, across workspaces, as the
 * owner (the serving role has no delete on the table).
 */
export class Migration20261201080000BillingEventRetention extends Migration {
  override name = 'Migration20261201080000BillingEventRetention';

  override up(): void {
    this.addSql(`
      create function cordon_purge_billing_events(received_before timestamptz, batch integer) returns bigint
        language plpgsql security definer set search_path = public, pg_temp
        as $$
        declare purged bigint;
        begin
          delete from billing_events where ctid in (
            select ctid from billing_events where received_at < received_before limit batch);
          get diagnostics purged = row_count;
          return purged;
        end $$`);
    this.addSql('revoke all on function cordon_purge_billing_events(timestamptz, integer) from public');
  }
}
