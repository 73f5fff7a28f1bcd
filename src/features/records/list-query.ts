import { createHash } from 'node:crypto';
import { z } from 'zod';
import { decodeCursor, encodeCursor } from '../../http/cursor.ts';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import { canonicalUuid, storable } from '../../http/json.ts';
import { parseConditions, type Condition } from '../../policy/conditions.ts';
import { isCanonicalIso, type SqlParameters } from '../../policy/sql-filter.ts';
import { systemFields } from '../../policy/vocabulary.ts';
import { unstorableData } from '../structures/record-schema.ts';

/** How a list is read: the caller's filter, sort and page position, checked against the structure. */

type KeyKind = 'timestamp' | 'uuid' | 'text' | 'json';
export interface SortKey {
  field: string;
  descending: boolean;
  expression: string;
  kind: KeyKind;
}

const systemSortKeys: Record<string, { expression: string; kind: KeyKind }> = {
  createdAt: { expression: 'r.created_at', kind: 'timestamp' },
  updatedAt: { expression: 'r.updated_at', kind: 'timestamp' },
  id: { expression: 'r.id', kind: 'uuid' },
  createdBy: { expression: 'r.created_by collate "C"', kind: 'text' },
};
const casts: Record<KeyKind, string> = { timestamp: 'timestamptz', uuid: 'uuid', text: 'text', json: 'jsonb' };
const maxSortKeys = 3;
export const defaultSort = '-createdAt';

const invalid = (errors: FieldError[]) =>
  new ProblemError('validation_failed', 'The list query is invalid', { errors });

/** `-createdAt,title`: system fields and the structure's own fields; the id breaks ties. */
export function parseSort(sort: string, fieldNames: readonly string[]): SortKey[] {
  const keys: SortKey[] = [];
  for (const token of sort.split(',').map((part) => part.trim())) {
    const match = /^(-?)([A-Za-z][A-Za-z0-9_]{0,63})$/.exec(token);
    const field = match?.[2];
    if (!match || !field)
      throw invalid([
        { pointer: '/sort', in: 'query', detail: `"${token}" is not a field name with an optional leading "-"` },
      ]);
    if (keys.some((key) => key.field === field))
      throw invalid([{ pointer: '/sort', in: 'query', detail: `"${field}" appears twice` }]);
    const system = Object.hasOwn(systemSortKeys, field) ? systemSortKeys[field] : undefined;
    // Field names match ^[a-z][A-Za-z0-9_]*$ (checked when the structure was saved), so quoting them is safe.
    const known =
      system ??
      (fieldNames.includes(field)
        ? { expression: `coalesce(r.data -> '${field}', 'null'::jsonb)`, kind: 'json' as const }
        : undefined);
    if (!known)
      throw invalid([
        { pointer: '/sort', in: 'query', detail: `"${field}" is neither a system field nor a field of this structure` },
      ]);
    keys.push({ field, descending: match[1] === '-', ...known });
  }
  if (keys.length > maxSortKeys)
    throw invalid([{ pointer: '/sort', in: 'query', detail: `sort by at most ${maxSortKeys} fields` }]);
  if (!keys.some((key) => key.field === 'id'))
    keys.push({ field: 'id', descending: keys.at(-1)!.descending, ...systemSortKeys.id! });
  return keys;
}

/** The fields a condition reads at the top level of a record document. */
export function topLevelFields(condition: Condition, into = new Set<string>()): Set<string> {
  if ('conditions' in condition) {
    for (const part of condition.conditions) topLevelFields(part, into);
  } else if (condition.path[0] !== undefined) {
    into.add(condition.path[0]);
  }
  return into;
}

/** The caller's filter: the policy grammar, over the structure's fields and the system fields only. */
export function parseFilter(filter: string, fieldNames: readonly string[]): Condition {
  let query: unknown;
  try {
    query = JSON.parse(filter);
  } catch {
    throw invalid([{ pointer: '/filter', in: 'query', detail: 'is not valid JSON' }]);
  }
  const parsed = parseConditions(query, '/filter');
  if (!parsed.condition) throw invalid(parsed.errors.map((error) => ({ ...error, in: 'query' as const })));
  const unknown = [...topLevelFields(parsed.condition)].filter(
    (field) => !fieldNames.includes(field) && !(systemFields as readonly string[]).includes(field),
  );
  if (unknown.length)
    throw invalid(
      unknown.map((field) => ({
        pointer: '/filter',
        in: 'query' as const,
        detail: `"${field}" is neither a system field nor a field of this structure`,
      })),
    );
  return parsed.condition;
}

const cursorShape = z.object({ q: z.string(), k: z.array(z.unknown()) });

/** Binds a cursor to the exact list it came from: another workspace, structure, sort or filter makes it invalid. */
export const listFingerprint = (workspaceId: string, structure: string, sort: string, filter: string | undefined) =>
  createHash('sha256')
    .update(JSON.stringify([workspaceId, structure, sort, filter ?? null]))
    .digest('base64url')
    .slice(0, 22);

export function encodeListCursor(fingerprint: string, keys: readonly SortKey[], row: Record<string, unknown>): string {
  return encodeCursor({
    q: fingerprint,
    k: keys.map((_, index) => {
      const value = row[`k${index}`];
      return value instanceof Date ? value.toISOString() : value;
    }),
  });
}

const validKey: Record<KeyKind, (value: unknown) => boolean> = {
  timestamp: (value) => typeof value === 'string' && isCanonicalIso(value),
  uuid: (value) => typeof value === 'string' && canonicalUuid.test(value),
  text: (value) => typeof value === 'string' && value.length <= 10_000 && storable(value),
  json: (value) => value !== undefined && unstorableData(value).length === 0,
};

/**
 * The keyset condition after a cursor's position. A cursor only moves the start of the page:
 * the permission and filter conditions are applied anew, so a forged one cannot widen anything.
 */
export function afterCursor(
  cursor: string,
  fingerprint: string,
  keys: readonly SortKey[],
  parameters: SqlParameters,
): string {
  const position = decodeCursor(cursor, cursorShape);
  if (
    position.q !== fingerprint ||
    position.k.length !== keys.length ||
    !keys.every((key, index) => validKey[key.kind](position.k[index]))
  ) {
    throw new ProblemError('invalid_cursor');
  }
  const values = keys.map((key, index) =>
    parameters.add(key.kind === 'json' ? JSON.stringify(position.k[index]) : position.k[index], casts[key.kind]),
  );
  if (keys.every((key) => key.descending === keys[0]!.descending)) {
    return `(${keys.map((key) => key.expression).join(', ')}) ${keys[0]!.descending ? '<' : '>'} (${values.join(', ')})`;
  }
  const branches = keys.map((key, index) => {
    const equal = keys.slice(0, index).map((previous, position) => `${previous.expression} = ${values[position]}`);
    return `(${[...equal, `${key.expression} ${key.descending ? '<' : '>'} ${values[index]}`].join(' and ')})`;
  });
  return `(${branches.join(' or ')})`;
}

export const orderBy = (keys: readonly SortKey[]) =>
  keys.map((key) => `${key.expression} ${key.descending ? 'desc' : 'asc'}`).join(', ');
export const sortColumns = (keys: readonly SortKey[]) =>
  keys.map((key, index) => `${key.expression} as k${index}`).join(', ');
