import { z } from 'zod';
import { ProblemError } from './errors.ts';

/** Opaque keyset cursors: base64url JSON, checked against a schema when they come back. */
export const encodeCursor = (position: unknown): string => Buffer.from(JSON.stringify(position)).toString('base64url');

export function decodeCursor<Schema extends z.ZodType>(cursor: string, schema: Schema): z.output<Schema> {
  let position: unknown;
  try {
    position = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw new ProblemError('invalid_cursor');
  }
  const parsed = schema.safeParse(position);
  if (!parsed.success) throw new ProblemError('invalid_cursor');
  return parsed.data;
}

/**
 * One page of a keyset list read with `limit + 1` rows: the extra row only says that there is
 * more, and the last row shown gives the next cursor.
 */
export function keysetPage<Row>(
  rows: Row[],
  limit: number,
  cursorOf: (last: Row) => string,
): { shown: Row[]; nextCursor: string | null } {
  if (rows.length <= limit) return { shown: rows, nextCursor: null };
  const shown = rows.slice(0, limit);
  return { shown, nextCursor: cursorOf(shown.at(-1)!) };
}

/** `count=true`: the answer says how many items the list's filters select, across all pages. */
const count = z
  .enum(['true', 'false'])
  .default('false')
  .transform((value) => value === 'true');

/** A page of a list: `limit` rows after `cursor`, and with `count=true` how many there are in all. */
export const pageQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(1_000).optional(),
  count,
});
export type PageQuery = z.output<typeof pageQuery>;

/**
 * The query of a list that answers every item at once. Not strict: such a list ignored its query
 * before it took `count`, and a `limit` sent to it is still ignored (docs/api.md says so).
 */
export const wholeListQuery = z.object({ count });
export type WholeListQuery = z.output<typeof wholeListQuery>;

/** The answer of a list that never pages: every item, no next page, and with `count=true` how many. */
export const wholeList = <Item>(data: Item[], query: WholeListQuery) => ({
  data,
  nextCursor: null,
  ...(query.count && { count: data.length }),
});
