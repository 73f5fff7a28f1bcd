import { LockMode } from '@mikro-orm/core';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { ChangeBus } from '../../db/changes.ts';
import type { Orm } from '../../db/orm.ts';
import { withWorkspace } from '../../db/scope.ts';
import { WorkspaceConfiguration } from '../../db/workspace-configuration.ts';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import type { Actor } from '../../policy/access.ts';
import { defaultErrors, unstorableData, withCandidateSchema, type RecordSchema } from './record-schema.ts';
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

const scanBatch = 1_000;

export class StructuresService extends WorkspaceConfiguration {
  constructor(orm: Orm, changes: ChangeBus) {
    super(orm, changes, 'structure');
  }

  private async load(em: EntityManager, workspaceId: string, name: string, lock = false): Promise<Structure> {
    const structure = await em.findOne(
      StructureEntity,
      { workspaceId, name },
      lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {},
    );
    if (!structure) throw new ProblemError('structure_not_found', `No structure "${name}" in this workspace`);
    return structure;
  }

  /** Field definitions that are consistent in themselves and point at structures that exist. */
  private async check(em: EntityManager, workspaceId: string, name: string, fields: Fields): Promise<void> {
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
        !(await em.count(StructureEntity, { workspaceId, name: definition.structure }))
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

  async list(workspaceId: string): Promise<StructureResponse[]> {
    return withWorkspace(this.orm, workspaceId, async (em) =>
      (await em.find(StructureEntity, { workspaceId }, { orderBy: { name: 'asc' } })).map(toResponse),
    );
  }

  async get(workspaceId: string, name: string): Promise<StructureResponse> {
    return withWorkspace(this.orm, workspaceId, async (em) => toResponse(await this.load(em, workspaceId, name)));
  }

  async create(actor: Actor, workspaceId: string, input: StructureInput): Promise<StructureResponse> {
    return this.change(workspaceId, actor, async (em) => {
      await this.check(em, workspaceId, input.name, input.fields);
      const structure = em.create(StructureEntity, {
        workspaceId,
        name: input.name,
        description: input.description,
        fields: input.fields,
      });
      await em.flush();
      return toResponse(structure);
    });
  }

  /**
   * Replaces the field definitions. Records missing a newly added field that has a default get
   * it; a change that leaves stored records invalid is refused with their count unless forced.
   * Forcing never rewrites or drops stored data: such records must be fixed on their next update.
   */
  async replace(
    actor: Actor,
    workspaceId: string,
    name: string,
    input: StructureReplacement,
    force: boolean,
  ): Promise<StructureResponse> {
    return this.change(workspaceId, actor, async (em) => {
      const structure = await this.load(em, workspaceId, name, true);
      await this.check(em, workspaceId, name, input.fields);
      const version = structure.version + 1;
      const added = Object.entries(input.fields).filter(
        ([field, definition]) =>
          !Object.hasOwn(structure.fields, field) && 'default' in definition && definition.default !== undefined,
      );
      const { breaking, defaults } = await withCandidateSchema(input.fields, async (schema) => {
        const all = schema.normalise({}, { defaults: true });
        // Only newly added fields are filled in stored records, so only theirs count here.
        const filled = Object.fromEntries(added.map(([field]) => [field, all[field]]));
        return { breaking: await this.countBreaking(em, workspaceId, name, schema, filled), defaults: all };
      });
      if (breaking > 0 && !force) {
        throw new ProblemError(
          'structure_change_breaks_records',
          `${breaking} stored record${breaking === 1 ? '' : 's'} would not match the new fields; fix them first or repeat with ?force=true`,
        );
      }
      const now = new Date();
      for (const [field] of added) {
        const value = defaults[field];
        await em.execute(
          `update records set data = jsonb_set(data, array[?]::text[], ?::jsonb), version = version + 1, updated_at = ?
           where workspace_id = ? and structure = ? and not jsonb_exists(data, ?)`,
          [field, JSON.stringify(value), now, workspaceId, name, field],
        );
      }
      em.assign(structure, { description: input.description, fields: input.fields, version, updatedAt: now });
      await em.flush();
      return toResponse(structure);
    });
  }

  /** Records that would fail the new schema once the `filled` defaults of new fields are in. */
  private async countBreaking(
    em: EntityManager,
    workspaceId: string,
    name: string,
    schema: RecordSchema,
    filled: Record<string, unknown>,
  ): Promise<number> {
    let breaking = 0;
    let after = '00000000-0000-0000-0000-000000000000';
    for (;;) {
      const rows = await em.execute<{ id: string; data: Record<string, unknown> }[]>(
        'select id, data from records where workspace_id = ? and structure = ? and id > ? order by id limit ?',
        [workspaceId, name, after, scanBatch],
      );
      for (const row of rows)
        if (schema.validate(schema.normalise({ ...filled, ...row.data }, { defaults: false })).length) breaking += 1;
      if (rows.length < scanBatch) return breaking;
      after = rows.at(-1)!.id;
    }
  }

  async remove(actor: Actor, workspaceId: string, name: string, force: boolean): Promise<void> {
    await this.change(workspaceId, actor, async (em) => {
      await this.load(em, workspaceId, name, true);
      const referencing = (await em.find(StructureEntity, { workspaceId })).filter(
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
      const [{ count }] = await em.execute<[{ count: string }]>(
        'select count(*) from records where workspace_id = ? and structure = ?',
        [workspaceId, name],
      );
      if (Number(count) > 0 && !force) {
        throw new ProblemError(
          'structure_has_records',
          `"${name}" has ${count} record${count === '1' ? '' : 's'}; repeat with ?force=true to delete them with it`,
        );
      }
      // The records go with it (foreign key, on delete cascade).
      await em.nativeDelete(StructureEntity, { workspaceId, name });
    });
  }
}
