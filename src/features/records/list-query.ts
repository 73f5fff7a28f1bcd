import { createHash } from 'node:crypto';
import { sql, type RawBuilder } from 'kysely';
import { exactTime } from '../../db/exact-time.ts';
import { z } from 'zod';
import { decodeCursor, encodeCursor } from '../../http/cursor.ts';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import { canonicalUuid, storable } from '../../json.ts';
import { parseConditions, type Condition } from '../../policy/conditions.ts';
import type { PrincipalAbility } from '../../policy/ability.ts';
import {
  bothContained,
  containmentDocuments,
  isCanonicalIso,
  recordCondition,
  rulesCondition,
  rulesContainment,
} from '../../policy/sql-filter.ts';
import { systemFields } from '../../policy/vocabulary.ts';
import { unstorableData } from '../structures/record-schema.ts';
import type { KnownStructure } from '../structures/structure-catalog.ts';
import type { PageQuery } from './record-store.ts';
import type { ListQuery } from './records.schema.ts';

/** How a list is read: the caller's filter, sort and page position, checked against the structure. */

type KeyKind = 'timestamp' | 'uuid' | 'text' | 'json';
export interface SortKey {
  field: string;
  descending: boolean;
  expression: Fragment;
  kind: KeyKind;
}
type Fragment = RawBuilder<unknown>;

const systemSortKeys: Record<string, { expression: Fragment; kind: KeyKind }> = {
  createdAt: { expression: sql`r.created_at`, kind: 'timestamp' },
  updatedAt: { expression: sql`r.updated_at`, kind: 'timestamp' },
  id: { expression: sql`r.id`, kind: 'uuid' },
  createdBy: { expression: sql`r.created_by collate "C"`, kind: 'text' },
};
/** A cursor's timestamp as microseconds since the epoch; ISO text in cursors made before they were exact. */
const exactMicros = (value: unknown): value is string => exactTime.schema.safeParse(value).success;
const typed: Record<KeyKind, (value: unknown) => Fragment> = {
  timestamp: (value) => (exactMicros(value) ? exactTime.at(value) : sql`${value}::timestamptz`),
  uuid: (value) => sql`${value}::uuid`,
  text: (value) => sql`${value}::text`,
  json: (value) => sql`${JSON.stringify(value)}::jsonb`,
};
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
    const known =
      system ??
      (fieldNames.includes(field)
        ? { expression: sql`coalesce(r.data -> ${field}::text, 'null'::jsonb)`, kind: 'json' as const }
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
    k: keys.map((_, index) => row[`k${index}`]),
  });
}

const validKey: Record<KeyKind, (value: unknown) => boolean> = {
  timestamp: (value) => exactMicros(value) || (typeof value === 'string' && isCanonicalIso(value)),
  uuid: (value) => typeof value === 'string' && canonicalUuid.test(value),
  text: (value) => typeof value === 'string' && value.length <= 10_000 && storable(value),
  json: (value) => value !== undefined && unstorableData(value).length === 0,
};

/**
 * The keyset condition after a cursor's position. A cursor only moves the start of the page:
 * the permission and filter conditions are applied anew, so a forged one cannot widen anything.
 */
export function afterCursor(cursor: string, fingerprint: string, keys: readonly SortKey[]): Fragment {
  const position = decodeCursor(cursor, cursorShape);
  if (
    position.q !== fingerprint ||
    position.k.length !== keys.length ||
    !keys.every((key, index) => validKey[key.kind](position.k[index]))
  ) {
    throw new ProblemError('invalid_cursor');
  }
  const values = keys.map((key, index) => typed[key.kind](position.k[index]));
  const after = (key: SortKey) => (key.descending ? sql`<` : sql`>`);
  if (keys.every((key) => key.descending === keys[0]!.descending)) {
    return sql`(${sql.join(keys.map((key) => key.expression))}) ${after(keys[0]!)} (${sql.join(values)})`;
  }
  const branches = keys.map((key, index) => {
    const equal = keys.slice(0, index).map((previous, position) => sql`${previous.expression} = ${values[position]}`);
    return sql`(${sql.join([...equal, sql`${key.expression} ${after(key)} ${values[index]}`], sql` and `)})`;
  });
  return sql`(${sql.join(branches, sql` or `)})`;
}

export const orderBy = (keys: readonly SortKey[]) =>
  sql.join(keys.map((key) => sql`${key.expression} ${key.descending ? sql`desc` : sql`asc`}`));
/**
 * The sort keys as `k0`, `k1`…, for the cursor; a timestamp as its exact microseconds (a record
 * imported or written by SQL may hold several in one millisecond: a cursor cut to milliseconds
 * would repeat or skip them).
 */
export const sortColumns = (keys: readonly SortKey[]) =>
  sql.join(
    keys.map(
      (key, index) =>
        sql`${key.kind === 'timestamp' ? exactTime.of(key.expression) : key.expression} as ${sql.id(`k${index}`)}`,
    ),
  );

/** The caller's filter and sort, checked against the structure; `fields` are the structure fields they read. */
export interface ListFilter {
  condition: Condition | undefined;
  keys: SortKey[];
  sort: string;
  fields: string[];
}

export function listFilter(query: ListQuery, structure: Pick<KnownStructure, 'fieldNames'>): ListFilter {
  const sort = query.sort ?? defaultSort;
  const keys = parseSort(sort, structure.fieldNames);
  const condition = query.filter === undefined ? undefined : parseFilter(query.filter, structure.fieldNames);
  const used = new Set([...(condition ? topLevelFields(condition) : []), ...keys.map((key) => key.field)]);
  return { condition, keys, sort, fields: [...used].filter((field) => structure.fieldNames.includes(field)) };
}

/** Sorts that are the order of the (workspace_id, structure, created_at, id) index, either way. */
const inIndexOrder = (keys: readonly SortKey[]) =>
  keys.length === 2 &&
  keys[0]!.field === 'createdAt' &&
  keys[1]!.field === 'id' &&
  keys[0]!.descending === keys[1]!.descending;

/** Candidates from the GIN index serve only sorts in the index's order, either way. */
const documentsIn = (documents: unknown[] | undefined, keys: readonly SortKey[]) =>
  documents && inIndexOrder(keys) ? { documents, descending: keys[0]!.descending } : undefined;

/** One page of the list: after the cursor's position, in sort order, and the cursor after its last row. */
export function listPage(workspaceId: string, structure: string, query: ListQuery, filter: ListFilter) {
  const fingerprint = listFingerprint(workspaceId, structure, filter.sort, query.filter);
  const after = query.cursor ? afterCursor(query.cursor, fingerprint, filter.keys) : undefined;
  const filtered = filter.condition && containmentDocuments(filter.condition);
  return {
    /** The page of the rows `where` permits, of which each contains one of `permittedContaining`, if given. */
    of: (where: Fragment, permittedContaining?: unknown[]): PageQuery => ({
      where,
      after,
      columns: sortColumns(filter.keys),
      orderBy: orderBy(filter.keys),
      limit: query.limit + 1,
      containing: documentsIn(bothContained(filtered, permittedContaining), filter.keys),
    }),
    cursorAfter: (last: Record<string, unknown>) => encodeListCursor(fingerprint, filter.keys, last),
  };
}

/**
 * The principal's read rules as SQL (step 5), and the caller's filter beside them; the reason
 * names the rules that filtered the list.
 */
export function permittedWhere(ability: PrincipalAbility, structure: string, filter: ListFilter) {
  const rules = ability.rulesFor('read', structure);
  const permitted = rulesCondition(rules);
  const where = filter.condition ? sql`${permitted} and ${recordCondition(filter.condition)}` : permitted;
  const ruleIds = rules.map((rule) => `${rule.policyId}#${rule.ruleIndex}${rule.inverted ? ' (deny)' : ''}`);
  return {
    where,
    containing: rulesContainment(rules),
    reason: `list filtered in SQL by rules ${ruleIds.join(', ') || '(none)'}`,
  };
}
