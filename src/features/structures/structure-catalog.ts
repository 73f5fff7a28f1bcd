import { sql } from 'kysely';
import type { ChangeBus } from '../../db/changes.ts';
import { prepared, type Database } from '../../db/database.ts';
import { WorkspaceCache } from '../../db/workspace-cache.ts';
import { recordSchema, type RecordSchema } from './record-schema.ts';
import type { Fields } from './structures.schema.ts';

export interface KnownStructure {
  name: string;
  version: number;
  fields: Fields;
  /**
   * The fields as JSON text, which a write's statement compares with the stored fields: the
   * version alone would not tell a structure deleted and made again (version 1 again) from the one
   * its data was validated against.
   */
  fieldsText: string;
  fieldNames: string[];
  schema: RecordSchema;
}

/**
 * The structures the record path needs on every request, cached per workspace and dropped on
 * every instance when a structure changes. Writes also check, inside their statement, that the
 * structure still has the fields they validated against, so a change that has not reached this
 * instance yet cannot slip by.
 */
export class StructureCatalog {
  private readonly cache: WorkspaceCache<KnownStructure>;
  private readonly database: Database;

  constructor(database: Database, changes: ChangeBus) {
    this.database = database;
    this.cache = new WorkspaceCache(changes, ['structure'], 10_000);
  }

  find(workspaceId: string, name: string): Promise<KnownStructure | undefined> {
    return this.cache.get(workspaceId, name, async () => {
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
      return {
        name: row.name,
        version: row.version,
        fields: row.fields,
        fieldsText: JSON.stringify(row.fields),
        fieldNames: Object.keys(row.fields),
        schema: recordSchema(row.fields),
      };
    });
  }

  /** The structure changed under a write, before this instance heard of it. */
  forget(workspaceId: string): void {
    this.cache.forget(workspaceId);
  }
}
