import { sql } from 'kysely';
import { z } from 'zod';
import { prepared, type Database, type Scope } from '../../db/database.ts';
import { decodeCursor, encodeCursor, keysetPage, type PageQuery } from '../../http/cursor.ts';
import type { RunResponse } from './functions.schema.ts';
import type { FailureKind, LogLine, RunOutcome } from './sandbox-protocol.ts';

/** One run as it is logged: what ran, on what, and how it ended. */
export interface RunEntry {
  id: string;
  functionName: string;
  functionVersion: number;
  invoked: boolean;
  triggerId: string | null;
  deliveryId: string | null;
  eventSeq: string | null;
  startedAt: Date;
  outcome: RunOutcome;
}

interface RunRow {
  id: string;
  function_name: string;
  function_version: number;
  trigger_id: string | null;
  delivery_id: string | null;
  event_seq: string | null;
  invoked: boolean;
  status: 'succeeded' | 'failed';
  result: unknown;
  error: string | null;
  error_kind: FailureKind | null;
  logs: LogLine[];
  logs_truncated: boolean;
  duration_ms: number;
  started_at: Date;
}

const cursorSchema = z.tuple([z.iso.datetime(), z.uuid()]);

const toResponse = (row: RunRow): RunResponse => ({
  id: row.id,
  function: row.function_name,
  functionVersion: row.function_version,
  status: row.status,
  invoked: row.invoked,
  triggerId: row.trigger_id,
  deliveryId: row.delivery_id,
  eventSeq: row.event_seq === null ? null : String(row.event_seq),
  result: (row.result ?? null) as RunResponse['result'],
  error: row.error_kind ? { kind: row.error_kind, message: row.error ?? '' } : null,
  logs: row.logs,
  logsTruncated: row.logs_truncated,
  durationMs: row.duration_ms,
  startedAt: new Date(row.started_at).toISOString(),
});

/** The run log (`function_runs`): appended once per run, read newest first. */
export class FunctionRuns {
  private readonly database: Database;

  constructor(database: Database) {
    this.database = database;
  }

  /**
   * Committed without waiting for its WAL flush (`synchronous_commit = off` for this statement
   * alone): the row is visible at once and on disk within a few hundred milliseconds, so only a
   * PostgreSQL crash in between can lose it. A run's decisions and events — the records that
   * carry guarantees — are committed durably by their own statements; this saves a trigger's
   * run a flush (about a third of a millisecond here).
   */
  async append(workspaceId: string, run: RunEntry): Promise<void> {
    const { outcome } = run;
    const result = outcome.ok && outcome.result !== null ? JSON.stringify(outcome.result) : null;
    await this.database.inWorkspace(workspaceId, (scope) =>
      prepared(
        'cordon_append_function_run',
        sql`with ${scope}, relaxed as materialized (select set_config('synchronous_commit', 'off', true))
          insert into function_runs (workspace_id, id, function_name, function_version, trigger_id, delivery_id, event_seq,
            invoked, status, result, error, error_kind, logs, logs_truncated, duration_ms, started_at)
          select scope.workspace_id, ${run.id}::uuid, ${run.functionName}, ${run.functionVersion}::integer,
            ${run.triggerId}::uuid, ${run.deliveryId}::uuid, ${run.eventSeq}::bigint, ${run.invoked}::boolean,
            ${outcome.ok ? 'succeeded' : 'failed'}, ${result}::jsonb, ${outcome.ok ? null : outcome.error.message},
            ${outcome.ok ? null : outcome.error.kind}, ${JSON.stringify(outcome.logs)}::jsonb, ${outcome.logsTruncated}::boolean,
            ${outcome.durationMs}::double precision, ${run.startedAt}::timestamptz
          from scope cross join relaxed`,
      ),
    );
  }

  /** A page of one function's runs, newest first, and with `count` how many it has in all. */
  async page(scope: Scope, functionName: string, query: PageQuery) {
    const after = query.cursor ? decodeCursor(query.cursor, cursorSchema) : null;
    const ofFunction = sql`workspace_id = ${scope.workspaceId}::uuid and function_name = ${functionName}`;
    const rows = await scope.query(
      sql<RunRow>`select id, function_name, function_version, trigger_id, delivery_id, event_seq, invoked, status, result,
          error, error_kind, logs, logs_truncated, duration_ms, started_at
        from function_runs
        where ${ofFunction}
          ${after ? sql`and (started_at, id) < (${after[0]}::timestamptz, ${after[1]}::uuid)` : sql``}
        order by started_at desc, id desc
        limit ${query.limit + 1}::integer`,
    );
    const count = query.count ? await scope.count(sql`function_runs where ${ofFunction}`) : undefined;
    const { shown, nextCursor } = keysetPage(rows, query.limit, (last) =>
      encodeCursor([new Date(last.started_at).toISOString(), last.id]),
    );
    return { data: shown.map(toResponse), nextCursor, ...(count !== undefined && { count }) };
  }
}
