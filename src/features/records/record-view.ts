import { asRecordSubject, type Decision, type PrincipalAbility } from '../../policy/ability.ts';
import type { Action } from '../../policy/vocabulary.ts';
import type { RecordRow } from './record-store.ts';
import type { RecordResponse } from './records.schema.ts';

/** How a record looks to policies and to the principal who asked for it. */

/** What policies see: the record's data with its system fields beside it. */
export function documentOf(row: RecordRow): Record<string, unknown> {
  return {
    ...row.data,
    id: row.id,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** The record as CASL's subject of type `structure`. */
export const subjectOf = (structure: string, row: RecordRow): object => asRecordSubject(structure, documentOf(row));

/**
 * What leaves the service: data without the fields the principal may not read on this record.
 * After a write the principal may hold no right to read the record at all (update-only rules):
 * then its data stays out. The subject is built only when a rule needs it, not for every row of
 * every list.
 */
export function toResponse(
  ability: PrincipalAbility,
  structure: string,
  row: RecordRow,
  afterWrite = false,
): RecordResponse {
  const fieldRules = ability.hasFieldRules('read', structure);
  const target = fieldRules || afterWrite ? subjectOf(structure, row) : undefined;
  let data = row.data;
  if (target && afterWrite && !ability.can('read', target)) data = {};
  else if (target && fieldRules) {
    data = Object.fromEntries(Object.entries(row.data).filter(([field]) => ability.can('read', target, field)));
  }
  return {
    id: row.id,
    structure,
    data,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
    version: row.version,
  };
}

/**
 * The decision on writing `fields` of the record in each state it passes through (before and
 * after an update): the record-level decision, or the first field rule that refuses.
 */
export function writeDecision(
  ability: PrincipalAbility,
  action: Action,
  structure: string,
  targets: readonly object[],
  fields: readonly string[],
): Decision {
  const decision = ability.decideOn(action, targets.at(-1)!);
  if (!decision.allowed || !ability.hasFieldRules(action, structure)) return decision;
  for (const field of fields) {
    for (const target of targets) {
      const refusal = ability.decideOn(action, target, field);
      if (!refusal.allowed) return { ...refusal, reason: `may not ${action} field "${field}": ${refusal.reason}` };
    }
  }
  return decision;
}

/** `If-Match: "3"` (or W/"3", a list, or *) against the stored version. */
export function versionMatches(ifMatch: string, version: number): boolean {
  return ifMatch.split(',').some((tag) => {
    const value = tag.trim().replace(/^W\//, '');
    return value === '*' || value === `"${version}"` || value === String(version);
  });
}
