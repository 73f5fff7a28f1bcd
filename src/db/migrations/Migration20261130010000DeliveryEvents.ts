import { Migration } from '@mikro-orm/migrations';

/**
 * A delivery carries its own copy of the event it delivers. Events are kept
 * EVENT_RETENTION_HOURS (72 by default) while a delivery may still be retried after that (about 3
 * days of retries) or redelivered by hand for DELIVERY_RETENTION_DAYS (30): the body must not
 * depend on the event log still holding the event.
 *
 * A redelivery starts the retry schedule again: `round_start` is the number of attempts made
 * before the current round, and `redeliveries`/`redelivered_at`/`redelivered_by` say in the
 * delivery log who asked for it again, and when.
 *
 * `claimed_until`: the drain job attempting a delivery claims it for a while, so a second job of
 * the same stream (graphile-worker adds one when a key is added while its job runs) leaves the
 * stream to the first instead of delivering out of order; a claim outlives a killed instance only
 * until it lapses.
 */
export class Migration20261130010000DeliveryEvents extends Migration {
  override name = 'Migration20261130010000DeliveryEvents';

  override up(): void {
    // No release wrote deliveries (the delivery task comes with this migration): nothing is lost.
    this.addSql('delete from delivery_attempts');
    this.addSql('delete from deliveries');
    this.addSql(`
      alter table deliveries
        add column event jsonb not null,
        add column round_start integer not null default 0,
        add column redeliveries integer not null default 0,
        add column redelivered_at timestamptz,
        add column redelivered_by text,
        add column claimed_until timestamptz`);
  }
}
