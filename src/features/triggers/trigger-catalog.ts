import { sql } from 'kysely';
import type { ChangeBus } from '../../db/changes.ts';
import type { Scope } from '../../db/database.ts';
import { WorkspaceCache } from '../../db/workspace-cache.ts';
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

/**
 * Each workspace's enabled triggers, parsed once, for the dispatcher that looks at every event:
 * dropped on every instance when a trigger changes (the `trigger` topic).
 */
export class TriggerCatalog {
  private readonly cache: WorkspaceCache<ActiveTrigger[]>;

  constructor(changes: ChangeBus) {
    this.cache = new WorkspaceCache(changes, ['trigger'], 10_000);
  }

  async enabled(scope: Scope): Promise<ActiveTrigger[]> {
    const triggers = await this.cache.get(scope.workspaceId, '', async () => {
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
      return rows.map((row) => ({
        id: row.id,
        events: new Set(row.events),
        structure: row.structure,
        // Stored conditions were validated; one that no longer parses matches nothing.
        condition: row.condition === null ? undefined : (parseConditions(row.condition, '').condition ?? nothing),
        action: row.action,
      }));
    });
    return triggers ?? [];
  }
}

const nothing: Condition = { kind: 'or', conditions: [] };
