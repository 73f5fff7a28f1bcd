import { Ability, fieldPatternMatcher, subject as asSubject, type RawRuleFrom, type AbilityTuple } from '@casl/ability';

/**
 * The key CASL's `subject()` tags an object with. An object that already holds it under another
 * type makes CASL throw, so no document a caller writes may carry it.
 */
export const subjectTypeKey = '__caslSubjectType__';

/** A record (or anything with fields) tagged with its subject type for CASL, built once per check. */
export const asRecordSubject = (subjectType: string, document: Record<string, unknown>): object =>
  asSubject(subjectType, document);
import { acceptsConditions, conditionsMatcher, type Condition } from './conditions.ts';
import { substitutePlaceholders, type PlaceholderContext } from './placeholders.ts';
import { isSystemSubject, type Action } from './vocabulary.ts';

/** A rule as stored: a CASL raw rule. */
export interface PolicyRule {
  action: string | string[];
  subject: string | string[];
  conditions?: Record<string, unknown>;
  fields?: string | string[];
  inverted?: boolean;
  reason?: string;
}

export interface StoredPolicy {
  id: string;
  name: string;
  version: number;
  roles: string[];
  rules: PolicyRule[];
}

/** Which stored rule decided: every decision names one, or none for the default deny. */
export interface Decision {
  allowed: boolean;
  policyId: string | null;
  policyVersion: number | null;
  ruleIndex: number | null;
  reason: string;
}

export interface RuleSource {
  policy: StoredPolicy;
  ruleIndex: number;
}

type CaslRule = RawRuleFrom<AbilityTuple, unknown>;

/** A decision no policy rule took: the platform admin's, an invitation's, a refusal on other grounds. */
export const ruleless = (allowed: boolean, reason: string): Decision => ({
  allowed,
  policyId: null,
  policyVersion: null,
  ruleIndex: null,
  reason,
});

const defaultDeny = ruleless(false, 'default deny');

/**
 * A principal's ability. CASL lets later rules override earlier ones; Cordon's contract is that
 * a deny beats an allow whatever the order, so every inverted rule is placed after every allow.
 * Conditions are matched with MongoDB semantics (see conditions.ts), not CASL's default matcher.
 */
export class PrincipalAbility {
  readonly ability: Ability;
  private readonly sources: Map<object, RuleSource>;

  constructor(ability: Ability, sources: Map<object, RuleSource>) {
    this.ability = ability;
    this.sources = sources;
  }

  /**
   * For a record type: with a resource, the conditions decide; without one it is the type-level
   * check, some allow rule (even a conditional one) and no unconditional deny. For a system
   * subject, unconditional rules only, whatever resource or field is named: its routes decide so,
   * having no record to test conditions on, and `/check`, a policy test or a replay that named a
   * resource must answer what the route would.
   */
  decide(action: Action, subjectType: string, resource?: Record<string, unknown>, field?: string): Decision {
    if (isSystemSubject(subjectType)) return this.decideUnconditionally(action, subjectType);
    return this.decideOn(action, resource ? asSubject(subjectType, { ...resource }) : subjectType, field);
  }

  /** The stored policy and rule index a CASL rule of this ability was built from. */
  sourceOf(rule: object): RuleSource | undefined {
    return this.sources.get(rule);
  }

  /** The same on a subject type or an object already tagged by `asRecordSubject`. */
  decideOn(action: Action, target: object | string, field?: string): Decision {
    const rule = this.ability.relevantRuleFor(action, target as never, field);
    return rule ? this.decisionOf(rule) : defaultDeny;
  }

  /**
   * The type-level check for system subjects (`Member`, `Policy`, …), whose routes have no record
   * to test conditions on. Conditions cannot be written on a system subject, so a conditional rule
   * that reaches one comes through `all` and is about records: it neither grants ("update all
   * where createdBy is me" is not "update every member") nor refuses ("cannot update locked
   * records" does not lock admins out of policies). Only unconditional rules decide.
   */
  private decideUnconditionally(action: Action, subjectType: string): Decision {
    const rule = this.ability.rulesFor(action, subjectType).find((candidate) => candidate.conditions === undefined);
    return rule ? this.decisionOf(rule) : defaultDeny;
  }

  private decisionOf(rule: { origin: object; inverted: boolean; reason?: string | undefined }): Decision {
    const source = this.sources.get(rule.origin);
    if (!source) return defaultDeny;
    const allowed = !rule.inverted;
    return {
      allowed,
      policyId: source.policy.id,
      policyVersion: source.policy.version,
      ruleIndex: source.ruleIndex,
      reason:
        rule.reason ?? `${allowed ? 'allowed' : 'denied'} by policy "${source.policy.name}" rule ${source.ruleIndex}`,
    };
  }

  /**
   * The rules that decide `action` on records of `subjectType`, highest priority first, exactly
   * those CASL consults for a record without a field (deny rules limited to fields do not hide
   * the record; allow rules limited to fields still grant it).
   */
  rulesFor(action: Action, subjectType: string): ApplicableRule[] {
    return this.ability.rulesFor(action, subjectType).flatMap((rule) => {
      const source = this.sources.get(rule.origin);
      if (!source) return [];
      const condition = rule.conditions === undefined ? undefined : (rule.ast as unknown as Condition);
      return [
        {
          inverted: rule.inverted,
          condition,
          policyId: source.policy.id,
          policyName: source.policy.name,
          ruleIndex: source.ruleIndex,
        },
      ];
    });
  }

  /** Whether any rule about `action` on the subject names fields, i.e. whether fields can differ at all. */
  hasFieldRules(action: Action, subjectType: string): boolean {
    return this.ability.possibleRulesFor(action, subjectType).some((rule) => rule.fields !== undefined);
  }

  /** A boolean decision on a subject object built once by the caller (see `asRecordSubject`). */
  can(action: Action, target: object, field?: string): boolean {
    return this.ability.can(action, target as never, field);
  }

  /**
   * Whether `field` is readable on every record the principal may read at all: no deny rule
   * names it, and every allow rule grants it. Filtering or sorting on anything less would
   * reveal values hidden from the principal.
   */
  fieldAlwaysPermitted(action: Action, subjectType: string, field: string): boolean {
    return this.ability
      .possibleRulesFor(action, subjectType)
      .every((rule) =>
        rule.inverted
          ? rule.fields === undefined || !rule.matchesField(field)
          : rule.fields === undefined || rule.matchesField(field),
      );
  }
}

/** A rule as the SQL compiler and the decision log see it. */
export interface ApplicableRule {
  inverted: boolean;
  condition: Condition | undefined;
  policyId: string;
  policyName: string;
  ruleIndex: number;
}

/**
 * Builds the ability of a principal from the policies of its roles. A rule whose placeholders do
 * not resolve for this principal fails closed: an allow rule is left out, a deny rule applies
 * without its conditions.
 */
export function buildAbility(policies: readonly StoredPolicy[], context: PlaceholderContext): PrincipalAbility {
  const roles = new Set(context.principal.roles);
  const allows: CaslRule[] = [];
  const denies: CaslRule[] = [];
  const sources = new Map<object, RuleSource>();
  for (const policy of policies) {
    if (!policy.roles.some((role) => roles.has(role))) continue;
    policy.rules.forEach((stored, ruleIndex) => {
      let conditions: unknown = stored.conditions;
      if (conditions !== undefined) {
        let substituted = substitutePlaceholders(conditions, context);
        // A value the grammar refuses (too long, NUL…) makes the placeholder unresolved, not a 500.
        if (substituted && !acceptsConditions(substituted.conditions)) substituted = undefined;
        if (!substituted && !stored.inverted) return;
        conditions = substituted?.conditions;
      }
      const rule = {
        action: stored.action,
        subject: stored.subject,
        inverted: stored.inverted ?? false,
        ...(conditions !== undefined ? { conditions } : {}),
        ...(stored.fields !== undefined ? { fields: stored.fields } : {}),
        ...(stored.reason !== undefined ? { reason: stored.reason } : {}),
      } as CaslRule;
      sources.set(rule, { policy, ruleIndex });
      (rule.inverted ? denies : allows).push(rule);
    });
  }
  const ability = new Ability([...allows, ...denies], {
    conditionsMatcher,
    fieldMatcher: fieldPatternMatcher,
  });
  return new PrincipalAbility(ability, sources);
}
