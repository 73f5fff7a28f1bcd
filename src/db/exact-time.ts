import { sql, type RawBuilder } from 'kysely';
import { z } from 'zod';

/**
 * Keyset cursors carry timestamps as microseconds since the epoch: PostgreSQL keeps microseconds,
 * a JavaScript Date only milliseconds, and a truncated position would repeat or skip rows.
 */
export const exactTime = {
  /** The column as microsecond text, for a cursor. */
  of: (column: RawBuilder<unknown>) => sql<string>`(extract(epoch from ${column}) * 1000000)::bigint::text`,
  /** A cursor's microsecond text as a timestamptz again. */
  at: (micros: string) => sql`(timestamptz 'epoch' + ${micros}::bigint * interval '1 microsecond')`,
  schema: z.string().regex(/^\d{1,18}$/),
};

/**
 * The column as the ISO 8601 text `Date.prototype.toISOString` prints for it (milliseconds,
 * truncated as a Date truncates the microseconds it is parsed from): what the API shows.
 */
export const isoMillis = (column: RawBuilder<unknown>) =>
  sql<string>`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;
