import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/database.ts';

const batch = 5_000;

/**
 * Deletes events older than `EVENT_RETENTION_HOURS`, and finished deliveries and function runs
 * older than `DELIVERY_RETENTION_DAYS`, in batches (no long lock, no giant transaction). Runs as a
 * recurring job on whichever instance takes it.
 */
export async function purgeExpired(
  database: Database,
  logger: Logger,
  retention: { eventHours: number; deliveryDays: number },
): Promise<{ events: number; deliveries: number; runs: number }> {
  const total = { events: 0, deliveries: 0, runs: 0 };
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
  if (total.events || total.deliveries || total.runs) logger.info(total, 'purged expired events, deliveries and runs');
  return total;
}
