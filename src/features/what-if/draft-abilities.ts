import { LRUCache } from 'lru-cache';
import { buildAbility, type PrincipalAbility, type StoredPolicy } from '../../policy/ability.ts';
import type { Condition } from '../../policy/conditions.ts';
import { conditionFields, placeholdersOnTheRow } from '../../policy/decision-inputs.ts';
import {
  claimPathOf,
  placeholdersUsed,
  placeholderValues,
  type PlaceholderContext,
} from '../../policy/placeholders.ts';
import type { Action } from '../../policy/vocabulary.ts';

/** Placeholders every decision row can resolve by itself: the id and roles are columns, the workspace is known. */

/**
 * The draft policy set as a replay needs it: one ability per distinct principal (roles and the
 * values of the placeholders the drafts use for those roles), built with the same code requests
 * use and cached in a bounded LRU, and the fields the drafts' conditions read per action and subject.
 */
export class DraftAbilities {
  private readonly policies: StoredPolicy[];
  private readonly workspaceId: string;
  private readonly placeholdersByRole = new Map<string, Set<string>>();
  private readonly abilities = new LRUCache<string, PrincipalAbility>({ max: 10_000 });
  private readonly fields = new WeakMap<PrincipalAbility, Map<string, Set<string>>>();

  constructor(policies: StoredPolicy[], workspaceId: string) {
    this.policies = policies;
    this.workspaceId = workspaceId;
    for (const policy of policies) {
      const used = new Set<string>();
      for (const rule of policy.rules) placeholdersUsed(rule.conditions, used);
      for (const role of policy.roles) {
        const known = this.placeholdersByRole.get(role) ?? new Set<string>();
        for (const placeholder of used) known.add(placeholder);
        this.placeholdersByRole.set(role, known);
      }
    }
  }

  /**
   * The drafts' ability for a logged principal, from what its decision kept of its attributes
   * (`kept`: placeholder text → value); `undefined` when the drafts use a placeholder it did not keep.
   */
  abilityFor(
    id: string,
    roles: readonly string[],
    kept: Record<string, unknown> | undefined,
  ): PrincipalAbility | undefined {
    const sorted = [...new Set(roles)].sort();
    const used = new Set<string>();
    for (const role of sorted) for (const placeholder of this.placeholdersByRole.get(role) ?? []) used.add(placeholder);
    const claims: Record<string, unknown> = {};
    let email: string | undefined;
    for (const placeholder of used) {
      if (placeholdersOnTheRow.has(placeholder)) continue;
      if (!kept || !Object.hasOwn(kept, placeholder)) return undefined;
      const value = kept[placeholder];
      const path = claimPathOf(placeholder);
      if (path !== undefined) {
        if (value !== null) claims[path] = value;
      } else if (typeof value === 'string') email = value;
    }
    const context: PlaceholderContext = {
      principal: { id, roles: sorted, claims, ...(email !== undefined && { email }) },
      workspaceId: this.workspaceId,
    };
    const key = `${JSON.stringify(sorted)}:${placeholderValues([...used].sort(), context)}`;
    let ability = this.abilities.get(key);
    if (!ability) {
      ability = buildAbility(this.policies, context);
      this.abilities.set(key, ability);
    }
    return ability;
  }

  /** The top-level fields the drafts' conditions read for `action` on `subject`, for this ability. */
  fieldsRead(ability: PrincipalAbility, action: Action, subject: string): Set<string> {
    let bySubject = this.fields.get(ability);
    if (!bySubject) this.fields.set(ability, (bySubject = new Map()));
    const key = `${action}\u0000${subject}`;
    let found = bySubject.get(key);
    if (!found) {
      found = new Set<string>();
      for (const rule of ability.ability.possibleRulesFor(action, subject)) {
        if (rule.conditions !== undefined) conditionFields(rule.ast as unknown as Condition, found);
      }
      bySubject.set(key, found);
    }
    return found;
  }
}
