import { isPlainObject } from '../json.ts';
import { matches, resolvePath, type Condition, type Scalar } from './conditions.ts';

/**
 * Why a condition did not hold on a document, leaf by leaf: which field, which operator, what the
 * rule expected and what the document has. Computed only when an explanation is asked for; the
 * decision itself never goes through here.
 */
export interface ConditionFailure {
  field: string;
  operator: string;
  expected: unknown;
  /** What the path reached (one value, or every value when it reached several); absent when missing. */
  actual?: unknown;
  why: 'missing' | 'type' | 'value';
}

type Leaf = Exclude<Condition, { conditions: Condition[] }>;
const isLeaf = (condition: Condition): condition is Leaf => !('conditions' in condition);

type JsonType = 'null' | 'boolean' | 'number' | 'string' | 'array' | 'object';

const typeOf = (value: unknown): JsonType =>
  value === null
    ? 'null'
    : Array.isArray(value)
      ? 'array'
      : isPlainObject(value)
        ? 'object'
        : (typeof value as 'boolean' | 'number' | 'string');

/** The types a leaf compares against: reached values and, one level down, the elements of reached arrays. */
function leafTypes(values: unknown[], expand: boolean): Set<JsonType> {
  const types = new Set<JsonType>();
  for (const value of values) {
    types.add(typeOf(value));
    if (expand && Array.isArray(value)) for (const element of value) types.add(typeOf(element));
  }
  return types;
}

const operatorOf = (condition: Leaf): string => {
  switch (condition.kind) {
    case 'compare':
      return `$${condition.operator}`;
    case 'in':
      return condition.negated ? '$nin' : '$in';
    default:
      return `$${condition.kind}`;
  }
};

function expectedOf(condition: Leaf): unknown {
  switch (condition.kind) {
    case 'compare':
      return condition.value;
    case 'in':
    case 'all':
      return condition.values;
    case 'exists':
      return condition.exists;
    case 'size':
      return condition.size;
    case 'regex':
      return condition.pattern;
    case 'elemMatch':
      return describe(condition.condition);
  }
}

/** A condition back in MongoDB's spelling, for `expected` of a `$elemMatch` or `$nor`. */
function describe(condition: Condition): unknown {
  if (!isLeaf(condition)) return { [`$${condition.kind}`]: condition.conditions.map(describe) };
  const spec = { [operatorOf(condition)]: expectedOf(condition) };
  return condition.path.length ? { [condition.path.join('.')]: spec } : spec;
}

/** Whether no reached value has a type the leaf could ever hold on: a type mismatch rather than another value. */
function typeMismatch(condition: Leaf, types: Set<JsonType>): boolean {
  const comparable = (expected: Scalar) => types.has(typeOf(expected));
  switch (condition.kind) {
    case 'compare':
      // ne fails only on an equal value; eq null fails on any present value: both are about values.
      return condition.operator !== 'ne' && condition.value !== null && !comparable(condition.value);
    case 'in':
      return !condition.negated && !condition.values.some(comparable);
    case 'all':
      return !condition.values.some(comparable);
    case 'regex':
      return !types.has('string');
    case 'size':
    case 'elemMatch':
      return !types.has('array');
    case 'exists':
      return false;
  }
}

function leafFailure(condition: Leaf, document: unknown): ConditionFailure {
  const values = resolvePath(document, condition.path);
  const field = condition.path.join('.');
  const base = { field, operator: operatorOf(condition), expected: expectedOf(condition) };
  if (values.length === 0) return { ...base, why: 'missing' };
  const actual = values.length === 1 ? values[0] : values;
  const types = leafTypes(values, condition.path.length > 0);
  return { ...base, actual, why: typeMismatch(condition, types) ? 'type' : 'value' };
}

/** The leaves that made `condition` fail on `document`; empty when it holds. */
export function diagnose(condition: Condition, document: unknown): ConditionFailure[] {
  if (matches(condition, document)) return [];
  switch (condition.kind) {
    case 'and':
    case 'or':
      // An and fails by each failing part; an or only when every part fails.
      return condition.conditions.flatMap((part) => diagnose(part, document));
    case 'nor':
      return condition.conditions
        .filter((part) => matches(part, document))
        .map((part) => ({
          field: isLeaf(part) ? part.path.join('.') : '',
          operator: '$nor',
          expected: describe(part),
          why: 'value' as const,
        }));
    default:
      return [leafFailure(condition, document)];
  }
}
