import { sql, type RawBuilder } from 'kysely';
import type { Database, Scope } from '../../db/database.ts';
import type { LineKind } from './lifecycle.schema.ts';

export interface ExportLine {
  kind: LineKind;
  data: Record<string, unknown>;
}

/** A timestamp to the microsecond as ISO 8601 text: a restored row keeps its exact time (list cursors use it). */
const iso = (column: string) =>
  sql<string>`to_char(${sql.ref(column)} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Keys whose value is null are left out: the create bodies take an absent field, not a null. */
const present = (row: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(row).filter(([, value]) => value !== null));

/**
 * The workspace's configuration, then its records, as export lines; every statement reads the
 * workspace's rows only, inside its RLS scope, from one snapshot. Records come from a server-side
 * cursor in chunks, so memory stays flat whatever their number. Secrets stay behind: webhook
 * signing secrets are not read at all, and identity providers hold none (their keys are public).
 * Billing (plan, Stripe ids) is the platform's, not the tenant's data, and stays too.
 */
export async function* exportLines(scope: Scope, chunkSize = 1_000): AsyncGenerator<ExportLine[]> {
  const workspace = scope.workspaceId;
  const configuration: [LineKind, RawBuilder<Record<string, unknown>>][] = [
    [
      'structure',
      sql`select name, description, fields, version, ${iso('created_at')} as "createdAt", ${iso('updated_at')} as "updatedAt"
        from structures where workspace_id = ${workspace}::uuid order by name`,
    ],
    [
      'policy',
      sql`select id, name, description, roles, rules, version, ${iso('created_at')} as "createdAt",
          ${iso('updated_at')} as "updatedAt", updated_by as "updatedBy"
        from policies where workspace_id = ${workspace}::uuid order by created_at, id`,
    ],
    [
      'identityProvider',
      sql`select id, name, type, issuer, jwks_uri as "jwksUri", jwks, audiences, authorized_parties as "authorizedParties",
          algorithms, clock_tolerance_seconds as "clockToleranceSeconds", org_id as "orgId", claims, role_map as "roleMap",
          role_source as "roleSource", allow_pending_sessions as "allowPendingSessions", version,
          ${iso('created_at')} as "createdAt", ${iso('updated_at')} as "updatedAt"
        from identity_providers where workspace_id = ${workspace}::uuid order by created_at, id`,
    ],
    [
      'member',
      sql`select user_id as "userId", email, roles, invited_by as "invitedBy", ${iso('joined_at')} as "joinedAt",
          ${iso('updated_at')} as "updatedAt"
        from members where workspace_id = ${workspace}::uuid order by joined_at, user_id`,
    ],
    [
      'function',
      sql`select name, code, roles, timeout_ms as "timeoutMs", memory_mb as "memoryMb", version,
          ${iso('created_at')} as "createdAt", ${iso('updated_at')} as "updatedAt"
        from functions where workspace_id = ${workspace}::uuid order by name`,
    ],
    [
      'trigger',
      sql`select id, name, events, structure, condition, enabled, action, disabled_reason as "disabledReason", version,
          ${iso('created_at')} as "createdAt", ${iso('updated_at')} as "updatedAt"
        from triggers where workspace_id = ${workspace}::uuid order by created_at, id`,
    ],
  ];
  for (const [kind, statement] of configuration) {
    for await (const rows of scope.stream(statement, chunkSize)) {
      yield rows.map((row) => ({ kind, data: present(row) }));
    }
  }
  const records = scope.stream(
    sql<
      Record<string, unknown>
    >`select id, structure, data, created_by as "createdBy", ${iso('created_at')} as "createdAt",
        ${iso('updated_at')} as "updatedAt", version
      from records where workspace_id = ${workspace}::uuid order by structure, id`,
    chunkSize,
  );
  for await (const rows of records) yield rows.map((data) => ({ kind: 'record' as const, data }));
}

/** Streams a workspace's export through `write`, which may wait for the client (backpressure). */
export async function exportWorkspace(
  database: Database,
  workspaceId: string,
  write: (chunk: string) => Promise<void>,
): Promise<void> {
  await database.withWorkspace(
    workspaceId,
    async (scope) => {
      for await (const lines of exportLines(scope)) {
        await write(lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
      }
    },
    { readOnly: true, snapshot: true },
  );
}
