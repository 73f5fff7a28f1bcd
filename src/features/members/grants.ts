import type { Caller } from '../../policy/access.ts';
import { Refusal } from '../../policy/ruling.ts';

/**
 * Who may hand out (or take away) which roles. The platform admin and principals whose policy
 * allows `manage` on `Member` unconditionally may change any role; anyone else only roles they
 * hold themselves. A refusal is the request's decision: the route's own action (create, update…)
 * refused, naming the rule that withheld `manage` on `Member`.
 */
export function checkGrant(caller: Caller, roles: readonly string[]): void {
  if (!caller.ability) return;
  const manage = caller.ability.decide('manage', 'Member');
  if (manage.allowed) return;
  const beyond = roles.filter((role) => !caller.principal.roles.includes(role));
  if (!beyond.length) return;
  const named = beyond.map((role) => `"${role}"`).join(', ');
  throw new Refusal({ ...manage, reason: `may only grant or take away roles held by the grantor; not ${named}` });
}
