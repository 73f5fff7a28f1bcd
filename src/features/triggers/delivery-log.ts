import { sql, type RawBuilder } from 'kysely';
import type { Database, Scope } from '../../db/database.ts';
import type { StoredEvent } from '../../events/event-log.ts';
import type { ActionOutcome } from './action.ts';
import type { StreamRef } from './delivery-jobs.ts';
import type { TriggerAction } from './triggers.schema.ts';

/**
 * The delivery log's statements: one row per (trigger, event) with the event's own copy, one row
 * per attempt. A stream's pending rows go out in seq order; a row moves from pending to delivered,
 * failed or discarded (its trigger was disabled first), and back to pending only when redelivered.
 */

export interface NewDelivery {
  id: string;
  triggerId: string;
  stream: string;
  event: StoredEvent;
}

/** Inserts a batch of deliveries inside the dispatcher's transaction, due at once. */
export async function insertDeliveries(scope: Scope, deliveries: readonly NewDelivery[]): Promise<void> {
  const rows = deliveries.map((delivery) => ({
    id: delivery.id,
    trigger_id: delivery.triggerId,
    event_seq: delivery.event.seq,
    event_type: delivery.event.type,
    stream: delivery.stream,
    event: delivery.event,
  }));
  await scope.query(
    sql`insert into deliveries (workspace_id, id, trigger_id, event_seq, event_type, stream, event, next_attempt_at)
      select ${scope.workspaceId}::uuid, row.id, row.trigger_id, row.event_seq, row.event_type, row.stream, row.event, now()
      from jsonb_to_recordset(${JSON.stringify(rows)}::jsonb)
        as row(id uuid, trigger_id uuid, event_seq bigint, event_type text, stream text, event jsonb)`,
  );
}

/** What a delivery goes to: the trigger as it is now, with its sealed secrets in force. */
export interface DeliveryTarget {
  enabled: boolean;
  action: TriggerAction;
  sealedSecrets: string[];
  /** Changes whenever the trigger or its secrets do (see `targetStamp`). */
  stamp: string;
}

/**
 * The trigger's version, its newest secret (uuidv7 ids grow) and how many of its secrets are in
 * force: a job that read its target compares this with each delivery it claims, so a trigger
 * replaced (a new URL, another action), a secret rotated or an old one expired while the job
 * drains is read again before the next attempt.
 */
const targetStamp = (workspaceId: RawBuilder<unknown>, triggerId: string) =>
  sql`(select t.version::text || ':' || coalesce(max(s.id::text), '') || ':'
        || count(*) filter (where s.expires_at is null or s.expires_at > now())
      from triggers t left join trigger_secrets s on s.workspace_id = t.workspace_id and s.trigger_id = t.id
      where t.workspace_id = ${workspaceId} and t.id = ${triggerId}::uuid group by t.version)`;

export async function deliveryTarget(database: Database, ref: StreamRef): Promise<DeliveryTarget | undefined> {
  const [row] = await database.inWorkspace(
    ref.workspaceId,
    (scope) => sql<{ enabled: boolean; action: TriggerAction; secrets: string[]; stamp: string }>`with ${scope}
      select found.* from scope cross join lateral (
        select t.enabled, t.action, array(
            select s.secret from trigger_secrets s
            where s.workspace_id = t.workspace_id and s.trigger_id = t.id and (s.expires_at is null or s.expires_at > now())
            order by s.created_at, s.id) as secrets,
          ${targetStamp(sql`scope.workspace_id`, ref.triggerId)} as stamp
        from triggers t where t.workspace_id = scope.workspace_id and t.id = ${ref.triggerId}::uuid offset 0) found`,
  );
  return row && { enabled: row.enabled, action: row.action, sealedSecrets: row.secrets, stamp: row.stamp };
}

export interface PendingDelivery {
  id: string;
  event: StoredEvent;
  attempts: number;
  roundStart: number;
}

/**
 * What the stream's oldest pending delivery (in seq order) allows: none left; a retry not due
 * yet; another job's attempt (its claim); or an attempt of ours, claimed for `leaseMs`.
 */
export type Head =
  | { kind: 'none' }
  | { kind: 'waiting'; at: Date }
  | { kind: 'claimed'; until: Date }
  | { kind: 'attempt'; delivery: PendingDelivery; stamp: string | null };

/**
 * Takes the stream's head for an attempt. The claim keeps a second job of the stream (see
 * delivery-jobs.ts) from attempting it, or the delivery after it, meanwhile; it is cleared when
 * the attempt is written, and lapses after `leaseMs` if its instance dies.
 */
export function claimHead(database: Database, ref: StreamRef, leaseMs: number): Promise<Head> {
  return database.withWorkspace(ref.workspaceId, (scope) => claimHeadIn(scope, ref, leaseMs));
}

/** `claimHead` inside a transaction already in the workspace's scope (the one that wrote the last attempt). */
export async function claimHeadIn(scope: Scope, ref: StreamRef, leaseMs: number): Promise<Head> {
  const [row] = await scope.query(
    sql<{
      id: string;
      event: StoredEvent;
      attempts: number;
      round_start: number;
      next_attempt_at: Date;
      claimed_until: Date | null;
      mine: boolean;
      stamp: string | null;
    }>`with head as (
          select d.id, d.event, d.attempts, d.round_start, d.next_attempt_at, d.claimed_until,
                 d.next_attempt_at > now() or coalesce(d.claimed_until > now(), false) as busy
          from deliveries d
          where d.workspace_id = ${scope.workspaceId}::uuid and d.trigger_id = ${ref.triggerId}::uuid
            and d.stream = ${ref.stream} and d.status = 'pending'
          order by d.event_seq, d.created_at limit 1
          for update),
        claimed as (
          update deliveries d set claimed_until = now() + ${leaseMs}::integer * interval '1 millisecond'
          from head where d.workspace_id = ${scope.workspaceId}::uuid and d.id = head.id and not head.busy
          returning d.id)
        select head.*, exists (select 1 from claimed) as mine,
          ${targetStamp(sql`${scope.workspaceId}::uuid`, ref.triggerId)} as stamp
        from head`,
  );
  if (!row) return { kind: 'none' };
  if (!row.mine && row.claimed_until && new Date(row.claimed_until) > new Date(row.next_attempt_at)) {
    return { kind: 'claimed', until: new Date(row.claimed_until) };
  }
  if (!row.mine) return { kind: 'waiting', at: new Date(row.next_attempt_at) };
  return {
    kind: 'attempt',
    delivery: { id: row.id, event: row.event, attempts: row.attempts, roundStart: row.round_start },
    stamp: row.stamp,
  };
}

/**
 * Writes an attempt and moves its delivery on: delivered, failed, or pending again after
 * `delayMs`. Undefined when the delivery is no longer the pending row that was attempted (a second
 * drainer of a killed instance's stream recorded it first): this attempt is then not logged twice.
 */
export async function recordAttempt(
  scope: Scope,
  delivery: PendingDelivery,
  outcome: ActionOutcome,
  next: { status: 'delivered' | 'failed' } | { status: 'pending'; delayMs: number },
): Promise<{ nextAttemptAt: Date | null } | undefined> {
  const delayMs = next.status === 'pending' ? next.delayMs : null;
  const error = outcome.ok ? null : outcome.error;
  const [row] = await scope.query(
    sql<{ next_attempt_at: Date | null }>`with updated as (
        update deliveries set attempts = attempts + 1, status = ${next.status}, claimed_until = null,
          next_attempt_at = now() + ${delayMs}::integer * interval '1 millisecond',
          last_status_code = ${outcome.statusCode ?? null}::integer, last_error = ${error},
          finished_at = case when ${next.status} = 'pending' then null else now() end
        where workspace_id = ${scope.workspaceId}::uuid and id = ${delivery.id}::uuid and status = 'pending'
          and attempts = ${delivery.attempts}::integer
        returning attempts, next_attempt_at)
      insert into delivery_attempts (workspace_id, delivery_id, attempt, status_code, error, response_body, latency_ms, next_attempt_at)
      select ${scope.workspaceId}::uuid, ${delivery.id}::uuid, updated.attempts, ${outcome.statusCode ?? null}::integer,
             ${error}, ${outcome.responseBody ?? null}, ${outcome.latencyMs}::integer, updated.next_attempt_at
      from updated
      returning next_attempt_at`,
  );
  return row && { nextAttemptAt: row.next_attempt_at ? new Date(row.next_attempt_at) : null };
}

/**
 * Disables a trigger (410, retries spent, or its owner) and discards its pending deliveries: they
 * can be redelivered one by one once it is enabled again. Answers its name when it was enabled.
 */
export async function disableTrigger(
  scope: Scope,
  triggerId: string,
  reason: string | null,
): Promise<{ name: string } | undefined> {
  const [trigger] = await scope.query(
    sql<{ name: string }>`update triggers
      set enabled = false, disabled_reason = ${reason}, version = version + 1, updated_at = now()
      where workspace_id = ${scope.workspaceId}::uuid and id = ${triggerId}::uuid and enabled
      returning name`,
  );
  await discardPending(scope, triggerId);
  return trigger;
}

export async function discardPending(scope: Scope, triggerId: string, stream?: string): Promise<void> {
  await scope.query(
    sql`update deliveries set status = 'discarded', next_attempt_at = null, claimed_until = null, finished_at = now()
      where workspace_id = ${scope.workspaceId}::uuid and trigger_id = ${triggerId}::uuid and status = 'pending'
        and (${stream ?? null}::text is null or stream = ${stream ?? null}::text)`,
  );
}
