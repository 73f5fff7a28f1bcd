import { canonicalUuid } from '../http/json.ts';
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

/**
 * Collects bound values. Compilation folds constants, so a part that added a value may be dropped
 * afterwards: `bind` numbers only the placeholders the final text still holds, in order.
 */
export class SqlParameters {
  private readonly pending: unknown[] = [];

  add(value: unknown, cast: string): string {
    this.pending.push(value);
    return `⟦${this.pending.length - 1}⟧::${cast}`;
  }

  /** The text with `$n` placeholders numbered after `offset` existing ones, and their values. */
  bind(text: string, offset = 0): { text: string; values: unknown[] } {
    const values: unknown[] = [];
    const bound = text.replace(/⟦(\d+)⟧/g, (_, index: string) => {
      values.push(this.pending[Number(index)]);
      return `$${offset + values.length}`;
    });
    return { text: bound, values };
  }
}

type Predicate = string | boolean;

const sqlConstant = (value: Predicate) => (value === true ? 'true' : value === false ? 'false' : value);

function all(parts: Predicate[], joiner: string): Predicate {
  const absorbing = joiner === 'and' || joiner === '&&' ? false : true;
  if (parts.includes(absorbing)) return absorbing;
  const open = parts.filter((part): part is string => typeof part === 'string');
  if (open.length === 0) return !absorbing;
  return open.length === 1 ? open[0]! : `(${open.join(` ${joiner} `)})`;
}
const negate = (part: Predicate, not: string): Predicate => (typeof part === 'boolean' ? !part : `${not}(${part})`);

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

function equalsPath(item: string, path: readonly string[], value: Scalar): Predicate {
  const test = reached(item, path, scalarTest('eq', value));
  // A missing field equals null (the parser allows null on single-segment paths only).
  if (value === null && path.length > 0) return `(!exists(${accessor(item, path)}) || ${test})`;
  return test;
}

/** A jsonpath predicate, relative to `item` (`$` at the top, `@` for an element in $elemMatch). */
function jsonPathPredicate(condition: Condition, item: string): Predicate {
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
        '!',
      );
    case 'compare':
      if (condition.operator === 'eq') return equalsPath(item, condition.path, condition.value);
      if (condition.operator === 'ne') return negate(equalsPath(item, condition.path, condition.value), '!');
      return reached(item, condition.path, scalarTest(condition.operator, condition.value));
    case 'in': {
      const any = all(
        condition.values.map((value) => equalsPath(item, condition.path, value)),
        '||',
      );
      return condition.negated ? negate(any, '!') : any;
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

// ---------- SQL over a records row ----------

const isoFormat = `'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'`;
const canonicalIso = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
/** `YYYY-MM-DDTHH:mm:ss.sssZ` for a real instant from year 1 on (PostgreSQL has no year 0). */
export const isCanonicalIso = (value: string) =>
  canonicalIso.test(value) &&
  !value.startsWith('0000') &&
  !Number.isNaN(Date.parse(value)) &&
  new Date(value).toISOString() === value;
const sqlOperators: Record<CompareOperator, string> = { eq: '=', ne: '<>', lt: '<', lte: '<=', gt: '>', gte: '>=' };

interface SystemColumn {
  /** The field as the text the in-memory document holds. */
  text: (alias: string) => string;
  /** An equivalent comparison on the column itself, when the value allows one (index-friendly). */
  native?: (alias: string, operator: CompareOperator, value: string, parameters: SqlParameters) => string | undefined;
}

const timestampColumn = (column: string): SystemColumn => ({
  text: (alias) => `to_char(${alias}.${column} at time zone 'UTC', ${isoFormat})`,
  // Stored timestamps have millisecond precision and fixed-width ISO text, so on canonical ISO
  // values text order and time order agree.
  native: (alias, operator, value, parameters) =>
    isCanonicalIso(value)
      ? `${alias}.${column} ${sqlOperators[operator]} ${parameters.add(value, 'timestamptz')}`
      : undefined,
});

const systemColumns: Record<string, SystemColumn> = {
  id: {
    text: (alias) => `${alias}.id::text`,
    native: (alias, operator, value, parameters) =>
      operator === 'eq' && canonicalUuid.test(value) ? `${alias}.id = ${parameters.add(value, 'uuid')}` : undefined,
  },
  createdBy: { text: (alias) => `${alias}.created_by` },
  createdAt: timestampColumn('created_at'),
  updatedAt: timestampColumn('updated_at'),
};

/** A system field always holds one non-null string, which settles most operators at compile time. */
function systemLeaf(
  condition: Exclude<Condition, { kind: 'and' | 'or' | 'nor' }>,
  column: SystemColumn,
  alias: string,
  parameters: SqlParameters,
): Predicate {
  const compare = (operator: CompareOperator, value: Scalar): Predicate => {
    if (typeof value !== 'string') return false; // never across types; never null
    const native = column.native?.(alias, operator, value, parameters);
    if (native) return native;
    const collation = operator === 'eq' ? '' : ' collate "C"';
    return `${column.text(alias)}${collation} ${sqlOperators[operator]} ${parameters.add(value, 'text')}`;
  };
  switch (condition.kind) {
    case 'compare':
      if (condition.operator === 'ne') return negate(compare('eq', condition.value), 'not ');
      return compare(condition.operator, condition.value);
    case 'in': {
      const any = all(
        condition.values.map((value) => compare('eq', value)),
        'or',
      );
      return condition.negated ? negate(any, 'not ') : any;
    }
    case 'all':
      return all(
        condition.values.map((value) => compare('eq', value)),
        'and',
      );
    case 'exists':
      return condition.exists;
    case 'regex':
      return `${column.text(alias)} ~ ${parameters.add(condition.pattern, 'text')}`;
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
function containment(field: string, value: Scalar, alias: string, parameters: SqlParameters): string {
  const holds = (document: unknown) => `${alias}.data @> ${parameters.add(JSON.stringify(document), 'jsonb')}`;
  return `(${holds({ [field]: value })} or ${holds({ [field]: [value] })})`;
}

function dataLeaf(condition: Condition, alias: string, parameters: SqlParameters): Predicate {
  if (
    condition.kind === 'compare' &&
    condition.path.length === 1 &&
    condition.value !== null &&
    (condition.operator === 'eq' || condition.operator === 'ne')
  ) {
    const equal = containment(condition.path[0]!, condition.value, alias, parameters);
    return condition.operator === 'eq' ? equal : negate(equal, 'not ');
  }
  if (condition.kind === 'in' && condition.path.length === 1 && !condition.values.includes(null)) {
    const any = all(
      condition.values.map((value) => containment(condition.path[0]!, value, alias, parameters)),
      'or',
    );
    return condition.negated ? negate(any, 'not ') : any;
  }
  const predicate = jsonPathPredicate(condition, '$');
  if (typeof predicate === 'boolean') return predicate;
  return `${alias}.data @@ ${parameters.add(`lax ${predicate}`, 'jsonpath')}`;
}

function predicate(condition: Condition, alias: string, parameters: SqlParameters): Predicate {
  switch (condition.kind) {
    case 'and':
      return all(
        condition.conditions.map((part) => predicate(part, alias, parameters)),
        'and',
      );
    case 'or':
      return all(
        condition.conditions.map((part) => predicate(part, alias, parameters)),
        'or',
      );
    case 'nor':
      return negate(
        all(
          condition.conditions.map((part) => predicate(part, alias, parameters)),
          'or',
        ),
        'not ',
      );
  }
  const column = Object.hasOwn(systemColumns, condition.path[0]!) ? systemColumns[condition.path[0]!] : undefined;
  if (!column) return dataLeaf(condition, alias, parameters);
  // Below a system field there is nothing to reach: the answer is the one for an empty document.
  if (condition.path.length > 1) return matches(condition, {});
  return systemLeaf(condition, column, alias, parameters);
}

/** SQL that holds for a records row (`alias`) exactly when the condition matches the record's document. */
export function recordCondition(condition: Condition, parameters: SqlParameters, alias = 'r'): string {
  return sqlConstant(predicate(condition, alias, parameters));
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
export function rulesCondition(rules: readonly OrderedRule[], parameters: SqlParameters, alias = 'r'): string {
  let result: Predicate = false;
  for (const rule of [...rules].reverse()) {
    const condition = rule.condition ? predicate(rule.condition, alias, parameters) : true;
    result = rule.inverted ? all([negate(condition, 'not '), result], 'and') : all([condition, result], 'or');
  }
  return sqlConstant(result);
}
