import { sql, type RawBuilder } from 'kysely';
import { isoMillis } from '../db/exact-time.ts';
import { canonicalUuid } from '../json.ts';
import { matches, type CompareOperator, type Condition, type Scalar } from './conditions.ts';

/**
 * The SQL half of the agreement: a condition AST (policy conditions and list filters alike)
 * compiled into a boolean SQL expression over one `records` row that holds exactly when
 * `matches(condition, document)` does, where the document is the record's data plus its system
 * fields. Data is reached with SQL/JSON paths in lax mode, whose member accessor steps through
 * one level of array per segment as MongoDB does; everything lax mode would do beyond that (a
 * filter unwrapping a nested array, a comparison unwrapping its operand, `.size()` of a scalar)
 * is shut out with explicit `.type()` guards. Values travel as bound parameters or as JSON
 * literals inside a bound jsonpath, never spliced into the SQL text.
 */

type Fragment = RawBuilder<unknown>;

/** A predicate folded to a constant where compilation can already tell, else an SQL fragment. */
type Predicate = Fragment | boolean;
/** Boolean jsonpath text (it travels inside a bound jsonpath parameter, never in the SQL text). */
type PathPredicate = string | boolean;

const sqlConstant = (value: Predicate): Fragment => (value === true ? sql`true` : value === false ? sql`false` : value);

function combine(parts: Predicate[], joiner: 'and' | 'or'): Predicate {
  const absorbing = joiner === 'or';
  if (parts.includes(absorbing)) return absorbing;
  const open = parts.filter((part): part is Fragment => typeof part !== 'boolean');
  if (open.length === 0) return !absorbing;
  return open.length === 1 ? open[0]! : sql`(${sql.join(open, joiner === 'and' ? sql` and ` : sql` or `)})`;
}
const not = (part: Predicate): Predicate => (typeof part === 'boolean' ? !part : sql`not (${part})`);

function all(parts: PathPredicate[], joiner: '&&' | '||'): PathPredicate {
  const absorbing = joiner === '||';
  if (parts.includes(absorbing)) return absorbing;
  const open = parts.filter((part): part is string => typeof part === 'string');
  if (open.length === 0) return !absorbing;
  return open.length === 1 ? open[0]! : `(${open.join(` ${joiner} `)})`;
}
const negate = (part: PathPredicate): PathPredicate => (typeof part === 'boolean' ? !part : `!(${part})`);

// ---------- SQL/JSON path predicates over data ----------

const literal = (value: Scalar) => (value === null ? 'null' : JSON.stringify(value));
const typeOf = (value: Scalar) => (value === null ? 'null' : typeof value);
const accessor = (item: string, path: readonly string[]) =>
  item + path.map((segment) => `.${JSON.stringify(segment)}`).join('');
const jsonPathOperators: Record<CompareOperator, string> = {
  eq: '==',
  ne: '!=',
  lt: '<',
  lte: '<=',
  gt: '>',
  gte: '>=',
};

/** The test on one scalar reached value or array element, `@`; the type guard keeps arrays (and other types) out. */
function scalarTest(operator: CompareOperator, value: Scalar): string {
  if (value === null) return '@.type() == "null"';
  return `@.type() == "${typeOf(value)}" && @ ${jsonPathOperators[operator]} ${literal(value)}`;
}

/**
 * A leaf test holds on a value reached at `path` from `item`, or on an element of a reached array
 * (the filter unwraps one level). Path [] — inside an operator-form $elemMatch — is the element itself.
 */
function reached(item: string, path: readonly string[], test: string): string {
  if (path.length === 0) return `(${test})`;
  return `exists(${accessor(item, path)} ? (${test}))`;
}

/** For tests on the reached array itself ($size, $elemMatch): its parent is filtered, so lax mode cannot unwrap it. */
function reachedArray(item: string, path: readonly string[], test: (array: string) => string): string {
  if (path.length === 0) return `(@.type() == "array" && ${test('@')})`;
  const last = JSON.stringify(path.at(-1));
  return `exists(${accessor(item, path.slice(0, -1))} ? (@.type() == "object" && @.${last}.type() == "array" && ${test(`@.${last}`)}))`;
}

function equalsPath(item: string, path: readonly string[], value: Scalar): PathPredicate {
  const test = reached(item, path, scalarTest('eq', value));
  // A missing field equals null (the parser allows null on single-segment paths only).
  if (value === null && path.length > 0) return `(!exists(${accessor(item, path)}) || ${test})`;
  return test;
}

/** A jsonpath predicate, relative to `item` (`$` at the top, `@` for an element in $elemMatch). */
function jsonPathPredicate(condition: Condition, item: string): PathPredicate {
  switch (condition.kind) {
    case 'and':
      return all(
        condition.conditions.map((part) => jsonPathPredicate(part, item)),
        '&&',
      );
    case 'or':
      return all(
        condition.conditions.map((part) => jsonPathPredicate(part, item)),
        '||',
      );
    case 'nor':
      return negate(
        all(
          condition.conditions.map((part) => jsonPathPredicate(part, item)),
          '||',
        ),
      );
    case 'compare':
      if (condition.operator === 'eq') return equalsPath(item, condition.path, condition.value);
      if (condition.operator === 'ne') return negate(equalsPath(item, condition.path, condition.value));
      return reached(item, condition.path, scalarTest(condition.operator, condition.value));
    case 'in': {
      const any = all(
        condition.values.map((value) => equalsPath(item, condition.path, value)),
        '||',
      );
      return condition.negated ? negate(any) : any;
    }
    case 'all':
      return all(
        condition.values.map((value) => equalsPath(item, condition.path, value)),
        '&&',
      );
    case 'exists':
      if (condition.path.length === 0) return condition.exists;
      return condition.exists
        ? `exists(${accessor(item, condition.path)})`
        : `!(exists(${accessor(item, condition.path)}))`;
    case 'size':
      return reachedArray(item, condition.path, (array) => `${array}.size() == ${condition.size}`);
    case 'regex':
      return reached(
        item,
        condition.path,
        `@.type() == "string" && @ like_regex ${JSON.stringify(condition.pattern)} flag "s"`,
      );
    case 'elemMatch': {
      let inner = jsonPathPredicate(condition.condition, '@');
      if (!condition.onElement) inner = all(['@.type() == "object"', inner], '&&');
      if (inner === false) return false;
      return reachedArray(item, condition.path, (array) =>
        inner === true ? `${array}.size() > 0` : `exists(${array} ? (${inner}))`,
      );
    }
  }
}

// ---------- SQL over a records row (alias `r`) ----------

const canonicalIso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** `YYYY-MM-DDTHH:mm:ss.sssZ` for a real instant from year 1 on (PostgreSQL has no year 0). */
export const isCanonicalIso = (value: string) =>
  canonicalIso.test(value) &&
  !value.startsWith('0000') &&
  !Number.isNaN(Date.parse(value)) &&
  new Date(value).toISOString() === value;
const sqlOperators: Record<CompareOperator, Fragment> = {
  eq: sql`=`,
  ne: sql`<>`,
  lt: sql`<`,
  lte: sql`<=`,
  gt: sql`>`,
  gte: sql`>=`,
};

interface SystemColumn {
  /** The field as the text the in-memory document holds. */
  text: Fragment;
  /** An equivalent comparison on the column itself, when the value allows one (index-friendly). */
  native?: (operator: CompareOperator, value: string) => Fragment | undefined;
}

const timestampColumn = (column: Fragment, text: Fragment): SystemColumn => ({
  text,
  // Stored timestamps have millisecond precision and fixed-width ISO text, so on canonical ISO
  // values text order and time order agree.
  native: (operator, value) =>
    isCanonicalIso(value) ? sql`${column} ${sqlOperators[operator]} ${value}::timestamptz` : undefined,
});

const systemColumns: Record<string, SystemColumn> = {
  id: {
    text: sql`r.id::text`,
    native: (operator, value) =>
      operator === 'eq' && canonicalUuid.test(value) ? sql`r.id = ${value}::uuid` : undefined,
  },
  createdBy: { text: sql`r.created_by` },
  createdAt: timestampColumn(sql`r.created_at`, isoMillis(sql`r.created_at`)),
  updatedAt: timestampColumn(sql`r.updated_at`, isoMillis(sql`r.updated_at`)),
};

/** A system field always holds one non-null string, which settles most operators at compile time. */
function systemLeaf(condition: Exclude<Condition, { kind: 'and' | 'or' | 'nor' }>, column: SystemColumn): Predicate {
  const compare = (operator: CompareOperator, value: Scalar): Predicate => {
    if (typeof value !== 'string') return false; // never across types; never null
    const native = column.native?.(operator, value);
    if (native) return native;
    const collation = operator === 'eq' ? sql`` : sql` collate "C"`;
    return sql`${column.text}${collation} ${sqlOperators[operator]} ${value}::text`;
  };
  switch (condition.kind) {
    case 'compare':
      if (condition.operator === 'ne') return not(compare('eq', condition.value));
      return compare(condition.operator, condition.value);
    case 'in': {
      const any = combine(
        condition.values.map((value) => compare('eq', value)),
        'or',
      );
      return condition.negated ? not(any) : any;
    }
    case 'all':
      return combine(
        condition.values.map((value) => compare('eq', value)),
        'and',
      );
    case 'exists':
      return condition.exists;
    case 'regex':
      return sql`${column.text} ~ ${condition.pattern}::text`;
    case 'size':
    case 'elemMatch':
      return false;
  }
}

/**
 * MongoDB's equality on a top-level field is two containments: the field holds the value, or an
 * array holding it (JSONB containment does not look into nested arrays, as MongoDB does not).
 * Both can use the GIN index.
 */
function containment(field: string, value: Scalar): Fragment {
  const holds = (document: unknown) => sql`r.data @> ${JSON.stringify(document)}::jsonb`;
  return sql`(${holds({ [field]: value })} or ${holds({ [field]: [value] })})`;
}

function dataLeaf(condition: Condition): Predicate {
  if (
    condition.kind === 'compare' &&
    condition.path.length === 1 &&
    condition.value !== null &&
    (condition.operator === 'eq' || condition.operator === 'ne')
  ) {
    const equal = containment(condition.path[0]!, condition.value);
    return condition.operator === 'eq' ? equal : not(equal);
  }
  if (condition.kind === 'in' && condition.path.length === 1 && !condition.values.includes(null)) {
    const any = combine(
      condition.values.map((value) => containment(condition.path[0]!, value)),
      'or',
    );
    return condition.negated ? not(any) : any;
  }
  const path = jsonPathPredicate(condition, '$');
  if (typeof path === 'boolean') return path;
  return sql`r.data @@ ${`lax ${path}`}::jsonpath`;
}

function predicate(condition: Condition): Predicate {
  switch (condition.kind) {
    case 'and':
      return combine(condition.conditions.map(predicate), 'and');
    case 'or':
      return combine(condition.conditions.map(predicate), 'or');
    case 'nor':
      return not(combine(condition.conditions.map(predicate), 'or'));
  }
  const column = Object.hasOwn(systemColumns, condition.path[0]!) ? systemColumns[condition.path[0]!] : undefined;
  if (!column) return dataLeaf(condition);
  // Below a system field there is nothing to reach: the answer is the one for an empty document.
  if (condition.path.length > 1) return matches(condition, {});
  return systemLeaf(condition, column);
}

/**
 * JSON documents such that a record the condition matches contains at least one of them
 * (`data @> document`), found from a top-level equality or `$in` on a data field, which compile to
 * exactly these containments (see `containment`); undefined when the condition names none. The
 * list query uses them to look candidates up in the GIN index: a superset, the condition itself
 * is still applied to every row.
 */
export function containmentDocuments(condition: Condition): unknown[] | undefined {
  switch (condition.kind) {
    case 'and':
      return condition.conditions.map(containmentDocuments).reduce<unknown[] | undefined>(bothContained, undefined);
    case 'or': {
      const branches = condition.conditions.map(containmentDocuments);
      return branches.length > 0 && branches.every((branch) => branch !== undefined) ? branches.flat() : undefined;
    }
    case 'compare':
    case 'in': {
      const field = condition.path[0]!;
      if (condition.path.length !== 1 || Object.hasOwn(systemColumns, field)) return undefined;
      const values = condition.kind === 'compare' ? [condition.value] : condition.values;
      const equal = condition.kind === 'compare' ? condition.operator === 'eq' : !condition.negated;
      if (!equal || values.includes(null)) return undefined;
      return values.flatMap((value) => [{ [field]: value }, { [field]: [value] }]);
    }
    default:
      return undefined;
  }
}

/** The most containment documents one candidate lookup takes (each is one search of the GIN index). */
const maxContainmentDocuments = 16;

/**
 * Documents implied where both lists' are: each of `first` merged with each of `second`, which
 * narrows the candidates (`{ assignee, status }` rather than every `{ status }`). A record that
 * contains one of each contains their merge, since top-level containment holds key by key (where
 * both name a field, the merge keeps `second`'s value, which the record contains). When the
 * product would be too many lookups, the shorter list alone (still implied) is kept.
 */
export function bothContained(first: unknown[] | undefined, second: unknown[] | undefined): unknown[] | undefined {
  if (!first || !second) return first ?? second;
  if (first.length * second.length > maxContainmentDocuments) return second.length < first.length ? second : first;
  return first.flatMap((one) => second.map((other) => ({ ...(one as object), ...(other as object) })));
}

/**
 * Containment documents every record the rules allow contains one of: a record is allowed only
 * through an allowing rule whose conditions it matches (deny rules only take records away), so
 * when every allowing rule's conditions imply containments, their union is implied. Undefined when
 * one allowing rule has no conditions or none that imply a containment (a contractor's
 * `{ assignee: principal.id }` does; a viewer's unconditional read does not).
 */
export function rulesContainment(rules: readonly OrderedRule[]): unknown[] | undefined {
  const documents: unknown[] = [];
  for (const rule of rules) {
    if (rule.inverted) continue;
    const implied = rule.condition && containmentDocuments(rule.condition);
    if (!implied) return undefined;
    documents.push(...implied);
  }
  return documents.length && documents.length <= maxContainmentDocuments ? documents : undefined;
}

/** SQL that holds for a records row `r` exactly when the condition matches the record's document. */
export function recordCondition(condition: Condition): Fragment {
  return sqlConstant(predicate(condition));
}

export interface OrderedRule {
  inverted: boolean;
  /** Absent: the rule has no conditions and applies to every record. */
  condition?: Condition | undefined;
}

/**
 * CASL's decision as SQL: rules in priority order, the first whose conditions match decides.
 * Rule i holds as `cᵢ or rest` when it allows and `not cᵢ and rest` when it denies; no rule left
 * means deny.
 */
export function rulesCondition(rules: readonly OrderedRule[]): Fragment {
  let result: Predicate = false;
  for (const rule of [...rules].reverse()) {
    const condition = rule.condition ? predicate(rule.condition) : true;
    result = rule.inverted ? combine([not(condition), result], 'and') : combine([condition, result], 'or');
  }
  return sqlConstant(result);
}
