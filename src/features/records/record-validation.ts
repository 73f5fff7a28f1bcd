import type { RawBuilder } from 'kysely';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import type { PrincipalAbility } from '../../policy/ability.ts';
import { rulesCondition } from '../../policy/sql-filter.ts';
import type { KnownStructure } from '../structures/structure-catalog.ts';

/** Which of `ids` name records of `structure` that match `readable` (SQL over the record `r`). */
export type ReferenceLookup = (structure: string, ids: string[], readable: RawBuilder<unknown>) => Promise<Set<string>>;

/**
 * The data against the structure, and its references: each must name a record of the target
 * structure that the principal may read — one it may not is answered as if it did not exist, so
 * a writer cannot probe the ids of records hidden from it. One lookup per target structure.
 */
export async function validateRecord(
  ability: PrincipalAbility,
  structure: KnownStructure,
  data: Record<string, unknown>,
  lookup: ReferenceLookup,
): Promise<void> {
  const errors: FieldError[] = structure.schema.validate(data);
  if (!errors.length) {
    const references = Object.entries(structure.fields).flatMap(([field, definition]) => {
      const value = data[field];
      return definition.type === 'reference' && typeof value === 'string'
        ? [{ field, target: definition.structure, value }]
        : [];
    });
    for (const target of new Set(references.map((reference) => reference.target))) {
      const wanted = references.filter((reference) => reference.target === target);
      const readable = rulesCondition(ability.rulesFor('read', target));
      const found = await lookup(
        target,
        wanted.map((reference) => reference.value),
        readable,
      );
      for (const { field, value } of wanted) {
        if (!found.has(value)) {
          errors.push({ pointer: `/data/${field}`, in: 'body', detail: `there is no ${target} record "${value}"` });
        }
      }
    }
  }
  if (errors.length) throw new ProblemError('validation_failed', `The ${structure.name} record is invalid`, { errors });
}
