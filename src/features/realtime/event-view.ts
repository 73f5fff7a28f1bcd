import type { StoredEvent } from '../../events/event-log.ts';
import type { PrincipalAbility } from '../../policy/ability.ts';
import type { RecordRow } from '../records/record-store.ts';
import { subjectOf, toResponse } from '../records/record-view.ts';
import type { RecordResponse } from '../records/records.schema.ts';

/** The record events a stream carries; other events (invitations, notifications) are not records. */
export const recordEventTypes = ['record_created', 'record_updated', 'record_deleted'] as const;
export type RecordEventType = (typeof recordEventTypes)[number];

/** One message of a stream, as its subscriber may see it. */
export interface StreamMessage {
  event: RecordEventType;
  structure: string;
  recordId: string;
  seq: string;
  data: RecordResponse | { before: RecordResponse; after: RecordResponse } | { before: RecordResponse };
  reason?: 'entered_view' | 'left_view';
}

const systemFields = new Set(['id', 'createdBy', 'createdAt', 'updatedAt']);

/** A record as an event carries it (its document: fields plus system fields) back as a stored row. */
function rowOf(document: unknown, version: number): RecordRow | undefined {
  if (typeof document !== 'object' || document === null) return undefined;
  const { id, createdBy, createdAt, updatedAt } = document as Record<string, unknown>;
  if (typeof id !== 'string' || typeof createdAt !== 'string' || typeof updatedAt !== 'string') return undefined;
  const data = Object.fromEntries(Object.entries(document).filter(([field]) => !systemFields.has(field)));
  return {
    id,
    data,
    created_by: typeof createdBy === 'string' ? createdBy : '',
    created_at: new Date(createdAt),
    updated_at: new Date(updatedAt),
    version,
  };
}

/**
 * What one ability sees of a record event: the record-level read check on the record as the event
 * carries it (before and after an update), fields stripped as `GET` strips them. An update that
 * takes the record out of view is a `record_deleted` with `left_view`; one that brings it in, a
 * `record_created` with `entered_view`. Undefined: nothing to see. Pure and in memory: a stream's
 * hub runs it once per event for every group of subscribers that share an ability.
 */
export function eventView(ability: PrincipalAbility, event: StoredEvent): StreamMessage | undefined {
  const structure = event.structure;
  const recordId = event.recordId;
  if (!structure || !recordId) return undefined;
  const { before, after, version } = event.data as { before?: unknown; after?: unknown; version?: unknown };
  const current = typeof version === 'number' ? version : 0;
  const base = { structure, recordId, seq: event.seq };
  const visible = (row: RecordRow | undefined): row is RecordRow =>
    row !== undefined && ability.can('read', subjectOf(structure, row));
  const view = (row: RecordRow) => toResponse(ability, structure, row);

  if (event.type === 'record_created') {
    const row = rowOf(after, current);
    return visible(row) ? { event: 'record_created', ...base, data: view(row) } : undefined;
  }
  if (event.type === 'record_deleted') {
    const row = rowOf(before, current);
    return visible(row) ? { event: 'record_deleted', ...base, data: { before: view(row) } } : undefined;
  }
  if (event.type !== 'record_updated') return undefined;
  const old = rowOf(before, current - 1);
  const row = rowOf(after, current);
  const was = visible(old);
  const is = visible(row);
  if (was && is) return { event: 'record_updated', ...base, data: { before: view(old), after: view(row) } };
  if (is) return { event: 'record_created', ...base, data: view(row), reason: 'entered_view' };
  if (was) return { event: 'record_deleted', ...base, data: { before: view(old) }, reason: 'left_view' };
  return undefined;
}
