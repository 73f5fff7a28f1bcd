import { sql } from 'kysely';
import { z } from 'zod';
import type { Scope } from '../../db/database.ts';
import { decodeCursor, encodeCursor, keysetPage } from '../../http/cursor.ts';
import type { DeliveriesQuery, DeliveryResponse } from './triggers.schema.ts';

interface DeliveryRow {
  id: string;
  trigger_id: string;
  event_id: string;
  event_seq: string;
  event_type: string;
  stream: string;
  status: DeliveryResponse['status'];
  attempts: number;
  next_attempt_at: Date | null;
  last_status_code: number | null;
  last_error: string | null;
  created_at: Date;
  /** created_at in microseconds since the epoch: the cursor's exact position. */
  position: string;
  finished_at: Date | null;
  redeliveries: number;
  redelivered_at: Date | null;
  redelivered_by: string | null;
}

interface AttemptRow {
  delivery_id: string;
  attempt: number;
  at: Date;
  status_code: number | null;
  error: string | null;
  response_body: string | null;
  latency_ms: number;
  next_attempt_at: Date | null;
}

const iso = (value: Date | null) => (value === null ? null : new Date(value).toISOString());

const cursorSchema = z.object({ position: z.string().regex(/^\d{1,20}$/), id: z.uuid() });

const columns = sql`d.id, d.trigger_id, d.event ->> 'id' as event_id, d.event_seq, d.event_type, d.stream, d.status,
  d.attempts, d.next_attempt_at, d.last_status_code, d.last_error, d.created_at, d.finished_at, d.redeliveries,
  d.redelivered_at, d.redelivered_by, (extract(epoch from d.created_at) * 1000000)::bigint as position`;

/**
 * A trigger's deliveries, newest first, a page at a time, each with its attempts (one query for
 * them all); with `count`, how many deliveries of the trigger (in `status`, if given) there are.
 */
export async function deliveryPage(
  scope: Scope,
  triggerId: string,
  query: DeliveriesQuery,
): Promise<{ data: DeliveryResponse[]; nextCursor: string | null; count?: number }> {
  const after = query.cursor === undefined ? undefined : decodeCursor(query.cursor, cursorSchema);
  const selected = sql`d.workspace_id = ${scope.workspaceId}::uuid and d.trigger_id = ${triggerId}::uuid
    and (${query.status ?? null}::text is null or d.status = ${query.status ?? null}::text)`;
  const rows = await scope.query(
    sql<DeliveryRow>`select ${columns} from deliveries d
      where ${selected}
        and (${after?.position ?? null}::bigint is null
             or (d.created_at, d.id) < (timestamptz 'epoch' + ${after?.position ?? null}::bigint * interval '1 microsecond',
                                        ${after?.id ?? null}::uuid))
      order by d.created_at desc, d.id desc limit ${query.limit + 1}::integer`,
  );
  const count = query.count ? await scope.count(sql`deliveries d where ${selected}`) : undefined;
  const { shown, nextCursor } = keysetPage(rows, query.limit, (last) =>
    encodeCursor({ position: String(last.position), id: last.id }),
  );
  return { data: await withAttempts(scope, shown), nextCursor, ...(count !== undefined && { count }) };
}

/** One delivery with its attempts, or undefined. */
export async function deliveryOf(scope: Scope, id: string): Promise<DeliveryResponse | undefined> {
  const rows = await scope.query(
    sql<DeliveryRow>`select ${columns} from deliveries d
      where d.workspace_id = ${scope.workspaceId}::uuid and d.id = ${id}::uuid`,
  );
  return (await withAttempts(scope, rows))[0];
}

async function withAttempts(scope: Scope, rows: DeliveryRow[]): Promise<DeliveryResponse[]> {
  const attempts = rows.length
    ? await scope.query(
        sql<AttemptRow>`select delivery_id, attempt, at, status_code, error, response_body, latency_ms, next_attempt_at
          from delivery_attempts
          where workspace_id = ${scope.workspaceId}::uuid and delivery_id = any(${rows.map((row) => row.id)}::uuid[])
          order by delivery_id, attempt`,
      )
    : [];
  const byDelivery = Map.groupBy(attempts, (attempt) => attempt.delivery_id);
  return rows.map((row) => ({
    id: row.id,
    triggerId: row.trigger_id,
    eventId: row.event_id,
    eventSeq: String(row.event_seq),
    eventType: row.event_type,
    stream: row.stream,
    status: row.status,
    attemptCount: row.attempts,
    nextAttemptAt: iso(row.next_attempt_at),
    lastStatusCode: row.last_status_code,
    lastError: row.last_error,
    createdAt: iso(row.created_at)!,
    finishedAt: iso(row.finished_at),
    redeliveries: row.redeliveries,
    redeliveredAt: iso(row.redelivered_at),
    redeliveredBy: row.redelivered_by,
    attempts: (byDelivery.get(row.id) ?? []).map((attempt) => ({
      attempt: attempt.attempt,
      at: iso(attempt.at)!,
      statusCode: attempt.status_code,
      error: attempt.error,
      responseBody: attempt.response_body,
      latencyMs: attempt.latency_ms,
      nextAttemptAt: iso(attempt.next_attempt_at),
    })),
  }));
}

/**
 * Puts a finished delivery back in its stream, due now, with a fresh retry schedule, and says so
 * in the delivery log (who, when, how many times). Answers the stream, or why it cannot.
 */
export async function requeue(
  scope: Scope,
  id: string,
  by: string,
): Promise<{ triggerId: string; stream: string } | 'missing' | 'pending' | 'disabled'> {
  const [found] = await scope.query(
    sql<{ status: string; enabled: boolean }>`select d.status, t.enabled from deliveries d
      join triggers t on t.workspace_id = d.workspace_id and t.id = d.trigger_id
      where d.workspace_id = ${scope.workspaceId}::uuid and d.id = ${id}::uuid
      for update of d`,
  );
  if (!found) return 'missing';
  if (found.status === 'pending') return 'pending';
  if (!found.enabled) return 'disabled';
  const [row] = await scope.query(
    sql<{ trigger_id: string; stream: string }>`update deliveries
      set status = 'pending', round_start = attempts, next_attempt_at = now(), claimed_until = null, finished_at = null,
          redeliveries = redeliveries + 1, redelivered_at = now(), redelivered_by = ${by}
      where workspace_id = ${scope.workspaceId}::uuid and id = ${id}::uuid
      returning trigger_id, stream`,
  );
  return { triggerId: row!.trigger_id, stream: row!.stream };
}
