import { readClaim } from '../auth/claims.ts';
import { escapePointer, isPlainObject, storable } from '../json.ts';

/**
 * `${…}` placeholders in policy conditions. They are allowed only as a whole JSON string value and
 * are replaced by the typed value after the conditions were parsed as JSON, so a hostile value
 * (`{"$ne":null}`, `' OR 1=1`) is only ever a literal string.
 */
const placeholderPattern =
  /^\$\{(principal\.id|principal\.email|principal\.roles|principal\.claims\.([A-Za-z0-9_:/.-]{1,200})|workspace\.id)\}$/;

/** Operators whose value is a whole list: the only places a list placeholder may stand. */
const listOperators = new Set(['$in', '$nin', '$all']);

export interface PlaceholderContext {
  principal: { id: string; email?: string | undefined; roles: string[]; claims: Record<string, unknown> };
  workspaceId: string;
}

export interface PlaceholderError {
  pointer: string;
  detail: string;
}

type Position = 'scalar' | 'list';

/** Visits every string value with its pointer and whether it stands where a list is expected. */
function visitStrings(
  value: unknown,
  pointer: string,
  position: Position,
  visit: (text: string, pointer: string, position: Position) => unknown,
): unknown {
  if (typeof value === 'string') return visit(value, pointer, position);
  if (Array.isArray(value))
    return value.map((item, index) => visitStrings(item, `${pointer}/${index}`, 'scalar', visit));
  if (isPlainObject(value)) {
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [
        key,
        visitStrings(item, `${pointer}/${escapePointer(key)}`, listOperators.has(key) ? 'list' : 'scalar', visit),
      ]),
    );
  }
  return value;
}

const rootOf = (match: RegExpExecArray) => (match[2] !== undefined ? 'principal.claims' : match[1]!);

/** Finds misplaced or unknown placeholders; an empty list means the conditions may be stored. */
export function placeholderErrors(conditions: unknown, pointer: string): PlaceholderError[] {
  const errors: PlaceholderError[] = [];
  visitStrings(conditions, pointer, 'scalar', (text, at, position) => {
    if (!text.includes('${')) return;
    const match = placeholderPattern.exec(text);
    if (!match) {
      errors.push({
        pointer: at,
        detail:
          'a placeholder must be the whole value and one of ${principal.id}, ${principal.email}, ${principal.roles}, ${principal.claims.<path>}, ${workspace.id}',
      });
      return;
    }
    const root = rootOf(match);
    if (/\/\$(regex|options)$/.test(at)) {
      // A substituted value would be read as a pattern, not as text: "${principal.claims.team}" = ".*" matches all.
      errors.push({ pointer: at, detail: 'placeholders cannot be used as a $regex pattern or its $options' });
    } else if (root === 'principal.roles' && position !== 'list') {
      errors.push({
        pointer: at,
        detail: '${principal.roles} is a list: use it as the whole value of $in, $nin or $all',
      });
    } else if (root !== 'principal.roles' && root !== 'principal.claims' && position === 'list') {
      errors.push({ pointer: at, detail: `\${${root}} is a single value: put it inside the list` });
    }
  });
  return errors;
}

/** Stand-in values of the right shape, so the conditions can be validated before any principal exists. */
export function withSampleValues(conditions: unknown): unknown {
  return visitStrings(conditions, '', 'scalar', (text, _pointer, position) =>
    placeholderPattern.test(text) ? (position === 'list' ? ['placeholder'] : 'placeholder') : text,
  );
}

/**
 * Whether PostgreSQL can store a value in JSON: no text, keys included, with NUL or a lone
 * surrogate. A walk with a stack of its own: a token's claim can nest as deep as its header allows.
 */
function storableValue(value: unknown): boolean {
  const pending = [value];
  while (pending.length) {
    const node = pending.pop();
    if (typeof node === 'string') {
      if (!storable(node)) return false;
    } else if (Array.isArray(node)) {
      for (const item of node) pending.push(item);
    } else if (isPlainObject(node)) {
      for (const [key, item] of Object.entries(node)) {
        if (!storable(key)) return false;
        pending.push(item);
      }
    }
  }
  return true;
}

const isScalar = (value: unknown) =>
  typeof value === 'string' || (typeof value === 'number' && Number.isFinite(value)) || typeof value === 'boolean';

function resolve(match: RegExpExecArray, context: PlaceholderContext): unknown {
  switch (rootOf(match)) {
    case 'principal.id':
      return context.principal.id;
    case 'principal.email':
      return context.principal.email;
    case 'principal.roles':
      return context.principal.roles;
    case 'workspace.id':
      return context.workspaceId;
    default: {
      // Claims are the token's, often user-editable metadata: one PostgreSQL cannot store would
      // break the statement that logs the decision's inputs, so it does not resolve (null there).
      const value = readClaim(context.principal.claims, match[2]!);
      return storableValue(value) ? value : undefined;
    }
  }
}

/** The value one placeholder text takes for a principal (undefined: it does not resolve, or is not a placeholder). */
export function placeholderValue(text: string, context: PlaceholderContext): unknown {
  const match = placeholderPattern.exec(text);
  return match ? resolve(match, context) : undefined;
}

/** The claim path of a `${principal.claims.<path>}` placeholder, or undefined for the other placeholders. */
export function claimPathOf(text: string): string | undefined {
  return placeholderPattern.exec(text)?.[2];
}

const unresolved = Symbol('unresolved');

/**
 * Replaces placeholders by typed values. A placeholder that resolves to nothing, or to a value of
 * the wrong shape (an object, a list where one value belongs), makes the whole conditions
 * unresolvable: the caller then fails closed.
 */
export function substitutePlaceholders(
  conditions: unknown,
  context: PlaceholderContext,
): { conditions: unknown } | undefined {
  let failed = false;
  const substituted = visitStrings(conditions, '', 'scalar', (text, _pointer, position) => {
    const match = placeholderPattern.exec(text);
    if (!match) return text;
    const value = resolve(match, context);
    const fits = position === 'list' ? Array.isArray(value) && value.every(isScalar) : isScalar(value);
    if (!fits) failed = true;
    return fits ? value : unresolved;
  });
  return failed ? undefined : { conditions: substituted };
}

/** The placeholder texts a set of conditions uses, for the ability cache key. */
export function placeholdersUsed(conditions: unknown, found: Set<string>): void {
  visitStrings(conditions, '', 'scalar', (text) => {
    if (placeholderPattern.test(text)) found.add(text);
  });
}

/** The values the given placeholders take for a principal, as a stable cache-key fragment. */
export function placeholderValues(placeholders: Iterable<string>, context: PlaceholderContext): string {
  const values: unknown[] = [];
  for (const text of placeholders) {
    const match = placeholderPattern.exec(text);
    values.push(match ? (resolve(match, context) ?? null) : null);
  }
  return JSON.stringify(values);
}
