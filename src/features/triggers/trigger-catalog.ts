import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { ChangeBus } from '../../db/changes.ts';
import type { Scope } from '../../db/database.ts';
import type { StoredEvent } from '../../events/event-log.ts';
import { matches, parseConditions, type Condition } from '../../policy/conditions.ts';
import { recordEvents, type TriggerAction } from './triggers.schema.ts';

/** An enabled trigger as the dispatcher matches events against it. */
export interface ActiveTrigger {
  id: string;
  events: ReadonlySet<string>;
  structure: string | null;
  condition: Condition | undefined;
  action: TriggerAction;
}

/** What a trigger's condition is matched against: a record's `after` (`before` for a delete), else the event's data. */
export function conditionDocument(event: Pick<StoredEvent, 'type' | 'data'>): unknown {
  if (!recordEvents.has(event.type)) return event.data;
  return event.data.after ?? event.data.before;
}

/**
 * Whether an event fires a trigger: one of its events, its structure, its condition (the policy
 * grammar and matcher). A function trigger stops a chain of function writes at `chainDepth`.
 */
export function fires(trigger: ActiveTrigger, event: StoredEvent, chainDepth: number): boolean {
  if (!trigger.events.has(event.type)) return false;
  if (trigger.structure !== null && event.structure !== trigger.structure) return false;
  if (trigger.action.type === 'function' && event.depth >= chainDepth) return false;
  return trigger.condition === undefined || matches(trigger.condition, conditionDocument(event));
}

/** Entries expire even without a change heard: a missed notification heals within this. */
const cacheMillis = 60_000;

/**
 * Each workspace's enabled triggers, parsed once, for the dispatcher that looks at every event:
 * dropped on every instance when a trigger changes (the `trigger` topic).
 */
export class TriggerCatalog {
  private readonly cache = new LRUCache<string, ActiveTrigger[]>({ max: 10_000, ttl: cacheMillis });
  /** Counts the changes heard: a load that a change overtook is used once, never cached. */
  private changesSeen = 0;

  constructor(changes: ChangeBus) {
    changes.subscribe((change) => {
      this.changesSeen += 1;
      if (change.workspaceId === '*') this.cache.clear();
      else if (change.topic === 'trigger' || change.topic === 'workspace') this.cache.delete(change.workspaceId);
    });
  }

  async enabled(scope: Scope): Promise<ActiveTrigger[]> {
    const cached = this.cache.get(scope.workspaceId);
    if (cached) return cached;
    const seen = this.changesSeen;
    const rows = await scope.query(
      sql<{
        id: string;
        events: string[];
        structure: string | null;
        condition: Record<string, unknown> | null;
        action: TriggerAction;
      }>`select id, events, structure, condition, action from triggers
        where workspace_id = ${scope.workspaceId}::uuid and enabled order by created_at, id`,
    );
    const triggers = rows.map((row) => ({
      id: row.id,
      events: new Set(row.events),
      structure: row.structure,
      // Stored conditions were validated; one that no longer parses matches nothing.
      condition: row.condition === null ? undefined : (parseConditions(row.condition, '').condition ?? nothing),
      action: row.action,
    }));
    if (this.changesSeen === seen) this.cache.set(scope.workspaceId, triggers);
    return triggers;
  }
}

const nothing: Condition = { kind: 'or', conditions: [] };
