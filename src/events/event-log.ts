import { EventEmitter } from 'node:events';
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import type { Scope, Statement } from '../db/database.ts';
import { eventGate, sharedGate } from '../db/gate.ts';

/** Who caused an event: a workspace principal, a function, the platform admin, or Cordon itself. */
export interface EventActor {
  id: string;
  kind: 'user' | 'function' | 'admin' | 'system';
}

/**
 * Where a change comes from, as its events record it: `depth` counts the function runs that led
 * to it (triggers stop at FUNCTION_CHAIN_DEPTH), and a function invoked by hand fires nothing.
 */
export interface EventOrigin {
  actor: EventActor;
  requestId: string | null;
  depth: number;
  fireTriggers: boolean;
}

export interface NewEvent {
  type: string;
  structure?: string | null;
  recordId?: string | null;
  data: Record<string, unknown>;
}

/** An event as stored and as consumers read it. */
export interface StoredEvent {
  workspaceId: string;
  seq: string;
  id: string;
  type: string;
  structure: string | null;
  recordId: string | null;
  data: Record<string, unknown>;
  actor: EventActor;
  requestId: string | null;
  at: string;
  depth: number;
  fireTriggers: boolean;
}

function rowsOf(origin: EventOrigin, events: readonly NewEvent[]): string {
  const at = new Date().toISOString();
  return JSON.stringify(
    events.map((event) => ({
      id: uuidv7(),
      type: event.type,
      structure: event.structure ?? null,
      record_id: event.recordId ?? null,
      data: event.data,
      actor: origin.actor,
      request_id: origin.requestId,
      at,
      depth: origin.depth,
      fire_triggers: origin.fireTriggers,
    })),
  );
}

/**
 * Appends events as part of a statement that has the `scope` CTE, in the transaction of the
 * change that caused them: they exist exactly when the change does. The workspace's event gate
 * is taken, shared, before the rows take their `seq` (see db/gate.ts), so readers that read up to
 * the gate's final position see events in commit order. `condition` (SQL) may tie the insert to
 * another part of the statement, e.g. `where exists (select 1 from inserted)`.
 */
export function appendEvents(
  origin: EventOrigin,
  events: readonly NewEvent[],
  condition: Statement<unknown> = sql``,
): Statement<unknown> {
  return sql`insert into events (workspace_id, id, type, structure, record_id, data, actor, request_id, at, depth, fire_triggers)
    with ${sharedGate(eventGate)}
    select scope.workspace_id, event.id, event.type, event.structure, event.record_id, event.data, event.actor,
           event.request_id, event.at, event.depth, event.fire_triggers
    from scope cross join gate cross join json_to_recordset(${rowsOf(origin, events)}::json) as event(id uuid, type text,
      structure text, record_id uuid, data jsonb, actor jsonb, request_id text, at timestamptz, depth smallint,
      fire_triggers boolean)
    ${condition}`;
}

/**
 * The event log as the features that write it see it: events are appended in the transaction of
 * their change, and once that transaction commits the writer says so, so this instance's
 * consumers (the trigger dispatcher, realtime streams) look at once instead of at their next
 * poll. Other instances hear of it from a NOTIFY sent after the commit (app.ts hands this news to
 * the ChangeBus), or find the events by polling: a NOTIFY in the change's transaction would
 * serialise every such commit on PostgreSQL's notification queue.
 */
export class EventLog extends EventEmitter<{ committed: [workspaceId: string] }> {
  /** Appends inside a transaction that is already in the workspace's scope. */
  async appendIn(scope: Scope, origin: EventOrigin, events: readonly NewEvent[]): Promise<void> {
    if (!events.length) return;
    await scope.query(sql`with ${scope.cte} ${appendEvents(origin, events)}`);
  }

  committed(workspaceId: string): void {
    this.emit('committed', workspaceId);
  }
}
