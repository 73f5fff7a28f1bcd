import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import type { Principal } from '../auth/principal.ts';
import type { Statement } from '../db/database.ts';
import { decisionGate, sharedGate } from '../db/gate.ts';
import type { Decision } from './ability.ts';
import { InputsWriter, type InputsPlan } from './decision-inputs.ts';
import type { PlaceholderContext } from './placeholders.ts';

export const operations = ['get', 'list', 'create', 'update', 'delete', 'check', 'admin'] as const;
export type Operation = (typeof operations)[number];

/** One authorization decision, before it is stamped with who, when and where. */
export interface DecisionEntry {
  action: string;
  operation: Operation;
  subject: string;
  resourceId?: string | null;
  fields?: string[] | null;
  decision: Decision;
  /** The record document(s) the conditions were tested on (an update: before, then after). */
  documents?: readonly Record<string, unknown>[] | undefined;
}

/** Who asked, when and from where: taken from the request once. */
export interface DecisionContext {
  workspaceId: string;
  requestId: string;
  principal: Pick<Principal, 'id' | 'roles' | 'provider'>;
  ip: string | null;
  userAgent: string | null;
  startedAt: bigint;
  /**
   * What the workspace's policies referenced (placeholders, fields) and the principal's values for
   * them, for the decision's kept inputs (decision-inputs.ts); without it only documents are kept.
   */
  attributes?: { plan: InputsPlan; placeholders: PlaceholderContext } | undefined;
}

/** Several entries of one context: the decisions of one request. */
export interface DecisionBatch {
  context: DecisionContext;
  entries: readonly DecisionEntry[];
}

const maxLatency = 2_147_483_647;

/** The members of a JSON object, without its braces: parts of one row written once and spliced. */
const members = (value: Record<string, unknown>) => JSON.stringify(value).slice(1, -1);

/**
 * The rows as one JSON document: PostgreSQL types them (text[] included) as it reads them. What a
 * request's decisions share (who, when, where, the principal's inputs) is written once per request.
 */
function rowsOf(batches: readonly DecisionBatch[]): string {
  const rows: string[] = [];
  for (const { context, entries } of batches) {
    const latency = Math.min(Number((process.hrtime.bigint() - context.startedAt) / 1000n), maxLatency);
    const shared = members({
      workspace_id: context.workspaceId,
      at: new Date().toISOString(),
      request_id: context.requestId,
      principal_id: context.principal.id,
      principal_roles: context.principal.roles,
      principal_provider: context.principal.provider,
      latency_micros: latency,
      ip: context.ip,
      user_agent: context.userAgent,
    });
    const inputs = new InputsWriter(context.attributes?.plan, context.attributes?.placeholders);
    for (const entry of entries) {
      const own = members({
        id: uuidv7(),
        action: entry.action,
        operation: entry.operation,
        subject: entry.subject,
        resource_id: entry.resourceId ?? null,
        fields: entry.fields ?? null,
        allowed: entry.decision.allowed,
        policy_id: entry.decision.policyId,
        policy_version: entry.decision.policyVersion,
        rule_index: entry.decision.ruleIndex,
        reason: entry.decision.reason,
      });
      rows.push(`{${own},${shared},"inputs":${inputs.json(entry.documents)}}`);
    }
  }
  return `[${rows.join(',')}]`;
}

/**
 * Appends decisions as part of a statement that has the `scope` CTE (db/database.ts `inWorkspace`):
 * the rows travel as one JSON parameter, so the text never changes with the batch size and is
 * prepared once; joining `scope` puts the workspace setting in force before the RLS check. The
 * parameter is `json`, not `jsonb`: read once into rows rather than converted whole first (a
 * /check batch of 50 went from 0.93× to 0.98–1.08×, median 1.02×, the throughput of the code
 * before decisions kept inputs, bench/check-against.ts).
 *
 * `gate` takes the workspace's decision gate (db/gate.ts), shared, before any row takes its
 * position (the position default is computed for rows the join yields, and the join yields none
 * before the gate's one row), and holds it to the end of the transaction, so the sealer seals only
 * positions that are final.
 */
export function appendDecisions(batches: readonly DecisionBatch[]): Statement<unknown> {
  return sql`insert into decisions (id, workspace_id, at, request_id, principal_id, principal_roles, principal_provider,
      action, operation, subject, resource_id, fields, allowed, policy_id, policy_version, rule_index, reason,
      latency_micros, ip, user_agent, inputs)
    with ${sharedGate(decisionGate)}
    select batch.* from scope cross join gate cross join json_to_recordset(${rowsOf(batches)}::json) as batch(id uuid, workspace_id uuid,
      at timestamptz, request_id text, principal_id text, principal_roles text[], principal_provider text, action text,
      operation text, subject text, resource_id text, fields text[], allowed boolean, policy_id uuid, policy_version integer,
      rule_index integer, reason text, latency_micros integer, ip text, user_agent text, inputs jsonb)`;
}
