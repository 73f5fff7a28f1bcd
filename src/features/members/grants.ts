import type { EntityManager } from '@mikro-orm/postgresql';
import type { Request } from 'express';
import type { AccessControl } from '../../policy/access.ts';
import { ProblemError } from '../../http/errors.ts';
import { buildAbility } from '../../policy/ability.ts';
import { loadPolicies } from '../../policy/policy-store.ts';

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
 * Whether a set of roles, together, may manage members: decided on the combined roles (a role
 * that denies `manage` cancels another that grants it), from the policies as this transaction
 * sees them. Member changes of a workspace take a transaction-level advisory lock first, so two
 * concurrent demotions cannot both pass the check; nothing here waits for another connection.
 */
async function managesMembers(em: EntityManager, workspaceId: string): Promise<(roles: readonly string[]) => boolean> {
  await em.execute("select pg_advisory_xact_lock(hashtextextended('cordon.members:' || ?, 0))", [workspaceId]);
  const policies = await loadPolicies(em, workspaceId);
  return (roles) =>
    roles.length > 0 &&
    buildAbility(policies, {
      principal: { id: 'last-admin-check', roles: [...roles], claims: {} },
      workspaceId,
    }).decide('manage', 'Member').allowed;
}

/** Refuses a change that would leave no member able to manage members, where one could before. */
export async function keepAManager(
  em: EntityManager,
  workspaceId: string,
  userId: string,
  rolesAfter: readonly string[] | undefined,
): Promise<void> {
  const manages = await managesMembers(em, workspaceId);
  const [current] = await em.execute<{ roles: string[] }[]>(
    'select roles from members where workspace_id = ? and user_id = ?',
    [workspaceId, userId],
  );
  if (!current || !manages(current.roles) || (rolesAfter && manages(rolesAfter))) return;
  const others = await em.execute<{ roles: string[] }[]>(
    'select roles from members where workspace_id = ? and user_id <> ?',
    [workspaceId, userId],
  );
  if (!others.some((other) => manages(other.roles))) {
    throw new ProblemError(
      'last_admin',
      `"${userId}" is the last member who can manage members; make someone else one first`,
    );
  }
}

/**
 * The grantor behind a request: the platform admin, or the principal and its policies. A refusal
 * is logged as a denial of the route's own action (create, update…) on its subject, naming the
 * rule that withheld `manage` on `Member`.
 */
export async function grantorOf(request: Request, access: AccessControl, resourceId?: string): Promise<Grantor> {
  if (request.platformAdmin || !request.principal)
    return { unrestricted: true, roles: [], refused: async () => undefined };
  const requested = request.pendingDecision;
  if (!requested) throw new Error('grantorOf needs the route’s pending decision');
  const ability = await access.abilityOf(request);
  const decision = ability.decide('manage', 'Member');
  return {
    unrestricted: decision.allowed,
    roles: request.principal.roles,
    refused: (reason) =>
      access.recordNow(request, [
        {
          action: requested.action,
          operation: requested.operation,
          subject: requested.subject,
          resourceId: resourceId ?? null,
          decision: {
            allowed: false,
            policyId: decision.policyId,
            policyVersion: decision.policyVersion,
            ruleIndex: decision.ruleIndex,
            reason,
          },
        },
      ]),
  };
}
