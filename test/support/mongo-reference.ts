/**
 * A deliberately plain MongoDB matcher for the agreement tests, written from MongoDB's query
 * documentation (restricted to Cordon's subset) over the raw query object. It shares nothing with
 * src/policy/conditions.ts, so a mistake has to be made twice to go unnoticed. It trusts the query
 * to be valid and favours obviousness over speed.
 */

type Query = Record<string, unknown>;

function isDocument(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** "Dot notation": each step reads an own field of a document, or of each document in an array. */
function valuesAt(value: unknown, segments: string[]): unknown[] {
  if (segments.length === 0) return [value];
  const [head, ...rest] = segments as [string, ...string[]];
  const owners = Array.isArray(value) ? value : [value];
  const found: unknown[] = [];
  for (const owner of owners) {
    if (isDocument(owner) && Object.prototype.hasOwnProperty.call(owner, head)) {
      found.push(...valuesAt(owner[head], rest));
    }
  }
  return found;
}

/** Compares by Unicode code point, one whole character at a time. */
function codePointOrder(left: string, right: string): number {
  const a = Array.from(left, (character) => character.codePointAt(0)!);
  const b = Array.from(right, (character) => character.codePointAt(0)!);
  for (let index = 0; index < Math.min(a.length, b.length); index++) {
    if (a[index] !== b[index]) return a[index]! < b[index]! ? -1 : 1;
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1;
}

/** Equality is by type and value (1 is not "1", true is not 1) and 0 equals -0. */
function sameScalar(left: unknown, right: unknown): boolean {
  return Object.is(left, right) || (left === 0 && right === 0);
}

/**
 * When a field holds an array, a comparison selects it if the array itself or one of its elements
 * matches (one level only); with `nested` false (an $elemMatch element) only the value itself.
 */
function someCandidate(values: unknown[], nested: boolean, test: (value: unknown) => boolean): boolean {
  for (const value of values) {
    if (test(value)) return true;
    if (nested && Array.isArray(value) && value.some((element) => test(element))) return true;
  }
  return false;
}

function isEqual(values: unknown[], nested: boolean, expected: unknown): boolean {
  // "{ item: null } matches documents that either contain the item field whose value is null or
  // that do not contain the item field."
  if (expected === null && values.length === 0) return true;
  return someCandidate(values, nested, (value) => sameScalar(value, expected));
}

function inOrder(value: unknown, operator: string, bound: unknown): boolean {
  let order: number;
  if (typeof value === 'number' && typeof bound === 'number') order = value < bound ? -1 : value > bound ? 1 : 0;
  else if (typeof value === 'string' && typeof bound === 'string') order = codePointOrder(value, bound);
  else return false; // comparison operators only compare values of the same BSON type
  if (operator === '$lt') return order < 0;
  if (operator === '$lte') return order <= 0;
  if (operator === '$gt') return order > 0;
  return order >= 0;
}

/**
 * MongoDB's PCRE reads \d, \w and \s as ASCII classes; JavaScript's \s (and \w with `iu`)
 * reaches further, so they are spelled out before handing the pattern to RegExp.
 */
function asciiShorthands(pattern: string): string {
  const sets: Record<string, string> = { d: '0-9', w: 'A-Za-z0-9_', s: ' \\t\\n\\r\\f\\v' };
  let result = '';
  let inClass = false;
  for (let index = 0; index < pattern.length; index++) {
    const character = pattern[index]!;
    if (character === '\\') {
      const next = pattern[++index]!;
      const set = sets[next.toLowerCase()];
      if (set === undefined)
        result += !inClass && (next === '-' || next === '/') ? next : character + next; // `u` mode refuses \- outside [ ]
      else if (inClass) result += set;
      else result += next === next.toLowerCase() ? `[${set}]` : `[^${set}]`;
      continue;
    }
    if (character === '[') inClass = true;
    if (character === ']') inClass = false;
    result += character;
  }
  return result;
}

function isOperatorObject(value: unknown): value is Query {
  return isDocument(value) && Object.keys(value).length > 0 && Object.keys(value).every((key) => key.startsWith('$'));
}

/** One operator of a field, over the values the field's path reached. */
function operatorHolds(operator: string, argument: unknown, spec: Query, values: unknown[], nested: boolean): boolean {
  switch (operator) {
    case '$eq':
      return isEqual(values, nested, argument);
    case '$ne':
      return !isEqual(values, nested, argument);
    case '$lt':
    case '$lte':
    case '$gt':
    case '$gte':
      return someCandidate(values, nested, (value) => inOrder(value, operator, argument));
    case '$in':
      return (argument as unknown[]).some((item) => isEqual(values, nested, item));
    case '$nin':
      return !(argument as unknown[]).some((item) => isEqual(values, nested, item));
    case '$all':
      return (argument as unknown[]).every((item) => isEqual(values, nested, item));
    case '$exists':
      return argument === values.length > 0;
    case '$size':
      return values.some((value) => Array.isArray(value) && value.length === argument);
    case '$regex': {
      // Cordon's "i" folds ASCII letters only: lower-case the ASCII letters of both sides (not
      // the letter after a backslash, which names an escape) and match case-sensitively.
      const caseless = spec.$options === 'i';
      const source = asciiShorthands(
        caseless
          ? (argument as string).replace(
              /(\\.)|[A-Z]/g,
              (match, escape: string | undefined) => escape ?? match.toLowerCase(),
            )
          : (argument as string),
      );
      const regex = new RegExp(source, 'su');
      const text = (value: string) => (caseless ? value.replace(/[A-Z]/g, (letter) => letter.toLowerCase()) : value);
      return someCandidate(values, nested, (value) => typeof value === 'string' && regex.test(text(value)));
    }
    case '$options':
      return true;
    case '$elemMatch': {
      const sub = argument as Query;
      const onElement = Object.keys(sub).some((key) => key.startsWith('$') && !['$and', '$or', '$nor'].includes(key));
      return values.some(
        (value) =>
          Array.isArray(value) &&
          value.some((element) =>
            onElement
              ? Object.entries(sub).every(([name, inner]) => operatorHolds(name, inner, sub, [element], false))
              : isDocument(element) && referenceMatches(sub, element),
          ),
      );
    }
    default:
      throw new Error(`the reference does not know ${operator}`);
  }
}

export function referenceMatches(query: Query, document: unknown): boolean {
  return Object.entries(query).every(([key, value]) => {
    if (key === '$and') return (value as Query[]).every((item) => referenceMatches(item, document));
    if (key === '$or') return (value as Query[]).some((item) => referenceMatches(item, document));
    if (key === '$nor') return !(value as Query[]).some((item) => referenceMatches(item, document));
    const values = valuesAt(document, key.split('.'));
    if (!isOperatorObject(value)) return isEqual(values, true, value);
    return Object.entries(value).every(([operator, argument]) =>
      operatorHolds(operator, argument, value, values, true),
    );
  });
}
