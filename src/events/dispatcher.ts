import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database, Scope } from '../db/database.ts';
import { eventGate, finalPosition } from '../db/gate.ts';
import type { EventLog, StoredEvent } from './event-log.ts';

/** Something that acts on every event of every workspace, once, in seq order (the trigger matcher). */
export interface EventConsumer {
  /** Names its progress: how far it has read each workspace's events. */
  name: string;
  /**
   * Handles a batch of one workspace's events, in seq order, inside the transaction that also
   * moves its progress past them: what it writes (deliveries, jobs) commits exactly once.
   */
  handle(scope: Scope, events: readonly StoredEvent[]): Promise<void>;
}

export interface DispatcherOptions {
  /** How often every workspace is looked at; this instance's own commits are looked at at once. */
  intervalMs: number;
  batchSize: number;
  /** How long a pass waits at a workspace's event gate for the writes in flight there. */
  gateTimeoutMs: number;
}

const defaults: DispatcherOptions = { intervalMs: 200, batchSize: 500, gateTimeoutMs: 100 };

export interface EventRow {
  workspace_id: string;
  seq: string;
  id: string;
  type: string;
  structure: string | null;
  record_id: string | null;
  data: Record<string, unknown>;
  actor: StoredEvent['actor'];
  request_id: string | null;
  at: Date;
  depth: number;
  fire_triggers: boolean;
}

export const toStoredEvent = (row: EventRow): StoredEvent => ({
  workspaceId: row.workspace_id,
  seq: String(row.seq),
  id: row.id,
  type: row.type,
  structure: row.structure,
  recordId: row.record_id,
  data: row.data,
  actor: row.actor,
  requestId: row.request_id,
  at: new Date(row.at).toISOString(),
  depth: row.depth,
  fireTriggers: row.fire_triggers,
});

/**
 * Hands every committed event to a consumer exactly once per workspace, in seq order, whichever
 * instance gets there first (a per-workspace advisory lock; the others skip). It reads only up to
 * the event gate's final position, so an event that commits late is never passed over. Woken at
 * once by this instance's commits, and every `intervalMs` for everyone else's.
 */
export class EventDispatcher {
  private readonly database: Database;
  private readonly events: EventLog;
  private readonly consumer: EventConsumer;
  private readonly logger: Logger;
  private readonly options: DispatcherOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();
  private readonly woken = new Set<string>();
  private scheduled = false;
  private readonly onCommitted = (workspaceId: string) => this.wake(workspaceId);

  constructor(
    database: Database,
    events: EventLog,
    consumer: EventConsumer,
    logger: Logger,
    options: Partial<DispatcherOptions> = {},
  ) {
    this.database = database;
    this.events = events;
    this.consumer = consumer;
    this.logger = logger;
    this.options = { ...defaults, ...options };
  }

  start(): void {
    if (this.timer) return;
    this.events.on('committed', this.onCommitted);
    this.timer = setInterval(() => this.queue(() => this.dispatchAll()), this.options.intervalMs).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    this.events.off('committed', this.onCommitted);
    await this.running.catch(() => undefined);
  }

  /** Every workspace with events past the consumer's progress. */
  async dispatchAll(): Promise<number> {
    const workspaces = await this.database.query(
      sql<{
        workspace_id: string;
      }>`select workspace_id from cordon_workspaces_with_pending_events(${this.consumer.name}::text)`,
    );
    let handled = 0;
    for (const { workspace_id: workspaceId } of workspaces) handled += await this.dispatchWorkspace(workspaceId);
    return handled;
  }

  async dispatchWorkspace(workspaceId: string): Promise<number> {
    const final = await finalPosition(this.database, eventGate, workspaceId, this.options.gateTimeoutMs);
    if (final === undefined) return 0; // writes in flight outlasted the gate: the next pass takes them
    let handled = 0;
    for (;;) {
      const batch = await this.database.withWorkspace(workspaceId, (scope) => this.dispatchBatch(scope, final));
      handled += batch;
      if (batch < this.options.batchSize) return handled;
    }
  }

  private async dispatchBatch(scope: Scope, final: string): Promise<number> {
    const [lock] = await scope.query(
      sql<{ locked: boolean }>`select pg_try_advisory_xact_lock(
        hashtextextended('cordon:dispatch:' || ${this.consumer.name}::text || ':' || ${scope.workspaceId}::text, 0)) as locked`,
    );
    if (!lock?.locked) return 0;
    const [progress] = await scope.query(
      sql<{ through: string }>`select through_seq as through from event_progress
        where workspace_id = ${scope.workspaceId}::uuid and consumer = ${this.consumer.name}`,
    );
    const rows = await scope.query(
      sql<EventRow>`select * from events
        where workspace_id = ${scope.workspaceId}::uuid and seq > ${progress?.through ?? '0'}::bigint and seq <= ${final}::bigint
        order by seq limit ${this.options.batchSize}::integer`,
    );
    if (!rows.length) return 0;
    await this.consumer.handle(scope, rows.map(toStoredEvent));
    await scope.query(
      sql`insert into event_progress (workspace_id, consumer, through_seq)
        values (${scope.workspaceId}::uuid, ${this.consumer.name}, ${rows.at(-1)!.seq}::bigint)
        on conflict (workspace_id, consumer) do update set through_seq = excluded.through_seq
        where event_progress.through_seq < excluded.through_seq`,
    );
    return rows.length;
  }

  /** This instance committed events: look at that workspace now (once per turn of the loop). */
  private wake(workspaceId: string): void {
    this.woken.add(workspaceId);
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const workspaces = [...this.woken];
      this.woken.clear();
      this.queue(async () => {
        for (const workspaceId of workspaces) await this.dispatchWorkspace(workspaceId);
      });
    });
  }

  private queue(work: () => Promise<unknown>): void {
    this.running = this.running
      .then(work)
      .catch((error: unknown) => this.logger.warn({ err: error }, 'dispatching events failed; will retry'));
  }
}
