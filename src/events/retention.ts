import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/database.ts';

const batch = 5_000;

/**
 * Deletes events older than `EVENT_RETENTION_HOURS`, finished deliveries and function runs older
 * than `DELIVERY_RETENTION_DAYS`, and the ids of Stripe events applied more than
 * `BILLING_EVENT_RETENTION_DAYS` ago, in batches (no long lock, no giant transaction). Runs as a
 * recurring job on whichever instance takes it.
 */
export async function purgeExpired(
  database: Database,
  logger: Logger,
  retention: { eventHours: number; deliveryDays: number; billingEventDays: number },
): Promise<{ events: number; deliveries: number; runs: number; billingEvents: number }> {
  const total = { events: 0, deliveries: 0, runs: 0, billingEvents: 0 };
  for (;;) {
    const [purged] = await database.query(
      sql<{ events: string; deliveries: string; runs: string }>`select * from cordon_purge_expired(
        now() - make_interval(hours => ${retention.eventHours}::integer),
        now() - make_interval(days => ${retention.deliveryDays}::integer),
        ${batch}::integer)`,
    );
    const counts = {
      events: Number(purged?.events ?? 0),
      deliveries: Number(purged?.deliveries ?? 0),
      runs: Number(purged?.runs ?? 0),
    };
    total.events += counts.events;
    total.deliveries += counts.deliveries;
    total.runs += counts.runs;
    if (counts.events < batch && counts.deliveries < batch && counts.runs < batch) break;
  }
  for (;;) {
    const [row] = await database.query(
      sql<{ purged: string }>`select cordon_purge_billing_events(
        now() - make_interval(days => ${retention.billingEventDays}::integer), ${batch}::integer) as purged`,
    );
    const purged = Number(row?.purged ?? 0);
    total.billingEvents += purged;
    if (purged < batch) break;
  }
  if (Object.values(total).some(Boolean))
    logger.info(total, 'purged expired events, deliveries, runs and billing event ids');
  return total;
}
