import { sql } from 'kysely';
import type { Database, Scope } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import type { Decision, StoredPolicy } from '../../policy/ability.ts';
import type { AccessControl, Caller } from '../../policy/access.ts';
import type { Ruling } from '../../policy/ruling.ts';
import { validateRules } from '../../policy/validate.ts';
import { DraftAbilities } from './draft-abilities.ts';
import { replay, type LoggedDecision } from './replay.ts';
import type { Direction, PolicyDraft, WhatIfBody, WhatIfResponse } from './what-if.schema.ts';

/** A draft without an id stands for a new policy: named by its place in the body, reported with id null. */
const draftId = (index: number) => `00000000-0000-4000-8000-${index.toString().padStart(12, '0')}`;

/**
 * What-if: replays the logged decisions of a window against draft policies and counts what would
 * flip. The window streams from a server-side cursor in append order, so memory holds one chunk,
 * the abilities of the distinct principals (bounded) and the counts — never the window.
 */
export class WhatIfService {
  private readonly database: Database;
  private readonly access: AccessControl;

  constructor(database: Database, access: AccessControl) {
    this.database = database;
    this.access = access;
  }

  run(caller: Caller, body: WhatIfBody): Promise<WhatIfResponse> {
    return this.access.read(caller, async (ruling) => {
      requireDecisionLog(caller, ruling);
      return this.database.withWorkspace(
        caller.workspaceId,
        async (scope) => {
          const policies = await drafts(scope, body.policies);
          return replayWindow(scope, policies, body);
        },
        { readOnly: true },
      );
    });
  }
}

/** The route needs `read` on `Policy`; reading the log it replays also needs `read` on `DecisionLog`. */
function requireDecisionLog(caller: Caller, ruling: Ruling): void {
  const decision = caller.ability?.decide('read', 'DecisionLog');
  if (decision && !decision.allowed) {
    ruling.refine({ subject: 'DecisionLog' });
    ruling.require(decision);
  }
}

/** The drafts, validated like a stored policy (pointers under `/policies/<index>`), in body order. */
async function drafts(scope: Scope, input: readonly PolicyDraft[]): Promise<StoredPolicy[]> {
  const rows = await scope.query(
    sql<{ name: string; fields: Record<string, unknown> }>`select name, fields from structures
      where workspace_id = ${scope.workspaceId}::uuid`,
  );
  const structures = new Map(rows.map((row) => [row.name, Object.keys(row.fields)]));
  const seen = new Set<string>();
  const errors = input.flatMap((draft, index) => {
    const id = draft.id?.toLowerCase();
    const repeated = id !== undefined && seen.has(id);
    if (id !== undefined) seen.add(id);
    return [
      ...(repeated ? [{ pointer: `/policies/${index}/id`, detail: 'another draft has this id' }] : []),
      ...validateRules(draft.rules, structures).map((error) => ({
        ...error,
        pointer: `/policies/${index}${error.pointer}`,
      })),
    ].map((error) => ({ ...error, in: 'body' as const }));
  });
  if (errors.length) throw new ProblemError('validation_failed', 'The draft policies are invalid', { errors });
  return input.map((draft, index) => ({
    id: draft.id?.toLowerCase() ?? draftId(index),
    name: draft.name,
    version: 0,
    roles: draft.roles,
    rules: draft.rules,
  }));
}

const chunkRows = 2_000;

async function replayWindow(scope: Scope, policies: StoredPolicy[], body: WhatIfBody): Promise<WhatIfResponse> {
  const abilities = new DraftAbilities(policies, scope.workspaceId);
  const stored = new Map(policies.map((policy, index) => [policy.id, { policy, given: body.policies[index]!.id }]));
  const ruleOf = (decision: Decision) => {
    const source = decision.policyId === null ? undefined : stored.get(decision.policyId);
    return source && decision.ruleIndex !== null
      ? { policyId: source.given ?? null, policyName: source.policy.name, ruleIndex: decision.ruleIndex }
      : null;
  };
  const result: WhatIfResponse = {
    window: { from: new Date(body.from).toISOString(), to: new Date(body.to).toISOString() },
    replayed: 0,
    unchanged: 0,
    flips: { allowToDeny: 0, denyToAllow: 0 },
    counts: [],
    notReplayable: { count: 0, byReason: {} },
    samples: [],
  };
  const counts = new Map<string, WhatIfResponse['counts'][number]>();
  const rows = scope.stream(
    sql<LoggedDecision>`select id, at, principal_id, principal_roles, principal_provider, action, operation, subject,
        resource_id, fields, allowed, policy_id, reason, inputs
      from decisions
      where workspace_id = ${scope.workspaceId}::uuid and at >= ${body.from}::timestamptz and at < ${body.to}::timestamptz
      order by position`,
    chunkRows,
  );
  for await (const chunk of rows) {
    for (const row of chunk) {
      const outcome = replay(row, abilities);
      if ('notReplayable' in outcome) {
        result.notReplayable.count += 1;
        result.notReplayable.byReason[outcome.notReplayable] =
          (result.notReplayable.byReason[outcome.notReplayable] ?? 0) + 1;
        continue;
      }
      result.replayed += 1;
      const after = outcome.decision;
      if (after.allowed === row.allowed) {
        result.unchanged += 1;
        continue;
      }
      const direction: Direction = row.allowed ? 'allowToDeny' : 'denyToAllow';
      result.flips[direction] += 1;
      for (const role of row.principal_roles.length ? row.principal_roles : [null]) {
        const key = JSON.stringify([row.action, row.subject, role, direction]);
        const entry = counts.get(key) ?? { action: row.action, subject: row.subject, role, direction, count: 0 };
        entry.count += 1;
        counts.set(key, entry);
      }
      if (result.samples.length < body.limit) {
        result.samples.push({
          decisionId: row.id,
          at: new Date(row.at).toISOString(),
          principalId: row.principal_id,
          roles: row.principal_roles,
          action: row.action,
          subject: row.subject,
          resourceId: row.resource_id,
          ...(row.fields?.[0] !== undefined && { field: row.fields[0] }),
          before: row.allowed ? 'allow' : 'deny',
          after: after.allowed ? 'allow' : 'deny',
          rule: ruleOf(after),
          reason: after.reason,
        });
      }
    }
  }
  result.counts = [...counts.values()].sort(
    (left, right) =>
      right.count - left.count ||
      left.action.localeCompare(right.action) ||
      left.subject.localeCompare(right.subject) ||
      (left.role ?? '').localeCompare(right.role ?? ''),
  );
  return result;
}
