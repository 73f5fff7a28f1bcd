import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { appendEvents, type EventLog } from '../../events/event-log.ts';
import { keysetPage } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
import { asRecordSubject, ruleless, type Decision } from '../../policy/ability.ts';
import type { AccessControl, PrincipalCaller } from '../../policy/access.ts';
import type { Plans } from '../../policy/plans.ts';
import { Ruling } from '../../policy/ruling.ts';
import { effectivePlan, planLimitReached, unbilled } from '../../policy/standing.ts';
import type { Operation } from '../../policy/decision-log.ts';
import type { Action } from '../../policy/vocabulary.ts';
import type { KnownStructure, StructureCatalog } from '../structures/structure-catalog.ts';
import { listFilter, listPage, permittedWhere } from './list-query.ts';
import { mergePatch } from './merge-patch.ts';
import { LimitHeadroom, RecordLimit } from './record-limits.ts';
import type { PageQuery, RecordRow, RecordSession, RecordStore } from './record-store.ts';
import { validateRecord } from './record-validation.ts';
import { documentOf, toResponse, versionMatches, writeDecision } from './record-view.ts';
import type { ListQuery, RecordResponse } from './records.schema.ts';

const maxAttempts = 3;

const notFound = (structure: string, id: string) =>
  new ProblemError('record_not_found', `No ${structure} record "${id}"`);
const keepsChanging = (structure: string) =>
  new ProblemError('conflict', `The ${structure} structure keeps changing; retry the request`);

/**
 * The record path, in PRODUCT.md's enforcement order: the type-level check before any query; one
 * record loaded inside the tenant scope (another workspace's id is a plain 404); conditions decided
 * on the stored record (and for updates on the result too); lists filtered in SQL by the same
 * rules; fields stripped or refused by field rules; one decision logged per request, a mutation's
 * in its own transaction.
 */
export class RecordsService {
  private readonly store: RecordStore;
  private readonly catalog: StructureCatalog;
  private readonly access: AccessControl;
  private readonly events: EventLog;

  private readonly plans: Plans;
  private readonly limitHeadroom: LimitHeadroom;

  constructor(
    store: RecordStore,
    catalog: StructureCatalog,
    access: AccessControl,
    events: EventLog,
    plans: Plans,
    limitHeadroom: LimitHeadroom,
  ) {
    this.store = store;
    this.catalog = catalog;
    this.access = access;
    this.events = events;
    this.plans = plans;
    this.limitHeadroom = limitHeadroom;
  }

  async get(caller: PrincipalCaller, name: string, id: string): Promise<RecordResponse> {
    return this.decide(caller, name, 'read', 'get', async (ruling) => {
      ruling.refine({ resourceId: id });
      const row = isUuid(id) ? await this.store.find(caller.workspaceId, name, id.toLowerCase()) : undefined;
      if (!row) throw notFound(name, id);
      return this.readable(caller, ruling, name, row);
    });
  }

  /**
   * A record of any structure, by id alone (a function's `getRecord`): its structure is known
   * only once it is read, and from there on it is `get`. None in this workspace (missing, or
   * another workspace's) is `null`, still a logged decision: with no type to check, a refusal
   * naming why.
   */
  async getById(caller: PrincipalCaller, id: string): Promise<RecordResponse | null> {
    const found = isUuid(id) ? await this.store.findById(caller.workspaceId, id.toLowerCase()) : undefined;
    if (found) {
      return this.decide(caller, found.structure, 'read', 'get', async (ruling) =>
        this.readable(caller, ruling, found.structure, found.row),
      );
    }
    const reason = `no record "${id}" in this workspace`;
    await this.access.decided(caller, [
      { action: 'read', operation: 'get', subject: 'all', resourceId: id, decision: denied(reason) },
    ]);
    return null;
  }

  /** The record-level read check on a loaded record, then its fields as the principal may see them. */
  private readable(caller: PrincipalCaller, ruling: Ruling, name: string, row: RecordRow): RecordResponse {
    const document = documentOf(row);
    ruling.refine({ resourceId: row.id, documents: [document] });
    ruling.require(caller.ability.decideOn('read', asRecordSubject(name, document)));
    return toResponse(caller.ability, name, row);
  }

  async list(caller: PrincipalCaller, name: string, query: ListQuery) {
    return this.page(
      caller,
      name,
      query,
      (page) => this.store.page(caller.workspaceId, name, page),
      (row) => toResponse(caller.ability, name, row),
    );
  }

  /**
   * The page as the JSON text the route sends. When no field rule can strip a record's data,
   * PostgreSQL writes each record's text, and no row is parsed or serialised here.
   */
  async listText(caller: PrincipalCaller, name: string, query: ListQuery): Promise<string> {
    if (caller.ability.hasFieldRules('read', name)) return JSON.stringify(await this.list(caller, name, query));
    const { data, nextCursor, count } = await this.page(
      caller,
      name,
      query,
      (page) => this.store.pageText(caller.workspaceId, name, page),
      (row) => row.body,
    );
    const counted = count === undefined ? '' : `,"count":${count}`;
    return `{"data":[${data.join(',')}],"nextCursor":${JSON.stringify(nextCursor)}${counted}}`;
  }

  /** A page of the records the principal may read, filtered, sorted and cut in SQL; `show` makes each row's entry. */
  private async page<Row extends Record<string, unknown>, Shown>(
    caller: PrincipalCaller,
    name: string,
    query: ListQuery,
    read: (page: PageQuery) => Promise<Row[]>,
    show: (row: Row) => Shown,
  ): Promise<{ data: Shown[]; nextCursor: string | null; count?: number }> {
    return this.decide(caller, name, 'read', 'list', async (ruling, structure) => {
      const filter = listFilter(query, structure);
      // Step 6: filtering or sorting on a field is reading it.
      for (const field of filter.fields) {
        if (caller.ability.fieldAlwaysPermitted('read', name, field)) continue;
        ruling.refine({ fields: [field] });
        ruling.require(
          denied(`"${field}" is not readable on every record you may read, so it cannot be used to filter or sort`),
        );
      }
      const { where, containing, reason } = permittedWhere(caller.ability, name, filter);
      const page = listPage(caller.workspaceId, name, query, filter);
      const rows = await read(page.of(where, containing));
      const count = query.count ? await this.store.count(caller.workspaceId, name, where) : undefined;
      ruling.refine({ decision: { ...ruling.entry.decision, reason } });
      const { shown, nextCursor } = keysetPage(rows, query.limit, page.cursorAfter);
      return { data: shown.map(show), nextCursor, ...(count !== undefined && { count }) };
    });
  }

  /**
   * A create inside the plan's records limits (this structure's and "*"), race-safe across
   * instances: see `RecordLimit`, and `LimitHeadroom` for the creates that skip counting. Refused
   * by a limit, nothing is stored and the request's one decision is logged with its 402.
   */
  async create(caller: PrincipalCaller, name: string, input: Record<string, unknown>): Promise<RecordResponse> {
    return this.decide(caller, name, 'create', 'create', async (ruling, first) => {
      const fields = Object.keys(input);
      const tenant = await this.access.tenantOf(caller);
      const plan = effectivePlan(this.plans, tenant?.billing ?? unbilled);
      const margin = await this.store.inFlightBound();
      const limits = {
        structure: new RecordLimit(`records.${name}`, plan.limits.records[name] ?? null, margin),
        overall: new RecordLimit('records.*', plan.limits.records['*'] ?? null, margin),
      };
      const both = [limits.structure, limits.overall];
      const headroomKey = both.some((limit) => limit.limit !== null)
        ? LimitHeadroom.key(caller.workspaceId, name, both)
        : undefined;
      let structure = first;
      // After a spent headroom, the next pass counts.
      let mustCount = false;
      for (let attempt = 1; attempt <= maxAttempts;) {
        const data = structure.schema.normalise(input, { defaults: true });
        await validateRecord(caller.ability, structure, data, (target, ids, readable) =>
          this.store.referenced(caller.workspaceId, target, ids, readable),
        );
        const at = new Date();
        const row = { id: uuidv7(), data, created_by: caller.principal.id, created_at: at, updated_at: at, version: 1 };
        const document = documentOf(row);
        ruling.refine({ resourceId: row.id, fields, documents: [document] });
        ruling.require(writeDecision(caller.ability, 'create', name, [asRecordSubject(name, document)], fields));
        const decision = { context: caller.context, entries: [ruling.entry] };
        const event = appendEvents(
          caller.origin,
          [{ type: 'record_created', structure: name, recordId: row.id, data: { after: document, version: 1 } }],
          sql`where exists (select 1 from inserted)`,
        );
        const headroom = headroomKey ? this.limitHeadroom.find(headroomKey, both, mustCount) : undefined;
        const checks = { structure: limits.structure.check(), overall: limits.overall.check(), headroom };
        const result = await this.store.insert(
          caller.workspaceId,
          name,
          structure.fieldsText,
          row,
          decision,
          event,
          checks,
        );
        if (headroomKey && !headroom) {
          this.limitHeadroom.counted(
            headroomKey,
            both,
            [result.structureCount, result.overallCount],
            result.position ?? 0,
          );
        }
        if (result.inserted) {
          ruling.written = true;
          this.events.committed(caller.workspaceId);
          return toResponse(caller.ability, name, row, true);
        }
        if (headroomKey && headroom && this.limitHeadroom.spent(headroomKey, headroom, result.position)) {
          // Count, in a new transaction.
          mustCount = true;
          continue;
        }
        const near = [
          { limit: limits.structure, count: result.structureCount },
          { limit: limits.overall, count: result.overallCount },
        ].filter(({ limit, count }) => limit.refuses(count));
        const reached = near.find(({ limit }) => limit.exclusive);
        if (reached) throw planLimitReached(plan, reached.limit.name, reached.count, reached.limit.limit!);
        if (near.length) {
          // Near a limit: count exactly, under the lock held exclusive, in a new transaction.
          for (const { limit } of near) limit.exclusive = true;
          continue;
        }
        structure = await this.reload(caller, name);
        attempt++;
      }
      throw keepsChanging(name);
    });
  }

  /** A merge patch that must be allowed on the record as stored and on the result (step 7). */
  async update(
    caller: PrincipalCaller,
    name: string,
    id: string,
    patch: Record<string, unknown>,
    ifMatch: string | undefined,
  ) {
    return this.decide(caller, name, 'update', 'update', async (ruling, first) => {
      const fields = Object.keys(patch);
      let structure = first;
      for (let attempt = 1; attempt <= maxAttempts; attempt++) {
        ruling.refine({ resourceId: id, fields });
        const updated = await this.onLockedRow(caller, ruling, name, id, ifMatch, async (row, session) => {
          const data = structure.schema.normalise(mergePatch(row.data, patch) as Record<string, unknown>, {
            defaults: false,
          });
          await validateRecord(caller.ability, structure, data, (target, ids, readable) =>
            session.referenced(target, ids, readable),
          );
          const at = new Date();
          const documents = [documentOf(row), documentOf({ ...row, data, updated_at: at })];
          ruling.refine({ documents });
          const states = documents.map((document) => asRecordSubject(name, document));
          ruling.require(writeDecision(caller.ability, 'update', name, states, fields));
          const stored = await session.update(row.id, data, at, name, structure.fieldsText);
          if (!stored) return undefined;
          const change = { before: documents[0]!, after: documentOf(stored), version: stored.version };
          await this.events.appendIn(session.scope, caller.origin, [
            { type: 'record_updated', structure: name, recordId: row.id, data: change },
          ]);
          await this.access.decidedIn(session.scope, caller, [ruling.entry]);
          return stored;
        });
        if (updated) {
          ruling.written = true;
          this.events.committed(caller.workspaceId);
          return toResponse(caller.ability, name, updated, true);
        }
        structure = await this.reload(caller, name);
      }
      throw keepsChanging(name);
    });
  }

  async remove(caller: PrincipalCaller, name: string, id: string, ifMatch: string | undefined): Promise<void> {
    await this.decide(caller, name, 'delete', 'delete', async (ruling) => {
      ruling.refine({ resourceId: id });
      await this.onLockedRow(caller, ruling, name, id, ifMatch, async (row, session) => {
        await session.delete(row.id);
        await this.events.appendIn(session.scope, caller.origin, [
          {
            type: 'record_deleted',
            structure: name,
            recordId: row.id,
            data: { before: documentOf(row), version: row.version },
          },
        ]);
        await this.access.decidedIn(session.scope, caller, [ruling.entry]);
      });
      ruling.written = true;
      this.events.committed(caller.workspaceId);
    });
  }

  /**
   * Step 3 first: may the principal do this to records of this type at all? Only then does the
   * structure's existence show. The request's one decision starts as this type-level one.
   */
  private decide<T>(
    caller: PrincipalCaller,
    name: string,
    action: Action,
    operation: Operation,
    work: (ruling: Ruling, structure: KnownStructure) => Promise<T>,
  ): Promise<T> {
    const typeLevel = caller.ability.decide(action, name);
    return this.access.decide(
      caller,
      new Ruling({ action, operation, subject: name, decision: typeLevel }),
      async (ruling) => {
        ruling.require(typeLevel);
        if (action !== 'read') await this.access.requireWritable(caller.workspaceId, caller.tenant);
        const structure = await this.catalog.find(caller.workspaceId, name);
        if (!structure) throw new ProblemError('structure_not_found', `No structure "${name}" in this workspace`);
        return work(ruling, structure);
      },
    );
  }

  /**
   * Loads and locks the record, decides whether the principal may act on it as stored, and only
   * then compares `If-Match`: a principal refused this record learns nothing of its version.
   */
  private onLockedRow<T>(
    caller: PrincipalCaller,
    ruling: Ruling,
    name: string,
    id: string,
    ifMatch: string | undefined,
    work: (row: RecordRow, session: RecordSession) => Promise<T>,
  ): Promise<T> {
    if (!isUuid(id)) throw notFound(name, id);
    return this.store.withLockedRow(caller.workspaceId, name, id.toLowerCase(), async (row, session) => {
      if (!row) throw notFound(name, id);
      const document = documentOf(row);
      ruling.refine({ resourceId: row.id, documents: [document] });
      ruling.require(caller.ability.decideOn(ruling.entry.action as Action, asRecordSubject(name, document)));
      if (ifMatch !== undefined && !versionMatches(ifMatch, row.version)) {
        throw new ProblemError(
          'precondition_failed',
          `The ${name} record has a newer version than If-Match names; read it again`,
        );
      }
      return work(row, session);
    });
  }

  /** The structure changed under a write (another instance, not yet announced here): read it again. */
  private async reload(caller: PrincipalCaller, name: string): Promise<KnownStructure> {
    this.catalog.forget(caller.workspaceId);
    const structure = await this.catalog.find(caller.workspaceId, name);
    if (!structure) throw new ProblemError('structure_not_found', `No structure "${name}" in this workspace`);
    return structure;
  }
}

const denied = (reason: string): Decision => ruleless(false, reason);
