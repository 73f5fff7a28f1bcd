import { parseConditions, type Condition } from './conditions.ts';
import { placeholdersUsed, placeholderValue, withSampleValues, type PlaceholderContext } from './placeholders.ts';
import type { PolicyRule } from './ability.ts';

/**
 * What a decision was made on, kept on its row (`decisions.inputs`) so that it can be replayed
 * against draft policies (what-if). Only what conditions can read, within a byte budget:
 *
 * - `principal`: the values, for this principal, of the placeholders the workspace's policies used
 *   when it was decided (`"${principal.email}"`, `"${principal.claims.team}"`…); `null` for one
 *   that did not resolve, a claim with text PostgreSQL cannot store (NUL, a lone surrogate)
 *   included. Those the row has already (`placeholdersOnTheRow`: id, roles, the workspace) are not
 *   repeated. Nothing else of the token is kept.
 * - `documents`: the record document(s) the conditions were tested on — one, or for an update the
 *   record before and after the change; for a check, the resource it named. Whole while the inputs
 *   fit in the budget; otherwise cut to the fields the workspace's conditions referenced (`kept`
 *   names them, system fields always stay), and dropped (`dropped: true`) if even that does not fit.
 *
 * An empty object means nothing was needed; a row without inputs (null) was logged before they
 * were kept.
 */
// A type, not an interface: the export's schema reads it as a loose object.
export type DecisionInputs = {
  principal?: Record<string, unknown>;
  documents?: Record<string, unknown>[];
  kept?: string[];
  dropped?: true;
};

/** What a workspace's policies referenced when a decision was taken: the plan for its inputs. */
export interface InputsPlan {
  placeholders: readonly string[];
  fields: ReadonlySet<string>;
}

/** The budget of one decision's inputs, as JSON bytes. */
export const inputsBudget = 2_048;

const systemFields = ['id', 'createdBy', 'createdAt', 'updatedAt'];

/** The top-level document fields a condition reads. */
export function conditionFields(condition: Condition, found: Set<string>): Set<string> {
  switch (condition.kind) {
    case 'and':
    case 'or':
    case 'nor':
      for (const inner of condition.conditions) conditionFields(inner, found);
      break;
    default:
      if (condition.path[0] !== undefined) found.add(condition.path[0]);
  }
  return found;
}

/** Placeholders whose values every decision row has in its columns (principal_id, principal_roles, workspace_id). */
export const placeholdersOnTheRow: ReadonlySet<string> = new Set([
  '${principal.id}',
  '${principal.roles}',
  '${workspace.id}',
]);

/** The placeholders (but those on the row) and top-level fields a set of stored rules references. */
export function planOf(rules: readonly PolicyRule[]): InputsPlan {
  const placeholders = new Set<string>();
  const fields = new Set<string>();
  for (const rule of rules) {
    if (rule.conditions === undefined) continue;
    placeholdersUsed(rule.conditions, placeholders);
    const parsed = parseConditions(withSampleValues(rule.conditions), '');
    if (parsed.condition) conditionFields(parsed.condition, fields);
  }
  return { placeholders: [...placeholders].filter((text) => !placeholdersOnTheRow.has(text)).sort(), fields };
}

/** Whether JSON text fits the budget: a UTF-16 code unit is at most 3 bytes of UTF-8, so most need no count. */
const fits = (text: string, budget: number) => text.length * 3 <= budget || Buffer.byteLength(text) <= budget;

/**
 * The inputs of one request's decisions as JSON text: the principal's placeholder values written
 * once for the request, each decision's documents once (JSON.stringify, not the canonical form:
 * the same bytes up to key order, at a fraction of the cost; the chain hashes the stored value).
 */
export class InputsWriter {
  private readonly plan: InputsPlan | undefined;
  /** `"principal":{…},` or nothing. */
  private readonly principal: string;

  constructor(plan: InputsPlan | undefined, context: PlaceholderContext | undefined) {
    this.plan = plan;
    let principal = '';
    if (plan && context && plan.placeholders.length) {
      const values = Object.fromEntries(
        plan.placeholders.map((text) => [text, placeholderValue(text, context) ?? null]),
      );
      const text = JSON.stringify(values);
      // A token's claim can be anything; one that does not fit half the budget is not kept.
      if (fits(text, inputsBudget / 2)) principal = `"principal":${text},`;
    }
    this.principal = principal;
  }

  /** The inputs of one decision on these documents, within `inputsBudget`. */
  json(documents: readonly Record<string, unknown>[] | undefined): string {
    if (!documents?.length) return `{${this.principal.slice(0, -1)}}`;
    const whole = `{${this.principal}"documents":${JSON.stringify(documents)}}`;
    if (fits(whole, inputsBudget)) return whole;
    const kept = [...new Set([...systemFields, ...(this.plan?.fields ?? [])])].sort();
    const cut = documents.map((document) =>
      Object.fromEntries(
        kept.filter((field) => Object.hasOwn(document, field)).map((field) => [field, document[field]]),
      ),
    );
    const trimmed = `{${this.principal}"documents":${JSON.stringify(cut)},"kept":${JSON.stringify(kept)}}`;
    if (fits(trimmed, inputsBudget)) return trimmed;
    return `{${this.principal}"dropped":true}`;
  }
}
