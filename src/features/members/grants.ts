import type { EntityManager } from '@mikro-orm/postgresql';
import type { Request } from 'express';
import type { AccessControl } from '../../policy/access.ts';
import { ProblemError } from '../../http/errors.ts';
import type { PolicyStore } from '../../policy/policy-store.ts';

/**
 * Who may hand out (or take away) which roles. The platform admin and principals whose policy
 * allows `manage` on `Member` unconditionally may change any role; anyone else only roles they
 * hold themselves.
 */
export interface Grantor {
  unrestricted: boolean;
  roles: readonly string[];
  /** Logs the refusal as a decision of its own. */
  refused: (reason: string) => Promise<void>;
}

export async function checkGrant(grantor: Grantor, roles: readonly string[]): Promise<void> {
  if (grantor.unrestricted) return;
  const beyond = roles.filter((role) => !grantor.roles.includes(role));
  if (!beyond.length) return;
  const reason = `may only grant or take away roles held by the grantor; not ${beyond.map((role) => `"${role}"`).join(', ')}`;
  await grantor.refused(reason);
  throw new ProblemError('forbidden', reason);
}

/**
 * The roles whose policies allow managing members, for the last-admin rule. Member changes of a
 * workspace take a transaction-level advisory lock first, so two concurrent demotions cannot both
 * pass the check.
 */
export async function managerRoles(em: EntityManager, policies: PolicyStore, workspaceId: string): Promise<Set<string>> {
  await em.execute("select pg_advisory_xact_lock(hashtextextended('cordon.members:' || ?, 0))", [workspaceId]);
  const [workspace] = await em.execute<{ policy_set_version: string }[]>('select policy_set_version from workspaces where id = ?', [workspaceId]);
  const rows = await em.execute<{ role: string }[]>('select distinct unnest(roles) as role from policies where workspace_id = ?', [workspaceId]);
  const scope = { workspaceId, policySetVersion: Number(workspace?.policy_set_version ?? 0) };
  const managers = new Set<string>();
  for (const { role } of rows) {
    const ability = await policies.abilityFor({ id: 'last-admin-check', roles: [role], claims: {} }, scope);
    if (ability.decideUnconditionally('manage', 'Member').allowed) managers.add(role);
  }
  return managers;
}

/** Refuses a change that would leave no member able to manage members, where one could before. */
export async function keepAManager(em: EntityManager, policies: PolicyStore, workspaceId: string, userId: string, rolesAfter: readonly string[] | undefined): Promise<void> {
  const managers = await managerRoles(em, policies, workspaceId);
  const [current] = await em.execute<{ roles: string[] }[]>('select roles from members where workspace_id = ? and user_id = ?', [workspaceId, userId]);
  const manages = (roles: readonly string[]) => roles.some((role) => managers.has(role));
  if (!current || !manages(current.roles) || (rolesAfter && manages(rolesAfter))) return;
  const others = await em.execute<{ roles: string[] }[]>('select roles from members where workspace_id = ? and user_id <> ?', [workspaceId, userId]);
  if (!others.some((other) => manages(other.roles))) {
    throw new ProblemError('last_admin', `"${userId}" is the last member who can manage members; make someone else one first`);
  }
}

/**
 * The grantor behind a request: the platform admin, or the principal and its policies. A refusal
 * is logged as a denial of the route's own action (create, update…) on its subject, naming the
 * rule that withheld `manage` on `Member`.
 */
export async function grantorOf(request: Request, access: AccessControl, resourceId?: string): Promise<Grantor> {
  if (request.platformAdmin || !request.principal) return { unrestricted: true, roles: [], refused: async () => undefined };
  const requested = request.pendingDecision;
  if (!requested) throw new Error('grantorOf needs the route’s pending decision');
  const ability = await access.abilityOf(request);
  const decision = ability.decideUnconditionally('manage', 'Member');
  return {
    unrestricted: decision.allowed,
    roles: request.principal.roles,
    refused: (reason) =>
      access.recordNow(request, [{
        action: requested.action, operation: requested.operation, subject: requested.subject, resourceId: resourceId ?? null,
        decision: { allowed: false, policyId: decision.policyId, policyVersion: decision.policyVersion, ruleIndex: decision.ruleIndex, reason },
      }]),
  };
}
