import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import type { ChangeBus } from '../../db/changes.ts';
import { prepared, type Database } from '../../db/database.ts';
import { recordSchema, type RecordSchema } from './record-schema.ts';
import type { Fields } from './structures.schema.ts';

export interface KnownStructure {
  name: string;
  version: number;
  fields: Fields;
  fieldNames: string[];
  schema: RecordSchema;
}

/** Entries expire even without a change heard: a missed notification heals within this. */
const cacheMillis = 60_000;

/**
 * The structures the record path needs on every request, cached per workspace and dropped on
 * every instance when a structure changes. Writes also check the version they validated against
 * inside their statement, so a change that has not reached this instance yet cannot slip by.
 */
export class StructureCatalog {
  private readonly cache = new LRUCache<string, KnownStructure>({ max: 10_000, ttl: cacheMillis });
  private readonly database: Database;
  /** Counts the changes heard: a load that a change overtook answers its request, but is not cached. */
  private changesSeen = 0;

  constructor(database: Database, changes: ChangeBus) {
    this.database = database;
    changes.subscribe((change) => {
      if (change.workspaceId === '*') {
        this.changesSeen += 1;
        this.cache.clear();
      } else if (change.topic === 'structure' || change.topic === 'workspace') this.forget(change.workspaceId);
    });
  }

  async find(workspaceId: string, name: string): Promise<KnownStructure | undefined> {
    const key = `${workspaceId}:${name}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const seen = this.changesSeen;
    const [row] = await this.database.inWorkspace(workspaceId, (scope) =>
      prepared(
        'cordon_find_structure',
        sql<{ name: string; version: number; fields: Fields }>`with ${scope}
          select found.* from scope cross join lateral (
            select s.name, s.version, s.fields from structures s
            where s.workspace_id = scope.workspace_id and s.name = ${name} offset 0) found`,
      ),
    );
    if (!row) return undefined;
    const structure: KnownStructure = {
      name: row.name,
      version: row.version,
      fields: row.fields,
      fieldNames: Object.keys(row.fields),
      schema: recordSchema({ workspaceId, name: row.name, version: row.version }, row.fields),
    };
    if (this.changesSeen === seen) this.cache.set(key, structure);
    return structure;
  }

  forget(workspaceId: string): void {
    this.changesSeen += 1;
    const prefix = `${workspaceId}:`;
    for (const key of this.cache.keys()) if (key.startsWith(prefix)) this.cache.delete(key);
  }
}
