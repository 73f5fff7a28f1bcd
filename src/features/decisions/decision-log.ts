import type { EntityManager } from '@mikro-orm/postgresql';
import type { Request } from 'express';
import { v7 as uuidv7 } from 'uuid';
import type { Principal } from '../../auth/principal.ts';
import { scopeCte } from '../../db/scoped.ts';
import type { Decision } from '../../policy/ability.ts';

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
}

/** Who asked and when: taken from the request once. */
export interface DecisionContext {
  workspaceId: string;
  requestId: string;
  principal: Pick<Principal, 'id' | 'roles' | 'provider'>;
  ip: string | null;
  userAgent: string | null;
  startedAt: bigint;
}

export function decisionContext(
  request: Request,
  principal: Pick<Principal, 'id' | 'roles' | 'provider' | 'workspaceId'>,
): DecisionContext {
  return {
    workspaceId: principal.workspaceId,
    requestId: String(request.id),
    principal,
    ip: request.ip ?? null,
    userAgent: request.get('user-agent')?.slice(0, 500) ?? null,
    startedAt: request.startedAt ?? process.hrtime.bigint(),
  };
}

const columns = [
  'id',
  'workspace_id',
  'at',
  'request_id',
  'principal_id',
  'principal_roles',
  'principal_provider',
  'action',
  'operation',
  'subject',
  'resource_id',
  'fields',
  'allowed',
  'policy_id',
  'policy_version',
  'rule_index',
  'reason',
  'latency_micros',
  'ip',
  'user_agent',
];
const placeholders = `(${columns.map(() => '?').join(', ')})`;

const columnTypes = [
  'uuid',
  'uuid',
  'timestamptz',
  'text',
  'text',
  'text',
  'text',
  'text',
  'text',
  'text',
  'text',
  'text',
  'boolean',
  'uuid',
  'integer',
  'integer',
  'text',
  'integer',
  'text',
  'text',
];

/**
 * The same insert for plain `pg`: one array parameter per column, so the statement text never
 * changes with the batch size and PostgreSQL plans it once (a named prepared statement).
 * Array-typed columns travel as their text literals and are cast back.
 */
const selected = columns.map((column, index) =>
  column === 'principal_roles' || column === 'fields' ? `c${index}::text[]` : `c${index}`,
);

/**
 * The insert as one part of a statement that has a `scope` CTE (see db/scoped.ts): one array
 * parameter per column, numbered after `offset`, so the text never changes with the batch size
 * and PostgreSQL plans it once. Joining `scope` puts the workspace setting in force before any
 * row reaches the RLS check.
 */
export function decisionInsert(
  batches: readonly { context: DecisionContext; entries: readonly DecisionEntry[] }[],
  offset: number,
  condition = '',
): { text: string; values: unknown[] } {
  const rows = batches.flatMap(({ context, entries }) => rowValues(context, entries));
  return { text: insertText(offset, condition), values: columns.map((_, column) => rows.map((row) => row[column])) };
}

/** A handful of (offset, condition) pairs exist, each a named prepared statement: spelled once each. */
const insertTexts = new Map<string, string>();
function insertText(offset: number, condition: string): string {
  const key = `${offset}|${condition}`;
  let text = insertTexts.get(key);
  if (text === undefined) {
    text = `insert into decisions (${columns.join(', ')})
           select ${selected.join(', ')} from scope, unnest(${columnTypes.map((type, index) => `$${offset + index + 1}::${type}[]`).join(', ')})
           as batch(${columns.map((_, index) => `c${index}`).join(', ')}) ${condition}`;
    insertTexts.set(key, text);
  }
  return text;
}

/** A whole statement appending decisions of one workspace: one round trip, one implicit transaction. */
export function insertStatement(
  workspaceId: string,
  batches: readonly { context: DecisionContext; entries: readonly DecisionEntry[] }[],
): { name: string; text: string; values: unknown[] } {
  const insert = decisionInsert(batches, 1);
  return {
    name: 'cordon_insert_decisions',
    text: `with ${scopeCte} ${insert.text}`,
    values: [workspaceId, ...insert.values],
  };
}

/**
 * Appends decisions in the caller's transaction, in one statement: a mutation and its decision
 * commit together, and a read's decision is durable before its response is sent. Nothing is
 * buffered in memory.
 */
export class DecisionLog {
  readonly enabled: boolean;

  /** `enabled: false` exists only so the benchmark can measure what logging costs. */
  constructor(options: { enabled: boolean } = { enabled: true }) {
    this.enabled = options.enabled;
  }

  async record(em: EntityManager, context: DecisionContext, entries: readonly DecisionEntry[]): Promise<void> {
    await this.recordMany(em, [{ context, entries }]);
  }

  /** Several requests' decisions in one statement (all of one workspace: the caller's scope). */
  async recordMany(
    em: EntityManager,
    batches: readonly { context: DecisionContext; entries: readonly DecisionEntry[] }[],
  ): Promise<void> {
    const rows = batches.flatMap(({ context, entries }) => rowValues(context, entries));
    if (!this.enabled || rows.length === 0) return;
    await em.execute(
      `insert into decisions (${columns.join(', ')}) values ${rows.map(() => placeholders).join(', ')}`,
      rows.flat(),
    );
  }
}

function rowValues(context: DecisionContext, entries: readonly DecisionEntry[]): unknown[][] {
  const at = new Date();
  const latencyMicros = Number((process.hrtime.bigint() - context.startedAt) / 1000n);
  const roles = toArrayLiteral(context.principal.roles);
  return entries.map((entry) => [
    uuidv7(),
    context.workspaceId,
    at,
    context.requestId,
    context.principal.id,
    roles,
    context.principal.provider,
    entry.action,
    entry.operation,
    entry.subject,
    entry.resourceId ?? null,
    entry.fields ? toArrayLiteral(entry.fields) : null,
    entry.decision.allowed,
    entry.decision.policyId,
    entry.decision.policyVersion,
    entry.decision.ruleIndex,
    entry.decision.reason,
    Math.min(latencyMicros, 2_147_483_647),
    context.ip,
    context.userAgent,
  ]);
}

/** A PostgreSQL text[] literal; every element quoted and escaped. */
export function toArrayLiteral(items: readonly string[]): string {
  return `{${items.map((item) => `"${item.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`).join(',')}}`;
}
