import { subject as asSubject } from '@casl/ability';
import type { Decision, PrincipalAbility } from './ability.ts';
import { diagnose, type ConditionFailure } from './condition-diagnosis.ts';
import type { Condition } from './conditions.ts';
import { isSystemSubject, type Action } from './vocabulary.ts';

export interface RuleReference {
  policyId: string;
  policyName: string;
  ruleIndex: number;
}

export interface ExplainedRule extends RuleReference {
  action: string | string[];
  subject: string | string[];
  effect: 'allow' | 'deny';
  /** The rule's action, subject (and fields) cover the check. */
  applies: boolean;
  /** Its conditions held on the resource; null without a resource or without conditions. */
  matched: boolean | null;
  failed?: ConditionFailure[];
}

export interface Explanation {
  rules: ExplainedRule[];
  decidedBy: RuleReference | null;
  reason: string;
}

/**
 * How `decision` came about: every rule of the principal's ability in evaluation order (highest
 * priority first, so deny rules before allow rules), whether it covers the check, whether its
 * conditions held, and for those that did not, the leaves that failed. Re-walks what
 * `PrincipalAbility.decide` did, so it costs nothing unless asked for; the decision itself is
 * taken as given, never recomputed here.
 */
export function explain(
  ability: PrincipalAbility,
  decision: Decision,
  action: Action,
  subjectType: string,
  resource?: Record<string, unknown>,
  field?: string,
): Explanation {
  // The type-level check of a system subject ignores conditional rules (see PrincipalAbility.decide).
  const unconditionalOnly = !resource && field === undefined && isSystemSubject(subjectType);
  const covering = new Map<object, ReturnType<typeof ability.ability.rulesFor>[number]>();
  for (const rule of ability.ability.rulesFor(action, subjectType, field)) covering.set(rule.origin, rule);
  const target = resource ? asSubject(subjectType, { ...resource }) : undefined;
  // CASL gives later rules priority; abilities are built allows first, denies last.
  const rules = [...ability.ability.rules].reverse().flatMap((raw): ExplainedRule[] => {
    const source = ability.sourceOf(raw);
    if (!source) return [];
    const rule = covering.get(raw);
    const applies = rule !== undefined && !(unconditionalOnly && rule.conditions !== undefined);
    let matched: boolean | null = null;
    let failed: ConditionFailure[] | undefined;
    if (applies && rule.conditions !== undefined && target) {
      matched = rule.matchesConditions(target);
      if (!matched) failed = diagnose(rule.ast as unknown as Condition, target);
    }
    return [
      {
        policyId: source.policy.id,
        policyName: source.policy.name,
        ruleIndex: source.ruleIndex,
        action: raw.action,
        subject: raw.subject as string | string[],
        effect: raw.inverted ? 'deny' : 'allow',
        applies,
        matched,
        ...(failed && { failed }),
      },
    ];
  });
  const decider = rules.find((rule) => rule.policyId === decision.policyId && rule.ruleIndex === decision.ruleIndex);
  return {
    rules,
    decidedBy: decider
      ? { policyId: decider.policyId, policyName: decider.policyName, ruleIndex: decider.ruleIndex }
      : null,
    reason: decision.reason,
  };
}
