import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { Principal } from '../auth/principal.ts';
import type { Database, Scope } from '../db/database.ts';
import { buildAbility, type PrincipalAbility, type StoredPolicy } from './ability.ts';
import { planOf, type InputsPlan } from './decision-inputs.ts';
import { placeholdersUsed, placeholderValues, type PlaceholderContext } from './placeholders.ts';

interface PolicySet {
  policies: StoredPolicy[];
  /** The placeholders each role's policies use: only those can make two holders' abilities differ. */
  placeholdersByRole: Map<string, Set<string>>;
  /** What the whole set references: what a decision keeps of its inputs (decision-inputs.ts). */
  plan: InputsPlan;
}

/** A workspace's policies in evaluation order, as the caller's transaction (in its scope) sees them. */
export function loadPolicies(scope: Scope): Promise<StoredPolicy[]> {
  return scope.query(
    sql<StoredPolicy>`select id, name, version, roles, rules from policies
      where workspace_id = ${scope.workspaceId}::uuid order by created_at, id`,
  );
}

export interface PolicyScope {
  workspaceId: string;
  /** Moves on with every policy change, so cached abilities of an older set are never used. */
  policySetVersion: number;
}

/**
 * Abilities are cached per (workspace, policy-set version, roles, values of the placeholders those
 * roles' policies use): every viewer shares one ability unless a viewer policy names the principal,
 * and realtime streams group their subscribers by it. A policy
 * change bumps the workspace's policy-set version in the same transaction, so a stale entry is
 * simply never looked up again; the LRU bound reclaims it.
 */
export class PolicyStore {
  private readonly sets = new LRUCache<string, PolicySet>({ max: 1_000 });
  private readonly abilities = new LRUCache<string, PrincipalAbility>({ max: 10_000 });
  private readonly database: Database;

  constructor(database: Database) {
    this.database = database;
  }

  async abilityFor(
    principal: Pick<Principal, 'id' | 'email' | 'roles' | 'claims'>,
    scope: PolicyScope,
  ): Promise<PrincipalAbility> {
    const set = await this.policySet(scope);
    const context: PlaceholderContext = { principal, workspaceId: scope.workspaceId };
    const roles = [...new Set(principal.roles)].sort();
    const used = new Set<string>();
    for (const role of roles) for (const placeholder of set.placeholdersByRole.get(role) ?? []) used.add(placeholder);
    const key = `${scope.workspaceId}:${scope.policySetVersion}:${JSON.stringify(roles)}:${placeholderValues([...used].sort(), context)}`;
    let ability = this.abilities.get(key);
    if (!ability) {
      ability = buildAbility(set.policies, { ...context, principal: { ...principal, roles } });
      this.abilities.set(key, ability);
    }
    return ability;
  }

  /** The placeholders and fields the workspace's policies reference, for the inputs decisions keep. */
  async inputsPlan(scope: PolicyScope): Promise<InputsPlan> {
    return (await this.policySet(scope)).plan;
  }

  private async policySet(scope: PolicyScope): Promise<PolicySet> {
    const key = `${scope.workspaceId}:${scope.policySetVersion}`;
    const cached = this.sets.get(key);
    if (cached) return cached;
    const rows = await this.database.withWorkspace(scope.workspaceId, loadPolicies, { readOnly: true });
    const placeholdersByRole = new Map<string, Set<string>>();
    for (const row of rows) {
      const placeholders = new Set<string>();
      for (const rule of row.rules) placeholdersUsed(rule.conditions, placeholders);
      for (const role of row.roles) {
        const known = placeholdersByRole.get(role) ?? new Set<string>();
        for (const placeholder of placeholders) known.add(placeholder);
        placeholdersByRole.set(role, known);
      }
    }
    const set: PolicySet = { policies: rows, placeholdersByRole, plan: planOf(rows.flatMap((row) => row.rules)) };
    this.sets.set(key, set);
    return set;
  }
}
