import { LRUCache } from 'lru-cache';
import type pg from 'pg';
import type { ChangeBus } from '../../db/changes.ts';
import { scopeCte } from '../../db/scoped.ts';
import { recordSchema, type RecordSchema } from './record-schema.ts';
import type { Fields } from './structures.schema.ts';

export interface KnownStructure {
  name: string;
  version: number;
  fields: Fields;
  fieldNames: string[];
  schema: RecordSchema;
}

/**
 * The structures the record path needs on every request, cached per workspace and dropped on
 * every instance when a structure changes. Writes also check the version they validated against
 * inside their statement, so a change that has not reached this instance yet cannot slip by.
 */
export class StructureCatalog {
  private readonly cache = new LRUCache<string, KnownStructure>({ max: 10_000 });
  private readonly pool: pg.Pool;

  constructor(pool: pg.Pool, changes: ChangeBus) {
    this.pool = pool;
    changes.subscribe((change) => {
      if (change.workspaceId === '*') this.cache.clear();
      else if (change.topic === 'structure' || change.topic === 'workspace') this.forget(change.workspaceId);
    });
  }

  async find(workspaceId: string, name: string): Promise<KnownStructure | undefined> {
    const key = `${workspaceId}:${name}`;
    const cached = this.cache.get(key);
    if (cached) return cached;
    const { rows } = await this.pool.query<{ name: string; version: number; fields: Fields }>({
      name: 'cordon_find_structure',
      text: `with ${scopeCte}
             select found.* from scope cross join lateral (
               select s.name, s.version, s.fields from structures s
               where s.workspace_id = scope.workspace_id and s.name = $2 offset 0) found`,
      values: [workspaceId, name],
    });
    const row = rows[0];
    if (!row) return undefined;
    const structure: KnownStructure = {
      name: row.name,
      version: row.version,
      fields: row.fields,
      fieldNames: Object.keys(row.fields),
      schema: recordSchema({ workspaceId, name: row.name, version: row.version }, row.fields),
    };
    this.cache.set(key, structure);
    return structure;
  }

  forget(workspaceId: string): void {
    const prefix = `${workspaceId}:`;
    for (const key of this.cache.keys()) if (key.startsWith(prefix)) this.cache.delete(key);
  }
}
