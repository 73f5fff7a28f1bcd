import { parseConditions } from './conditions.ts';
import { placeholderErrors, withSampleValues } from './placeholders.ts';
import { actions, anySubject, isSystemSubject } from './vocabulary.ts';

export interface RuleError {
  pointer: string;
  detail: string;
}

export interface RuleInput {
  action: string | string[];
  subject: string | string[];
  conditions?: Record<string, unknown> | undefined;
  fields?: string | string[] | undefined;
  inverted?: boolean | undefined;
  reason?: string | undefined;
}

const list = (value: string | string[]) => (Array.isArray(value) ? value : [value]);
const at = (base: string, value: string | string[], index: number) =>
  Array.isArray(value) ? `${base}/${index}` : base;

/**
 * Checks rules against what exists in the workspace: known actions, subjects that are system
 * subjects, existing structures or `all`, conditions in the supported MongoDB subset with
 * well-placed placeholders, and `fields` only on structures that have them. Every error points
 * at the offending part, e.g. `/rules/2/conditions/title/$regex`.
 */
export function validateRules(
  rules: readonly RuleInput[],
  structures: ReadonlyMap<string, readonly string[]>,
): RuleError[] {
  const errors: RuleError[] = [];
  rules.forEach((rule, index) => {
    const base = `/rules/${index}`;
    list(rule.action).forEach((action, position) => {
      if (!(actions as readonly string[]).includes(action)) {
        errors.push({
          pointer: at(`${base}/action`, rule.action, position),
          detail: `unknown action "${action}"; use one of ${actions.join(', ')}`,
        });
      }
    });
    const subjects = list(rule.subject);
    subjects.forEach((subject, position) => {
      if (subject !== anySubject && !isSystemSubject(subject) && !structures.has(subject)) {
        errors.push({
          pointer: at(`${base}/subject`, rule.subject, position),
          detail: `"${subject}" is neither a system subject, a structure of this workspace, nor "all"`,
        });
      }
    });
    if (rule.conditions !== undefined && subjects.some(isSystemSubject)) {
      errors.push({
        pointer: `${base}/conditions`,
        detail: 'conditions apply to records only; a rule on a system subject is all or nothing',
      });
    } else if (rule.conditions !== undefined) {
      const misplaced = placeholderErrors(rule.conditions, `${base}/conditions`);
      errors.push(...misplaced);
      if (!misplaced.length)
        errors.push(...parseConditions(withSampleValues(rule.conditions), `${base}/conditions`).errors);
    }
    if (rule.fields !== undefined) {
      const owners = subjects.map((subject) => structures.get(subject));
      if (owners.some((fields) => fields === undefined)) {
        errors.push({
          pointer: `${base}/fields`,
          detail: 'fields apply only to structures; every subject of this rule must be a structure',
        });
      } else {
        list(rule.fields).forEach((field, position) => {
          const name = field;
          if (name.includes('.')) {
            errors.push({
              pointer: at(`${base}/fields`, rule.fields!, position),
              detail: 'field rules name top-level fields; nested paths are not enforced, so they are refused',
            });
          } else if (!name.includes('*') && !owners.every((fields) => fields!.includes(name))) {
            errors.push({
              pointer: at(`${base}/fields`, rule.fields!, position),
              detail: `"${name}" is not a field of ${subjects.join(', ')}`,
            });
          }
        });
      }
    }
  });
  return errors;
}
