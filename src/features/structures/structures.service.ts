import { LockMode } from '@mikro-orm/core';
import { sql } from 'kysely';
import type { Scope } from '../../db/database.ts';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import type { Caller } from '../../policy/access.ts';
import { WorkspaceConfiguration } from '../../policy/workspace-configuration.ts';
import { breakingCondition } from './breaking-records.ts';
import { defaultErrors, unstorableData, withCandidateSchema } from './record-schema.ts';
import { StructureEntity, type Structure } from './structure.entity.ts';
import type { Fields, StructureInput, StructureReplacement, StructureResponse } from './structures.schema.ts';

export function toResponse(structure: Structure): StructureResponse {
  return {
    name: structure.name,
    description: structure.description,
    fields: structure.fields,
    version: structure.version,
    createdAt: structure.createdAt.toISOString(),
    updatedAt: structure.updatedAt.toISOString(),
  };
}

export class StructuresService extends WorkspaceConfiguration {
  constructor(options: ConstructorParameters<typeof WorkspaceConfiguration>[0]) {
    super(options, 'structure');
  }

  private async load(scope: Scope, name: string, lock = false): Promise<Structure> {
    const structure = await scope.em.findOne(
      StructureEntity,
      { workspaceId: scope.workspaceId, name },
      lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {},
    );
    if (!structure) throw new ProblemError('structure_not_found', `No structure "${name}" in this workspace`);
    return structure;
  }

  /** Field definitions that are consistent in themselves and point at structures that exist. */
  private async check(scope: Scope, name: string, fields: Fields): Promise<void> {
    const errors: FieldError[] = [...defaultErrors(fields)];
    for (const [field, definition] of Object.entries(fields)) {
      // A default that record data could not hold would make every create fail.
      if ('default' in definition && definition.default !== undefined) {
        errors.push(
          ...unstorableData(definition.default).map((error) => ({
            ...error,
            pointer: `/fields/${field}/default${error.pointer.slice('/data'.length)}`,
          })),
        );
      }
    }
    for (const [field, definition] of Object.entries(fields)) {
      if (
        (definition.type === 'number' || definition.type === 'integer') &&
        definition.min !== undefined &&
        definition.max !== undefined &&
        definition.min > definition.max
      ) {
        errors.push({ pointer: `/fields/${field}/min`, in: 'body', detail: 'must not be greater than max' });
      }
      if (
        definition.type === 'reference' &&
        definition.structure !== name &&
        !(await scope.em.count(StructureEntity, { workspaceId: scope.workspaceId, name: definition.structure }))
      ) {
        errors.push({
          pointer: `/fields/${field}/structure`,
          in: 'body',
          detail: `there is no structure "${definition.structure}" in this workspace`,
        });
      }
    }
    if (errors.length) throw new ProblemError('validation_failed', 'The structure is invalid', { errors });
  }

  list(caller: Caller): Promise<StructureResponse[]> {
    return this.read(caller, async (scope) =>
      (await scope.em.find(StructureEntity, { workspaceId: scope.workspaceId }, { orderBy: { name: 'asc' } })).map(
        toResponse,
      ),
    );
  }

  get(caller: Caller, name: string): Promise<StructureResponse> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: name });
      return toResponse(await this.load(scope, name));
    });
  }

  create(caller: Caller, input: StructureInput): Promise<StructureResponse> {
    return this.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: input.name });
      await this.check(scope, input.name, input.fields);
      const structure = scope.em.create(StructureEntity, {
        workspaceId: scope.workspaceId,
        name: input.name,
        description: input.description,
        fields: input.fields,
      });
      await scope.em.flush();
      return toResponse(structure);
    });
  }

  /**
   * Replaces the field definitions. Records missing a newly added field that has a default get
   * it; a change that leaves stored records invalid is refused with their count unless forced.
   * Forcing never rewrites or drops stored data: such records must be fixed on their next update.
   */
  replace(caller: Caller, name: string, input: StructureReplacement, force: boolean): Promise<StructureResponse> {
    return this.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: name });
      const structure = await this.load(scope, name, true);
      await this.check(scope, name, input.fields);
      const version = structure.version + 1;
      const added = Object.entries(input.fields).filter(
        ([field, definition]) =>
          !Object.hasOwn(structure.fields, field) && 'default' in definition && definition.default !== undefined,
      );
      const defaults = await withCandidateSchema(input.fields, async (schema) =>
        schema.normalise({}, { defaults: true }),
      );
      // Only newly added fields are filled in stored records, so only theirs count here.
      const breaking = await this.countBreaking(
        scope,
        name,
        input.fields,
        added.map(([field]) => field),
      );
      if (breaking > 0 && !force) {
        throw new ProblemError(
          'structure_change_breaks_records',
          `${breaking} stored record${breaking === 1 ? '' : 's'} would not match the new fields; fix them first or repeat with ?force=true`,
        );
      }
      const now = new Date();
      for (const [field] of added) {
        await scope.query(
          sql`update records set data = jsonb_set(data, array[${field}::text], ${JSON.stringify(defaults[field])}::jsonb),
                version = version + 1, updated_at = ${now}::timestamptz
              where workspace_id = ${scope.workspaceId}::uuid and structure = ${name} and not data ? ${field}::text`,
        );
      }
      scope.em.assign(structure, { description: input.description, fields: input.fields, version, updatedAt: now });
      await scope.em.flush();
      return toResponse(structure);
    });
  }

  /**
   * Records that would fail the new schema once the defaults of the `filled` fields are in: one
   * statement, whatever the number of records (see breaking-records.ts).
   */
  private async countBreaking(scope: Scope, name: string, fields: Fields, filled: string[]): Promise<number> {
    const [row] = await scope.query(
      sql<{ count: string }>`select count(*) from records r
        where r.workspace_id = ${scope.workspaceId}::uuid and r.structure = ${name} and ${breakingCondition(fields, filled)}`,
    );
    return Number(row?.count ?? 0);
  }

  async remove(caller: Caller, name: string, force: boolean): Promise<void> {
    await this.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: name });
      await this.load(scope, name, true);
      const referencing = (await scope.em.find(StructureEntity, { workspaceId: scope.workspaceId })).filter(
        (other) =>
          other.name !== name &&
          Object.values(other.fields).some((field) => field.type === 'reference' && field.structure === name),
      );
      if (referencing.length) {
        throw new ProblemError(
          'structure_in_use',
          `Structures ${referencing.map((other) => `"${other.name}"`).join(', ')} reference "${name}"; change them first`,
        );
      }
      const [row] = await scope.query(
        sql<{ count: string }>`select count(*) from records
          where workspace_id = ${scope.workspaceId}::uuid and structure = ${name}`,
      );
      const count = Number(row?.count ?? 0);
      if (count > 0 && !force) {
        throw new ProblemError(
          'structure_has_records',
          `"${name}" has ${count} record${count === 1 ? '' : 's'}; repeat with ?force=true to delete them with it`,
        );
      }
      // The records go with it (foreign key, on delete cascade).
      await scope.em.nativeDelete(StructureEntity, { workspaceId: scope.workspaceId, name });
    });
  }
}
