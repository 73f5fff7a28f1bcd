import type { ConditionsMatcher } from '@casl/ability';
import { escapePointer, isPlainObject, storable, unstorableText as unstorable } from '../json.ts';
import { compileLinear, type LinearRegex } from './linear-regex.ts';
import { normaliseRegex } from './regex.ts';

/**
 * Policy conditions and record-list filters: a restricted subset of MongoDB queries, parsed into
 * an explicit AST that both this module (per record, for CASL) and the SQL compiler evaluate. What
 * MongoDB, JavaScript and PostgreSQL would answer differently is refused at parse time.
 */

export type Scalar = string | number | boolean | null;
export type Condition =
  | { kind: 'and' | 'or' | 'nor'; conditions: Condition[] }
  | { kind: 'compare'; path: string[]; operator: CompareOperator; value: Scalar }
  | { kind: 'in'; path: string[]; negated: boolean; values: Scalar[] }
  | { kind: 'all'; path: string[]; values: Scalar[] }
  | { kind: 'exists'; path: string[]; exists: boolean }
  | { kind: 'size'; path: string[]; size: number }
  // `$options: "i"` is folded into the pattern (see regex.ts): it always matches case-sensitively.
  | { kind: 'regex'; path: string[]; pattern: string }
  // onElement: the operator form, whose sub-condition has path [] (the element itself).
  | { kind: 'elemMatch'; path: string[]; condition: Condition; onElement: boolean };
export type CompareOperator = 'eq' | 'ne' | 'lt' | 'lte' | 'gt' | 'gte';
export interface ConditionError {
  pointer: string;
  detail: string;
}

const conditionLimits = { items: 20, values: 100, segments: 10, stringLength: 1000, nodes: 200 } as const;

// Maps, not object literals: a key like "constructor" must not find anything inherited.
const logical = new Map<string, 'and' | 'or' | 'nor'>([
  ['$and', 'and'],
  ['$or', 'or'],
  ['$nor', 'nor'],
]);
const comparisons = new Map<string, CompareOperator>([
  ['$eq', 'eq'],
  ['$ne', 'ne'],
  ['$lt', 'lt'],
  ['$lte', 'lte'],
  ['$gt', 'gt'],
  ['$gte', 'gte'],
]);
const forbiddenSegments = new Set(['__proto__', 'constructor', 'prototype']);
const supported = '$eq $ne $in $nin $lt $lte $gt $gte $exists $regex $options $all $size $elemMatch';

class QueryParser {
  readonly errors: ConditionError[] = [];
  nodes = 0;

  fail(pointer: string, detail: string): undefined {
    this.errors.push({ pointer, detail });
    return undefined;
  }

  // Counted on the way down, so a deeply nested query stops before it can exhaust the stack.
  enter(): boolean {
    return ++this.nodes <= conditionLimits.nodes;
  }

  query(value: unknown, pointer: string): Condition | undefined {
    if (!isPlainObject(value)) return this.fail(pointer, 'a query must be an object');
    const parts: Condition[] = [];
    for (const [key, item] of Object.entries(value)) {
      if (!this.enter()) return undefined;
      const at = `${pointer}/${escapePointer(key)}`;
      const kind = logical.get(key);
      let part: Condition | undefined;
      if (kind) part = this.logical(kind, item, at);
      else if (key.startsWith('$'))
        part = this.fail(at, `${key} is not supported here; use $and, $or, $nor or a field name`);
      else part = this.field(key, item, at);
      if (part) parts.push(part);
    }
    return parts.length === 1 ? parts[0] : { kind: 'and', conditions: parts };
  }

  logical(kind: 'and' | 'or' | 'nor', value: unknown, pointer: string): Condition | undefined {
    if (!Array.isArray(value) || value.length === 0 || value.length > conditionLimits.items) {
      return this.fail(pointer, `$${kind} takes a list of 1 to ${conditionLimits.items} queries`);
    }
    const conditions = value.map((item, index) => this.query(item, `${pointer}/${index}`));
    return conditions.every((item) => item !== undefined) ? { kind, conditions } : undefined;
  }

  path(key: string, pointer: string): string[] | undefined {
    const segments = key.split('.');
    if (key.length > conditionLimits.stringLength)
      return this.fail(pointer, `a field path is limited to ${conditionLimits.stringLength} characters`);
    if (segments.length > conditionLimits.segments)
      return this.fail(pointer, `a field path has at most ${conditionLimits.segments} segments`);
    if (!storable(key)) return this.fail(pointer, unstorable);
    for (const segment of segments) {
      if (segment === '') return this.fail(pointer, 'a field path cannot have an empty segment');
      if (segment.startsWith('$')) return this.fail(pointer, `a field path segment cannot start with $ ("${segment}")`);
      if (/^[0-9]+$/.test(segment)) return this.fail(pointer, 'array index paths are not supported; use $elemMatch');
      if (forbiddenSegments.has(segment)) return this.fail(pointer, `"${segment}" cannot be used as a field name`);
    }
    return segments;
  }

  field(key: string, value: unknown, pointer: string): Condition | undefined {
    const path = this.path(key, pointer);
    if (!path) return undefined;
    if (!isPlainObject(value)) {
      const scalar = this.scalar(value, pointer, path);
      return scalar === undefined ? undefined : { kind: 'compare', path, operator: 'eq', value: scalar.value };
    }
    const keys = Object.keys(value);
    const operators = keys.filter((name) => name.startsWith('$'));
    if (operators.length === 0)
      return this.fail(pointer, 'comparing whole objects is not supported; compare its fields with dotted paths');
    if (operators.length !== keys.length)
      return this.fail(pointer, 'an operator object cannot mix operators and field names');
    return this.operators(path, value, pointer);
  }

  /** Each operator holds on its own, so over an array different elements may satisfy different ones. */
  operators(path: string[], spec: Record<string, unknown>, pointer: string): Condition | undefined {
    const parts: (Condition | undefined)[] = [];
    for (const [operator, argument] of Object.entries(spec)) {
      if (operator === '$options' && Object.hasOwn(spec, '$regex')) continue; // read with $regex
      if (!this.enter()) return undefined;
      parts.push(this.operator(path, operator, argument, spec, pointer));
    }
    if (!parts.every((part) => part !== undefined)) return undefined;
    return parts.length === 1 ? parts[0] : { kind: 'and', conditions: parts };
  }

  operator(
    path: string[],
    operator: string,
    argument: unknown,
    spec: Record<string, unknown>,
    parent: string,
  ): Condition | undefined {
    const pointer = `${parent}/${escapePointer(operator)}`;
    const comparison = comparisons.get(operator);
    if (comparison) {
      if (comparison !== 'eq' && comparison !== 'ne' && (argument === null || typeof argument === 'boolean')) {
        return this.fail(pointer, `${operator} compares only with a string or a number`);
      }
      const scalar = this.scalar(argument, pointer, path);
      return scalar && { kind: 'compare', path, operator: comparison, value: scalar.value };
    }
    switch (operator) {
      case '$in':
      case '$nin': {
        const values = this.list(argument, pointer, path, 0, operator);
        return values && { kind: 'in', path, negated: operator === '$nin', values };
      }
      case '$all': {
        const values = this.list(argument, pointer, path, 1, operator);
        if (values?.includes(null)) return this.fail(pointer, '$all cannot contain null');
        return values && { kind: 'all', path, values };
      }
      case '$exists':
        return typeof argument === 'boolean'
          ? { kind: 'exists', path, exists: argument }
          : this.fail(pointer, '$exists takes true or false');
      case '$size':
        return Number.isSafeInteger(argument) && (argument as number) >= 0
          ? { kind: 'size', path, size: argument as number }
          : this.fail(pointer, '$size takes a non-negative integer');
      case '$regex':
        return this.regex(path, argument, spec.$options, pointer, `${parent}/$options`);
      case '$options':
        return this.fail(pointer, '$options needs a $regex beside it');
      case '$elemMatch':
        return this.elemMatch(path, argument, pointer);
      default:
        return this.fail(
          pointer,
          logical.has(operator)
            ? `${operator} cannot be used inside a field's operators`
            : `${operator} is not supported; use one of ${supported}`,
        );
    }
  }

  scalar(value: unknown, pointer: string, path: string[]): { value: Scalar } | undefined {
    if (value === null) {
      // On a dotted path MongoDB's null also counts array elements that lack the field, with
      // rules that changed between versions; too subtle to reproduce twice, so refused.
      return path.length > 1 ? this.fail(pointer, 'null comparisons on nested paths are not supported') : { value };
    }
    if (Array.isArray(value)) return this.fail(pointer, 'comparing whole arrays is not supported; use $all and $size');
    if (isPlainObject(value))
      return this.fail(pointer, 'comparing whole objects is not supported; compare its fields with dotted paths');
    if (typeof value === 'number')
      return Number.isFinite(value) ? { value } : this.fail(pointer, 'numbers must be finite');
    if (typeof value === 'string') {
      if (value.length > conditionLimits.stringLength)
        return this.fail(pointer, `strings are limited to ${conditionLimits.stringLength} characters`);
      return storable(value) ? { value } : this.fail(pointer, unstorable);
    }
    if (typeof value === 'boolean') return { value };
    return this.fail(pointer, 'expected a JSON string, number, boolean or null');
  }

  list(value: unknown, pointer: string, path: string[], minimum: number, operator: string): Scalar[] | undefined {
    if (!Array.isArray(value) || value.length < minimum || value.length > conditionLimits.values) {
      return this.fail(pointer, `${operator} takes a list of ${minimum} to ${conditionLimits.values} values`);
    }
    const items = value.map((item, index) => this.scalar(item, `${pointer}/${index}`, path));
    return items.every((item) => item !== undefined) ? items.map((item) => item.value) : undefined;
  }

  regex(
    path: string[],
    pattern: unknown,
    options: unknown,
    pointer: string,
    optionsPointer: string,
  ): Condition | undefined {
    if (typeof pattern !== 'string') return this.fail(pointer, '$regex takes a string');
    if (options !== undefined && options !== '' && options !== 'i')
      return this.fail(optionsPointer, `$options may only be "" or "i", not ${JSON.stringify(options)}`);
    const normalised = normaliseRegex(pattern, options === 'i');
    if ('error' in normalised) return this.fail(pointer, normalised.error);
    try {
      compiled(normalised.pattern);
    } catch (error) {
      if (error instanceof RangeError) return this.fail(pointer, 'the pattern is too complex (too many repetitions)');
      throw error;
    }
    return { kind: 'regex', path, pattern: normalised.pattern };
  }

  elemMatch(path: string[], value: unknown, pointer: string): Condition | undefined {
    if (!isPlainObject(value) || Object.keys(value).length === 0)
      return this.fail(pointer, '$elemMatch takes a non-empty object');
    const keys = Object.keys(value);
    const onElement = keys.some((key) => key.startsWith('$') && !logical.has(key));
    if (onElement && !keys.every((key) => key.startsWith('$')))
      return this.fail(
        pointer,
        '$elemMatch takes either operators (for the element itself) or a query (for object elements), not both',
      );
    const condition = onElement ? this.operators([], value, pointer) : this.query(value, pointer);
    return condition && { kind: 'elemMatch', path, condition, onElement };
  }
}

export function parseConditions(
  query: unknown,
  pointer: string,
): { condition: Condition; errors: [] } | { condition: undefined; errors: ConditionError[] } {
  const parser = new QueryParser();
  const condition = parser.query(query, pointer);
  if (parser.nodes > conditionLimits.nodes) {
    return {
      condition: undefined,
      errors: [{ pointer, detail: `the query has more than ${conditionLimits.nodes} conditions` }],
    };
  }
  if (condition === undefined || parser.errors.length) return { condition: undefined, errors: parser.errors };
  return { condition, errors: [] };
}

/**
 * The values a path reaches: own properties only (never the prototype chain), stepping through
 * one level of array per segment as MongoDB does; arrays nested in arrays are not entered.
 */
export function resolvePath(document: unknown, path: readonly string[]): unknown[] {
  let current = [document];
  for (const segment of path) {
    const next: unknown[] = [];
    for (const value of current) {
      const candidates = Array.isArray(value) ? value : [value];
      for (const candidate of candidates) {
        if (isPlainObject(candidate) && Object.hasOwn(candidate, segment)) next.push(candidate[segment]);
      }
    }
    current = next;
  }
  return current;
}

/** UTF-16 puts U+E000–U+FFFF after surrogates; shifting the two ranges gives code point order (PostgreSQL's COLLATE "C"). */
const codePointRank = (unit: number) => (unit >= 0xe000 ? unit - 0x800 : unit >= 0xd800 ? unit + 0x2000 : unit);
export function compareCodePoints(left: string, right: string): number {
  const length = Math.min(left.length, right.length);
  for (let index = 0; index < length; index++) {
    const difference = codePointRank(left.charCodeAt(index)) - codePointRank(right.charCodeAt(index));
    if (difference !== 0) return difference;
  }
  return left.length - right.length;
}

function ordered(value: unknown, operator: CompareOperator, bound: Scalar): boolean {
  if (typeof value === 'number' && typeof bound === 'number') return holds(operator, value, bound);
  if (typeof value === 'string' && typeof bound === 'string')
    return holds(operator, compareCodePoints(value, bound), 0);
  return false; // never across types: "5" is not greater than 4
}

function holds(operator: CompareOperator, left: number, right: number): boolean {
  if (operator === 'lt') return left < right;
  if (operator === 'lte') return left <= right;
  if (operator === 'gt') return left > right;
  return left >= right;
}

// Patterns run on a linear-time matcher: a policy's regex must not stall the process (see linear-regex.ts).
const regexCache = new Map<string, LinearRegex>();
function compiled(pattern: string): LinearRegex {
  let regex = regexCache.get(pattern);
  if (!regex) {
    if (regexCache.size >= 1000) regexCache.clear();
    regex = compileLinear(pattern);
    regexCache.set(pattern, regex);
  }
  return regex;
}

/** A leaf holds on a reached value or, one level down, on an element of a reached array; path [] is the element itself. */
function anyLeaf(values: unknown[], expand: boolean, test: (value: unknown) => boolean): boolean {
  return values.some((value) => test(value) || (expand && Array.isArray(value) && value.some(test)));
}

function equals(values: unknown[], expand: boolean, expected: Scalar): boolean {
  if (expected === null && values.length === 0) return true; // a missing field equals null
  return anyLeaf(values, expand, (value) => value === expected);
}

/**
 * The semantics the SQL compiler reproduces. A leaf (eq, ranges, regex, each value of in/all)
 * holds if a reached value or an element of a reached array satisfies it; with path [] (inside an
 * operator-form $elemMatch) only the element itself counts. eq null also holds when nothing is
 * reached; ne and nin negate eq and in. exists: something is reached; size: a reached array has
 * that length; elemMatch: a reached array has a matching element (object form: objects only).
 */
export function matches(condition: Condition, document: unknown): boolean {
  switch (condition.kind) {
    case 'and':
      return condition.conditions.every((item) => matches(item, document));
    case 'or':
      return condition.conditions.some((item) => matches(item, document));
    case 'nor':
      return !condition.conditions.some((item) => matches(item, document));
  }
  const values = resolvePath(document, condition.path);
  const expand = condition.path.length > 0;
  switch (condition.kind) {
    case 'compare':
      if (condition.operator === 'eq') return equals(values, expand, condition.value);
      if (condition.operator === 'ne') return !equals(values, expand, condition.value);
      return anyLeaf(values, expand, (value) => ordered(value, condition.operator, condition.value));
    case 'in':
      return condition.values.some((value) => equals(values, expand, value)) !== condition.negated;
    case 'all':
      return condition.values.every((value) => equals(values, expand, value));
    case 'exists':
      return values.length > 0 === condition.exists;
    case 'size':
      return values.some((value) => Array.isArray(value) && value.length === condition.size);
    case 'regex': {
      const regex = compiled(condition.pattern);
      return anyLeaf(values, expand, (value) => typeof value === 'string' && regex.test(value));
    }
    case 'elemMatch':
      return values.some(
        (value) =>
          Array.isArray(value) &&
          value.some(
            (element) => (condition.onElement || isPlainObject(element)) && matches(condition.condition, element),
          ),
      );
  }
}

/** Conditions objects `acceptsConditions` parsed already: CASL's matcher does not parse them again. */
const checked = new WeakMap<object, Condition>();

/** Whether the grammar accepts these conditions; their parse is kept for `conditionsMatcher`. */
export function acceptsConditions(conditions: unknown): boolean {
  const { condition } = parseConditions(conditions, '');
  if (condition && isPlainObject(conditions)) checked.set(conditions, condition);
  return condition !== undefined;
}

function parsedOrThrow(conditions: unknown): Condition {
  const parsed = parseConditions(conditions, '');
  if (!parsed.condition) {
    throw new Error(
      `invalid conditions: ${parsed.errors.map((error) => `${error.pointer || '/'} ${error.detail}`).join('; ')}`,
    );
  }
  return parsed.condition;
}

export type ConditionsPredicate = ((object: unknown) => boolean) & { ast: Condition; matchesAll: boolean };

/**
 * CASL's `conditionsMatcher`. `matchesAll` tells CASL that an inverted rule with `{}` conditions
 * applies even to a subject type without an object. CASL types `.ast` as a ucast condition but
 * reads it only in `rulesToAST` (extra), which Cordon does not use: SQL is compiled from our AST.
 */
export const conditionsMatcher = ((conditions: unknown): ConditionsPredicate => {
  const ast = isPlainObject(conditions)
    ? (checked.get(conditions) ?? parsedOrThrow(conditions))
    : parsedOrThrow(conditions);
  return Object.assign((object: unknown) => matches(ast, object), {
    ast,
    matchesAll: ast.kind === 'and' && ast.conditions.length === 0,
  });
}) as ((conditions: unknown) => ConditionsPredicate) & ConditionsMatcher<unknown>;
