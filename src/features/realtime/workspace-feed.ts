import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../../db/database.ts';
import { eventGate, finalPosition } from '../../db/gate.ts';
import { toStoredEvent, type EventRow } from '../../events/dispatcher.ts';
import type { StoredEvent } from '../../events/event-log.ts';
import type { PrincipalAbility } from '../../policy/ability.ts';
import { recordEventTypes, type StreamMessage } from './event-view.ts';
import { formatEvent, type EventStream } from './stream.ts';

/** What a feed needs of its hub: how to see an event through an ability, and what to count. */
export interface FeedContext {
  database: Database;
  logger: Logger;
  view: (ability: PrincipalAbility, event: StoredEvent) => StreamMessage | undefined;
  /** Counts one evaluation of an event for a group of streams that share an ability. */
  evaluated: () => void;
  /** The workspace's policies changed since the streams' abilities were made: make them again. */
  refreshAbilities: (workspaceId: string, policySetVersion: number) => Promise<void>;
}

const pageSize = 1_000;
/** How long a pass waits at the event gate for writes in flight; it tries again soon after. */
const gateTimeoutMs = 50;
const gateRetryMs = 10;

/** Reads a workspace's committed record events after `after`, up to `through`, in seq order. */
export async function readRecordEvents(
  database: Database,
  workspaceId: string,
  after: bigint,
  through: bigint,
  structures?: readonly string[],
): Promise<{ events: StoredEvent[]; policySetVersion: number }> {
  return database.withWorkspace(workspaceId, async (scope) => {
    const rows = await scope.query(
      sql<EventRow & { policy_set_version: number }>`select e.*, w.policy_set_version
        from workspaces w left join lateral (
          select * from events
          where workspace_id = w.id and seq > ${after.toString()}::bigint and seq <= ${through.toString()}::bigint
            and type = any(${[...recordEventTypes]}::text[])
            and (${structures ?? null}::text[] is null or structure = any(${structures ?? null}::text[]))
          order by seq limit ${pageSize}::integer) e on true
        where w.id = ${scope.workspaceId}::uuid`,
    );
    return {
      events: rows.filter((row) => row.seq !== null).map(toStoredEvent),
      policySetVersion: rows[0]?.policy_set_version ?? 0,
    };
  });
}

export const eventPageSize = pageSize;

/**
 * One workspace's record events on this instance: read once per instance whatever the number of
 * streams, in seq order up to the event gate's final position (an event that commits late is
 * never passed over), and evaluated once per group of streams that share an ability.
 */
export class WorkspaceFeed {
  readonly workspaceId: string;
  /** Every record event up to here has been handed to the streams. */
  position: bigint;
  private policySetVersion: number | undefined;
  private readonly groups = new Map<PrincipalAbility, Set<EventStream>>();
  private readonly context: FeedContext;
  private reading: Promise<void> | undefined;
  private again = false;
  private retry: NodeJS.Timeout | undefined;
  /** Ability changes in flight: a pass waits for them, so a change applies to the next event. */
  private refreshing = new Set<Promise<void>>();

  constructor(workspaceId: string, position: bigint, context: FeedContext) {
    this.workspaceId = workspaceId;
    this.position = position;
    this.context = context;
  }

  /** Where a feed starts: every event up to the gate's final position has committed (or never will). */
  static async start(workspaceId: string, context: FeedContext): Promise<WorkspaceFeed> {
    for (;;) {
      const final = await finalPosition(context.database, eventGate, workspaceId, gateTimeoutMs);
      if (final !== undefined) return new WorkspaceFeed(workspaceId, BigInt(final), context);
      await new Promise((resolve) => setTimeout(resolve, gateRetryMs));
    }
  }

  get size(): number {
    let size = 0;
    for (const streams of this.groups.values()) size += streams.size;
    return size;
  }

  get streams(): EventStream[] {
    return [...this.groups.values()].flatMap((streams) => [...streams]);
  }

  add(stream: EventStream): void {
    const group = this.groups.get(stream.ability);
    if (group) group.add(stream);
    else this.groups.set(stream.ability, new Set([stream]));
  }

  remove(stream: EventStream): void {
    const group = this.groups.get(stream.ability);
    group?.delete(stream);
    if (group?.size === 0) this.groups.delete(stream.ability);
  }

  /** Moves a stream to the group of its new ability. */
  regroup(stream: EventStream, ability: PrincipalAbility): void {
    if (ability === stream.ability) return;
    this.remove(stream);
    stream.ability = ability;
    if (stream.open) this.add(stream);
  }

  /** Tracks an ability change; the next pass delivers nothing before it is done. */
  refresh(work: Promise<void>): void {
    const tracked = work.finally(() => this.refreshing.delete(tracked));
    this.refreshing.add(tracked);
  }

  /** Events committed: read them (once, however many wakes arrive meanwhile). */
  wake(): void {
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = this.readAll().finally(() => (this.reading = undefined));
  }

  close(): void {
    clearTimeout(this.retry);
  }

  private async readAll(): Promise<void> {
    do {
      this.again = false;
      try {
        if (!(await this.pass())) {
          clearTimeout(this.retry);
          this.retry = setTimeout(() => this.wake(), gateRetryMs).unref();
          return;
        }
      } catch (error) {
        this.context.logger.warn({ err: error, workspaceId: this.workspaceId }, 'reading events for streams failed');
        return;
      }
    } while (this.again);
  }

  /** False when writes in flight outlasted the gate: try again shortly. */
  private async pass(): Promise<boolean> {
    const final = await finalPosition(this.context.database, eventGate, this.workspaceId, gateTimeoutMs);
    if (final === undefined) return false;
    const through = BigInt(final);
    while (this.position < through) {
      const { events, policySetVersion } = await readRecordEvents(
        this.context.database,
        this.workspaceId,
        this.position,
        through,
      );
      if (this.policySetVersion !== undefined && policySetVersion !== this.policySetVersion)
        this.refresh(this.context.refreshAbilities(this.workspaceId, policySetVersion));
      this.policySetVersion = policySetVersion;
      while (this.refreshing.size) await Promise.all(this.refreshing);
      this.deliver(events);
      this.position = events.length === pageSize ? BigInt(events.at(-1)!.seq) : through;
    }
    return true;
  }

  /**
   * A page of events to every group: each event evaluated once per group that has a stream for its
   * structure, and formatted once; then one write per stream for the whole page, of one buffer
   * shared by the group's streams that name the same structures (a socket write is the costly part).
   */
  private deliver(events: readonly StoredEvent[]): void {
    if (!events.length) return;
    for (const [ability, group] of this.groups) {
      const streams = [...group];
      const wanted = new Set(streams.flatMap((stream) => [...stream.structures]));
      const seen: { structure: string; text: string | undefined }[] = [];
      try {
        for (const event of events) {
          if (!wanted.has(event.structure!)) continue;
          this.context.evaluated();
          const message = this.context.view(ability, event);
          seen.push({
            structure: event.structure!,
            text: message && formatEvent(message.event, message, event.seq),
          });
        }
      } catch (error) {
        this.context.logger.warn({ err: error, workspaceId: this.workspaceId }, 'a stream could not see an event');
        for (const stream of streams)
          stream.end({ event: 'error', code: 'evaluation_failed', detail: 'this stream could not be evaluated' });
        continue;
      }
      const pages = new Map<string, Buffer | undefined>();
      for (const stream of streams) {
        if (stream.backlog) {
          for (const { structure, text } of seen)
            if (stream.structures.has(structure)) stream.backlog.push(() => text && stream.write(text));
          continue;
        }
        const key = [...stream.structures].join(',');
        if (!pages.has(key)) {
          const text = seen
            .filter((item) => item.text && stream.structures.has(item.structure))
            .map((item) => item.text)
            .join('');
          pages.set(key, text ? Buffer.from(text) : undefined);
        }
        const page = pages.get(key);
        if (page) stream.write(page);
      }
    }
  }
}
