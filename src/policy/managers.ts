import { sql } from 'kysely';
import type { Scope } from '../db/database.ts';
import { ProblemError } from '../http/errors.ts';
import { buildAbility, type StoredPolicy } from './ability.ts';
import { loadPolicies } from './policy-store.ts';

/**
 * Serialises, per workspace and to the end of the transaction, the changes that must see each
 * other: members, policies, and the stored policy tests a policy change is checked against.
 */
export async function lockMembership(scope: Scope): Promise<void> {
  await scope.query(
    sql`select pg_advisory_xact_lock(hashtextextended('cordon.members:' || ${scope.workspaceId}::text, 0))`,
  );
}

/**
 * The last manager of a workspace: a change to members or to policies may not leave no member
 * able to manage members where one could before. Decided on each member's combined roles (a role
 * that denies `manage` cancels one that grants it), from the policies as the transaction sees
 * them, under a transaction-level advisory lock that serialises such changes per workspace.
 */
export class Managers {
  private readonly scope: Scope;
  private readonly policies: StoredPolicy[];

  private constructor(scope: Scope, policies: StoredPolicy[]) {
    this.scope = scope;
    this.policies = policies;
  }

  /** Takes the workspace's membership lock, then reads the policies. */
  static async of(scope: Scope): Promise<Managers> {
    await lockMembership(scope);
    return new Managers(scope, await loadPolicies(scope));
  }

  /** Whether these roles together may manage members under the policies read by `of` (or `policies`). */
  manage(roles: readonly string[], policies = this.policies): boolean {
    if (!roles.length) return false;
    const principal = { id: 'last-manager-check', roles: [...roles], claims: {} };
    return buildAbility(policies, { principal, workspaceId: this.scope.workspaceId }).decide('manage', 'Member')
      .allowed;
  }

  /** Members' roles, all of them or all but one user. */
  async memberRoles(except?: string): Promise<string[][]> {
    const rows = await this.scope.query(
      sql<{ roles: string[] }>`select roles from members
        where workspace_id = ${this.scope.workspaceId}::uuid and user_id is distinct from ${except ?? null}::text`,
    );
    return rows.map((row) => row.roles);
  }

  /** Refuses a member change that would leave no member able to manage members. */
  async keepOne(
    userId: string,
    rolesBefore: readonly string[],
    rolesAfter: readonly string[] | undefined,
  ): Promise<void> {
    if (!this.manage(rolesBefore) || (rolesAfter && this.manage(rolesAfter))) return;
    if ((await this.memberRoles(userId)).some((roles) => this.manage(roles))) return;
    throw lastManager(`"${userId}" is the last member who can manage members; make someone else one first`);
  }

  /** Refuses a policy change after which no member could manage members, where one could before. */
  async keepOneAfterPolicyChange(): Promise<void> {
    const members = await this.memberRoles();
    if (!members.some((roles) => this.manage(roles))) return;
    const after = await loadPolicies(this.scope);
    if (members.some((roles) => this.manage(roles, after))) return;
    throw lastManager('After this change no member could manage members; keep a policy that lets someone do so');
  }
}

const lastManager = (detail: string) => new ProblemError('last_admin', detail);
