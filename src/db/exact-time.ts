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
