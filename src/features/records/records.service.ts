import { v7 as uuidv7 } from 'uuid';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import { keysetPage } from '../../http/cursor.ts';
import { asRecordSubject, type Decision } from '../../policy/ability.ts';
import type { Caller } from '../../policy/access.ts';
import { rulesCondition, recordCondition, SqlParameters } from '../../policy/sql-filter.ts';
import type { Action } from '../../policy/vocabulary.ts';
import type { DecisionEntry, Operation } from '../decisions/decision-log.ts';
import type { KnownStructure, StructureCatalog } from '../structures/structure-catalog.ts';
import { isUuid } from '../workspaces/workspaces.schema.ts';
import {
  afterCursor,
  defaultSort,
  encodeListCursor,
  listFingerprint,
  orderBy,
  parseFilter,
  parseSort,
  sortColumns,
  topLevelFields,
} from './list-query.ts';
import { mergePatch } from './merge-patch.ts';
import type { RecordRow, RecordSession, RecordStore } from './record-store.ts';
import type { ListQuery, RecordResponse } from './records.schema.ts';

/** What policies see: the record's data with its system fields beside it. */
function documentOf(
  row: Pick<RecordRow, 'id' | 'data' | 'created_by'> & { created_at: Date; updated_at: Date },
): Record<string, unknown> {
  return {
    ...row.data,
    id: row.id,
    createdBy: row.created_by,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** `If-Match: "3"` (or W/"3", a list, or *) against the stored version. */
function versionMatches(ifMatch: string, version: number): boolean {
  return ifMatch.split(',').some((tag) => {
    const value = tag.trim().replace(/^W\//, '');
    return value === '*' || value === `"${version}"` || value === String(version);
  });
}

const denied = (reason: string): Decision => ({
  allowed: false,
  policyId: null,
  policyVersion: null,
  ruleIndex: null,
  reason,
});
const maxAttempts = 3;

type Outcome<T> =
  | { kind: 'done'; value: T }
  | { kind: 'missing' }
  | { kind: 'stale' }
  | { kind: 'denied'; entry: DecisionEntry }
  | { kind: 'invalid'; errors: FieldError[] }
  | { kind: 'retry' };

/**
 * The record path, in PRODUCT.md's enforcement order: type-level check before any query; one
 * record loaded inside the tenant scope (another workspace's id is a plain 404); conditions
 * decided on the stored record (and, for updates, on the result too); lists filtered in SQL by
 * the same rules; fields stripped or refused by field rules; every decision logged, a
 * mutation's in its own transaction.
 */
export class RecordsService {
  private readonly store: RecordStore;
  private readonly catalog: StructureCatalog;

  constructor(store: RecordStore, catalog: StructureCatalog) {
    this.store = store;
    this.catalog = catalog;
  }

  private async deny(caller: Caller, entry: DecisionEntry): Promise<never> {
    await caller.log([entry]);
    throw new ProblemError('forbidden', entry.decision.reason);
  }

  /** Step 3: may the principal do this to records of this type at all? Only then does the structure's existence show. */
  private async structure(
    caller: Caller,
    name: string,
    action: Action,
    operation: Operation,
  ): Promise<{ structure: KnownStructure; typeLevel: Decision }> {
    const typeLevel = caller.ability.decide(action, name);
    if (!typeLevel.allowed) await this.deny(caller, { action, operation, subject: name, decision: typeLevel });
    const structure = await this.catalog.find(caller.workspaceId, name);
    if (!structure) throw new ProblemError('structure_not_found', `No structure "${name}" in this workspace`);
    return { structure, typeLevel };
  }

  private async missing(caller: Caller, entry: DecisionEntry): Promise<never> {
    await caller.log([entry]);
    throw new ProblemError('record_not_found', `No ${entry.subject} record "${entry.resourceId}"`);
  }

  /**
   * What leaves the service: data without the fields the principal may not read on this record.
   * After a write the principal may hold no right to read the record at all (update-only rules):
   * then its data stays out. The record's subject is built only when a rule needs it, not for
   * every row of every list.
   */
  private toResponse(caller: Caller, name: string, row: RecordRow, afterWrite = false): RecordResponse {
    const fieldRules = caller.ability.hasFieldRules('read', name);
    const target = fieldRules || afterWrite ? asRecordSubject(name, documentOf(row)) : undefined;
    let data = row.data;
    if (target && afterWrite && !caller.ability.can('read', target)) data = {};
    else if (target && fieldRules)
      data = Object.fromEntries(
        Object.entries(row.data).filter(([field]) => caller.ability.can('read', target, field)),
      );
    return {
      id: row.id,
      structure: name,
      data,
      createdBy: row.created_by,
      createdAt: row.created_at.toISOString(),
      updatedAt: row.updated_at.toISOString(),
      version: row.version,
    };
  }

  /** The first field of `fields` the principal may not write on this record, as a denial. */
  private fieldDenial(
    caller: Caller,
    action: Action,
    name: string,
    targets: object[],
    fields: string[],
  ): { field: string; decision: Decision } | undefined {
    if (!caller.ability.hasFieldRules(action, name)) return undefined;
    for (const field of fields) {
      for (const target of targets) {
        const decision = caller.ability.decideOn(action, target, field);
        if (!decision.allowed)
          return { field, decision: { ...decision, reason: `may not ${action} field "${field}": ${decision.reason}` } };
      }
    }
    return undefined;
  }

  /** Reference fields must name records of their target structure in this workspace: one query per target. */
  private async referenceErrors(
    structure: KnownStructure,
    data: Record<string, unknown>,
    existing: (structure: string, ids: string[]) => Promise<Set<string>>,
  ): Promise<FieldError[]> {
    const references = Object.entries(structure.fields).flatMap(([field, definition]) => {
      const value = data[field];
      return definition.type === 'reference' && typeof value === 'string'
        ? [{ field, target: definition.structure, value }]
        : [];
    });
    const found = new Map<string, Set<string>>();
    for (const target of new Set(references.map((reference) => reference.target))) {
      found.set(
        target,
        await existing(
          target,
          references.filter((reference) => reference.target === target).map((reference) => reference.value),
        ),
      );
    }
    return references
      .filter(({ target, value }) => !found.get(target)?.has(value))
      .map(({ field, target, value }) => ({
        pointer: `/data/${field}`,
        in: 'body' as const,
        detail: `there is no ${target} record "${value}"`,
      }));
  }

  async get(caller: Caller, name: string, id: string): Promise<RecordResponse> {
    const { typeLevel } = await this.structure(caller, name, 'read', 'get');
    const row = isUuid(id) ? await this.store.find(caller.workspaceId, name, id.toLowerCase()) : undefined;
    if (!row)
      return this.missing(caller, {
        action: 'read',
        operation: 'get',
        subject: name,
        resourceId: id,
        decision: typeLevel,
      });
    const decision = caller.ability.decideOn('read', asRecordSubject(name, documentOf(row)));
    const entry: DecisionEntry = { action: 'read', operation: 'get', subject: name, resourceId: row.id, decision };
    if (!decision.allowed) return this.deny(caller, entry);
    await caller.log([entry]);
    return this.toResponse(caller, name, row);
  }

  async list(
    caller: Caller,
    name: string,
    query: ListQuery,
  ): Promise<{ data: RecordResponse[]; nextCursor: string | null; count?: number }> {
    const { structure, typeLevel } = await this.structure(caller, name, 'read', 'list');
    const sortText = query.sort ?? defaultSort;
    const keys = parseSort(sortText, structure.fieldNames);
    const filter = query.filter === undefined ? undefined : parseFilter(query.filter, structure.fieldNames);
    // Step 6: filtering or sorting on a field is reading it.
    const used = new Set([...(filter ? topLevelFields(filter) : []), ...keys.map((key) => key.field)]);
    for (const field of used) {
      if (!structure.fieldNames.includes(field) || caller.ability.fieldAlwaysPermitted('read', name, field)) continue;
      await this.deny(caller, {
        action: 'read',
        operation: 'list',
        subject: name,
        fields: [field],
        decision: denied(
          `"${field}" is not readable on every record you may read, so it cannot be used to filter or sort`,
        ),
      });
    }
    const rules = caller.ability.rulesFor('read', name);
    const parameters = new SqlParameters();
    const scope = `(${rulesCondition(rules, parameters)})${filter ? ` and (${recordCondition(filter, parameters)})` : ''}`;
    const fingerprint = listFingerprint(caller.workspaceId, name, sortText, query.filter);
    const page = query.cursor ? `${scope} and ${afterCursor(query.cursor, fingerprint, keys, parameters)}` : scope;
    const rows = await this.store.page(
      caller.workspaceId,
      name,
      parameters.bind(page, 2),
      { columns: sortColumns(keys), orderBy: orderBy(keys) },
      query.limit + 1,
    );
    const count = query.count ? await this.store.count(caller.workspaceId, name, parameters.bind(scope, 2)) : undefined;
    const ruleIds = rules
      .map((rule) => `${rule.policyId}#${rule.ruleIndex}${rule.inverted ? ' (deny)' : ''}`)
      .join(', ');
    await caller.log([
      {
        action: 'read',
        operation: 'list',
        subject: name,
        decision: { ...typeLevel, reason: `list filtered in SQL by rules ${ruleIds || '(none)'}` },
      },
    ]);
    const { shown, nextCursor } = keysetPage(rows, query.limit, (last) => encodeListCursor(fingerprint, keys, last));
    return {
      data: shown.map((row) => this.toResponse(caller, name, row)),
      nextCursor,
      ...(count !== undefined && { count }),
    };
  }

  async create(caller: Caller, name: string, input: Record<string, unknown>): Promise<RecordResponse> {
    let { structure } = await this.structure(caller, name, 'create', 'create');
    for (let attempt = 1; ; attempt++) {
      const data = structure.schema.normalise(input, { defaults: true });
      const errors = structure.schema.validate(data);
      if (!errors.length)
        errors.push(
          ...(await this.referenceErrors(structure, data, (target, ids) =>
            this.store.existing(caller.workspaceId, target, ids),
          )),
        );
      if (errors.length) throw new ProblemError('validation_failed', `The ${name} record is invalid`, { errors });
      const id = uuidv7();
      const at = new Date();
      const row: RecordRow = { id, data, created_by: caller.principal.id, created_at: at, updated_at: at, version: 1 };
      const target = asRecordSubject(name, documentOf(row));
      const fields = Object.keys(input);
      let decision = caller.ability.decideOn('create', target);
      if (decision.allowed) decision = this.fieldDenial(caller, 'create', name, [target], fields)?.decision ?? decision;
      const entry: DecisionEntry = {
        action: 'create',
        operation: 'create',
        subject: name,
        resourceId: id,
        fields,
        decision,
      };
      if (!decision.allowed) return this.deny(caller, entry);
      const inserted = await this.store.insert(
        caller.workspaceId,
        { id, structure: name, structureVersion: structure.version, data, createdBy: caller.principal.id, at },
        { context: caller.context, entries: [entry] },
      );
      if (inserted) return this.toResponse(caller, name, row, true);
      if (attempt === maxAttempts)
        throw new ProblemError('conflict', `The ${name} structure keeps changing; retry the request`);
      structure = await this.reload(caller, name);
    }
  }

  /** The structure changed under a write (another instance, not yet announced here): read it again. */
  private async reload(caller: Caller, name: string): Promise<KnownStructure> {
    this.catalog.forget(caller.workspaceId);
    const structure = await this.catalog.find(caller.workspaceId, name);
    if (!structure) throw new ProblemError('structure_not_found', `No structure "${name}" in this workspace`);
    return structure;
  }

  /** A merge patch that must be allowed on the record as stored and on the result (step 7). */
  async update(
    caller: Caller,
    name: string,
    id: string,
    patch: Record<string, unknown>,
    ifMatch: string | undefined,
  ): Promise<RecordResponse> {
    const checked = await this.structure(caller, name, 'update', 'update');
    const typeLevel = checked.typeLevel;
    let structure = checked.structure;
    const fields = Object.keys(patch);
    for (let attempt = 1; ; attempt++) {
      const entry = (row: RecordRow, decision: Decision): DecisionEntry => ({
        action: 'update',
        operation: 'update',
        subject: name,
        resourceId: row.id,
        fields,
        decision,
      });
      const outcome = await this.onLockedRow<RecordRow>(
        caller,
        name,
        id,
        ifMatch,
        (row) => entry(row, caller.ability.decideOn('update', asRecordSubject(name, documentOf(row)))),
        async (row, session) => {
          const before = asRecordSubject(name, documentOf(row));
          const data = structure.schema.normalise(mergePatch(row.data, patch) as Record<string, unknown>, {
            defaults: false,
          });
          const errors = structure.schema.validate(data);
          if (!errors.length)
            errors.push(
              ...(await this.referenceErrors(structure, data, (target, ids) => session.existing(target, ids))),
            );
          if (errors.length) return { kind: 'invalid', errors };
          const at = new Date();
          const after = asRecordSubject(name, documentOf({ ...row, data, updated_at: at }));
          let decision = caller.ability.decideOn('update', after);
          if (decision.allowed)
            decision = this.fieldDenial(caller, 'update', name, [before, after], fields)?.decision ?? decision;
          if (!decision.allowed) return { kind: 'denied', entry: entry(row, decision) };
          const updated = await session.update(row.id, data, at, structure.version, name);
          if (!updated) return { kind: 'retry' };
          await session.audit({ context: caller.context, entries: [entry(row, decision)] });
          return { kind: 'done', value: updated };
        },
      );
      if (outcome.kind === 'done') return this.toResponse(caller, name, outcome.value, true);
      if (outcome.kind !== 'retry')
        return this.fail(
          caller,
          outcome,
          { action: 'update', operation: 'update', subject: name, resourceId: id, decision: typeLevel },
          name,
        );
      if (attempt === maxAttempts)
        throw new ProblemError('conflict', `The ${name} structure keeps changing; retry the request`);
      structure = await this.reload(caller, name);
    }
  }

  async remove(caller: Caller, name: string, id: string, ifMatch: string | undefined): Promise<void> {
    const { typeLevel } = await this.structure(caller, name, 'delete', 'delete');
    const permitted = (row: RecordRow): DecisionEntry => ({
      action: 'delete',
      operation: 'delete',
      subject: name,
      resourceId: row.id,
      decision: caller.ability.decideOn('delete', asRecordSubject(name, documentOf(row))),
    });
    const outcome = await this.onLockedRow<null>(caller, name, id, ifMatch, permitted, async (row, session, entry) => {
      await session.delete(row.id);
      await session.audit({ context: caller.context, entries: [entry] });
      return { kind: 'done', value: null };
    });
    if (outcome.kind !== 'done')
      await this.fail(
        caller,
        outcome,
        { action: 'delete', operation: 'delete', subject: name, resourceId: id, decision: typeLevel },
        name,
      );
  }

  /**
   * Loads and locks the record, decides whether the principal may act on it as stored, and only
   * then compares `If-Match`: a principal refused this record learns nothing of its version.
   */
  private async onLockedRow<T>(
    caller: Caller,
    name: string,
    id: string,
    ifMatch: string | undefined,
    permitted: (row: RecordRow) => DecisionEntry,
    work: (row: RecordRow, session: RecordSession, permit: DecisionEntry) => Promise<Outcome<T>>,
  ): Promise<Outcome<T>> {
    if (!isUuid(id)) return { kind: 'missing' };
    return this.store.withLockedRow<Outcome<T>>(caller.workspaceId, name, id.toLowerCase(), async (row, session) => {
      if (!row) return { kind: 'missing' };
      const permit = permitted(row);
      if (!permit.decision.allowed) return { kind: 'denied', entry: permit };
      if (ifMatch !== undefined && !versionMatches(ifMatch, row.version)) return { kind: 'stale' };
      return work(row, session, permit);
    });
  }

  /** Outcomes that wrote nothing: their transaction is over, their decision is logged on its own. */
  private async fail(
    caller: Caller,
    outcome: Exclude<Outcome<unknown>, { kind: 'done' }>,
    typeLevel: DecisionEntry,
    name: string,
  ): Promise<never> {
    switch (outcome.kind) {
      case 'retry':
        throw new ProblemError('conflict', `The ${name} structure changed during the request; retry it`);
      case 'missing':
        return this.missing(caller, typeLevel);
      case 'stale':
        throw new ProblemError(
          'precondition_failed',
          `The ${name} record has a newer version than If-Match names; read it again`,
        );
      case 'denied':
        return this.deny(caller, outcome.entry);
      case 'invalid':
        throw new ProblemError('validation_failed', `The ${name} record is invalid`, { errors: outcome.errors });
    }
  }
}
