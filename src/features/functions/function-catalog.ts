import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { ChangeBus } from '../../db/changes.ts';
import { prepared, type Database } from '../../db/database.ts';

/** A function as a run needs it. */
export interface StoredFunction {
  name: string;
  code: string;
  roles: string[];
  timeoutMs: number;
  memoryMb: number;
  version: number;
}

/** Entries expire even without a change heard: a missed notification heals within this. */
const cacheMillis = 60_000;

/**
 * The functions that triggers run, cached per workspace and dropped on every instance when one
 * changes (as structures are): a trigger's run does not read its function's code every time.
 */
export class FunctionCatalog {
  private readonly cache = new LRUCache<string, StoredFunction>({ max: 1_000, ttl: cacheMillis });
  private readonly database: Database;
  /** Counts the changes heard: a load that a change overtook answers, but is not cached. */
  private changesSeen = 0;

  constructor(database: Database, changes: ChangeBus) {
    this.database = database;
    changes.subscribe((change) => {
      if (change.workspaceId === '*') {
        this.changesSeen += 1;
        this.cache.clear();
      } else if (change.topic === 'function' || change.topic === 'workspace') this.forget(change.workspaceId);
    });
  }

  async find(workspaceId: string, name: string): Promise<StoredFunction | undefined> {
    const key = `${workspaceId}:${name}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const seen = this.changesSeen;
    const [row] = await this.database.inWorkspace(workspaceId, (scope) =>
      prepared(
        'cordon_find_function',
        sql<StoredFunction>`with ${scope}
          select found.* from scope cross join lateral (
            select f.name, f.code, f.roles, f.timeout_ms as "timeoutMs", f.memory_mb as "memoryMb", f.version
            from functions f where f.workspace_id = scope.workspace_id and f.name = ${name} offset 0) found`,
      ),
    );
    if (row && this.changesSeen === seen) this.cache.set(key, row);
    return row;
  }

  private forget(workspaceId: string): void {
    this.changesSeen += 1;
    const prefix = `${workspaceId}:`;
    for (const key of this.cache.keys()) if (key.startsWith(prefix)) this.cache.delete(key);
  }
}
