import type { z } from 'zod';
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
