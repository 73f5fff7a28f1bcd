import { sql } from 'kysely';
import type { ChangeBus } from '../../db/changes.ts';
import { prepared, type Database } from '../../db/database.ts';
import { WorkspaceCache } from '../../db/workspace-cache.ts';

/** A function as a run needs it. */
export interface StoredFunction {
  name: string;
  code: string;
  roles: string[];
  timeoutMs: number;
  memoryMb: number;
  version: number;
}

/**
 * The functions that triggers run, cached per workspace and dropped on every instance when one
 * changes (as structures are): a trigger's run does not read its function's code every time.
 */
export class FunctionCatalog {
  private readonly cache: WorkspaceCache<StoredFunction>;
  private readonly database: Database;

  constructor(database: Database, changes: ChangeBus) {
    this.database = database;
    this.cache = new WorkspaceCache(changes, ['function'], 1_000);
  }

  find(workspaceId: string, name: string): Promise<StoredFunction | undefined> {
    return this.cache.get(workspaceId, name, async () => {
      const [row] = await this.database.inWorkspace(workspaceId, (scope) =>
        prepared(
          'cordon_find_function',
          sql<StoredFunction>`with ${scope}
            select found.* from scope cross join lateral (
              select f.name, f.code, f.roles, f.timeout_ms as "timeoutMs", f.memory_mb as "memoryMb", f.version
              from functions f where f.workspace_id = scope.workspace_id and f.name = ${name} offset 0) found`,
        ),
      );
      return row;
    });
  }
}
