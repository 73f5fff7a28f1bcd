import { sql, type RawBuilder } from 'kysely';
import { prepared, preparedByText, type Database, type Scope, type Statement } from '../../db/database.ts';
import { isoMillis } from '../../db/exact-time.ts';
import { appendDecisions, type DecisionBatch } from '../../policy/decision-log.ts';
import type { Headroom } from './record-limits.ts';

/**
 * Every SQL statement of the record path. A read is one statement and one round trip; a create is
 * one statement that also appends its decision; updates and deletes lock the row in a transaction.
 * Each reads tenant rows only inside the workspace's RLS scope and filters on the workspace too.
 */

export interface RecordRow {
  id: string;
  data: Record<string, unknown>;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  version: number;
}

type Fragment = RawBuilder<unknown>;

/** What a list page reads: the permission and filter conditions as SQL over `r`, never applied afterwards. */
export interface PageQuery {
  where: Fragment;
  /** The cursor's keyset condition, if any (part of the page's conditions like `where`). */
  after?: Fragment | undefined;
  columns: Fragment;
  orderBy: Fragment;
  limit: number;
  /**
   * Set when the order is the index's (created_at, id), either way, and `where` implies
   * `data @>` one of `documents`: the page may then come from the GIN index instead of a walk in
   * that order.
   */
  containing?: { documents: unknown[]; descending: boolean } | undefined;
}

/**
 * How far a page with `containing` walks in order: `probe` rows first; then, when the probe's
 * matches promise a full page within `walk` rows, that many; otherwise it asks the GIN index.
 */
export interface WalkDepths {
  probe: number;
  walk: number;
}

export const orderedWalk: WalkDepths = { probe: 1_000, walk: 10_000 };

const recordColumns = sql`r.id, r.data, r.created_by, r.created_at, r.updated_at, r.version`;

/**
 * The record as the API shows it, as JSON text built by PostgreSQL (`body`): a page whose data no
 * field rule strips is sent without parsing a row or serialising it again.
 */
const recordBody = sql`'{"id":"' || r.id::text || '","structure":' || to_json(r.structure)::text || ',"data":' || r.data::text
  || ',"createdBy":' || to_json(r.created_by)::text || ',"createdAt":"' || ${isoMillis(sql`r.created_at`)}
  || '","updatedAt":"' || ${isoMillis(sql`r.updated_at`)} || '","version":' || r.version::text || '}' as body`;

/**
 * The statement behind a list page (exported for the benchmark's explain plans and the tests).
 *
 * With `containing`, row-level security keeps the planner from the GIN index and from the
 * statistics that would tell a needle (`{ title: "Task 777" }`: one row) from a haystack
 * (`{ status: "done" }`: every third): both would walk the structure in order. So the statement
 * decides at run time, by what it finds, step by step; each step is exact, and a step not needed
 * is never executed:
 * - it reads the first `depths.probe` rows after the cursor in index order and keeps those that
 *   match; if that fills the page, or those rows were all there were, that is the page (they are
 *   the first matches in order);
 * - if the probe found enough matches to promise a full page within `depths.walk` rows (a
 *   contractor's own tasks among everyone's, one in 150), it reads that far, under the same rule;
 * - otherwise, or if that walk fell short, the page comes from the candidates the GIN index holds
 *   (`cordon_records_containing_rows`), filtered and sorted the same way: a needle is found without
 *   walking the structure;
 * - unless there are more candidates than the walk reads rows (a broad rule beside a filter that
 *   matches little): then the page is one ordered statement, as without candidates, and no more
 *   than `depths.walk + 1` candidates were fetched.
 */
export const pageStatement =
  <Row extends Record<string, unknown> = RecordRow & Record<string, unknown>>(
    structure: string,
    page: PageQuery,
    columns: Fragment = recordColumns,
    depths: WalkDepths = orderedWalk,
  ) =>
  (scope: Statement<unknown>): Statement<Row> => {
    if (!(depths.probe >= 1 && depths.walk > depths.probe))
      throw new Error('a walk must go past a probe of a row or more');
    const after = page.after ?? sql`true`;
    /** The page in one ordered statement, as the planner sees fit. */
    const ordered = sql`select page.* from scope cross join lateral (
          select ${columns}, ${page.columns} from records r
          where r.workspace_id = scope.workspace_id and r.structure = ${structure} and ${page.where} and ${after}
          order by ${page.orderBy} limit ${page.limit}::integer offset 0) page`;
    // The text takes the shapes of the sort, the cursor, the caller's filter and the read rules
    // (values are parameters), which repeat: prepared, each is planned once per connection.
    if (!page.containing) return preparedByText(sql`with ${scope} ${ordered}`);
    const { documents, descending } = page.containing;
    const direction = descending ? sql`desc` : sql`asc`;
    // `beyond`: only rows past the probe's last one (the `edge`), in the page's order.
    const walk = (rows: number, columns: Fragment, beyond = false) =>
      sql`select ${columns} from records r
        where r.workspace_id = scope.workspace_id and r.structure = ${structure} and ${after}
          ${beyond ? sql`and (r.created_at, r.id) ${descending ? sql`<` : sql`>`} (edge.created_at, edge.id)` : sql``}
        order by ${page.orderBy} limit ${rows}::integer offset 0`;
    const matches = (rows: number, limit: Fragment, beyond = false) =>
      sql`select page.* from scope ${beyond ? sql`cross join edge` : sql``} cross join lateral (
          select ${columns}, ${page.columns} from (${walk(rows, sql`*`, beyond)}) r
          where ${page.where}
          order by ${page.orderBy} limit ${limit} offset 0) page`;
    const further = depths.walk - depths.probe;
    const guarded = sql`where not (select settled from after_probe) and (select promising from after_probe)`;
    // The steps' rows, put in the page's order (the probe's, then the walk's; or one step's).
    return preparedByText(sql`with ${scope},
      probe as materialized (${matches(depths.probe, sql`${page.limit}::integer`)}),
      edge as materialized (
        select head.* from scope cross join lateral (${walk(depths.probe, sql`r.created_at, r.id`)}) head
        offset ${depths.probe - 1}::integer limit 1),
      after_probe as materialized (
        select (select count(*) from probe) = ${page.limit}::integer or not exists (select 1 from edge) as settled,
               (select count(*) from probe) * ${depths.walk}::bigint >= ${depths.probe}::bigint * ${page.limit}::bigint
                 as promising),
      further as materialized (
        ${matches(further, sql`${page.limit}::integer - (select count(*) from probe)`, true)} ${guarded}),
      further_walked as materialized (
        select count(*) as rows from scope cross join edge cross join lateral (${walk(further, sql`1`, true)}) head
        ${guarded}),
      chosen as materialized (
        select case when (select settled from after_probe) then 'probe'
                    when (select promising from after_probe)
                     and ((select count(*) from probe) + (select count(*) from further) = ${page.limit}::integer
                          or (select rows from further_walked) < ${further}::integer) then 'walk'
                    else 'index' end as step),
      candidates as materialized (
        select c.* from cordon_records_containing_rows(${structure}::text,
          ${documents.map((document) => JSON.stringify(document))}::jsonb[], ${depths.walk + 1}::integer) c
        where (select step from chosen) = 'index'),
      few as materialized (select (select count(*) from candidates) <= ${depths.walk}::integer as enough)
      select steps.* from (
        select probe.* from probe where (select step from chosen) in ('probe', 'walk')
        union all
        select further.* from further where (select step from chosen) = 'walk'
        union all
        select page.* from scope cross join lateral (
          select ${columns}, ${page.columns} from candidates r
          where r.workspace_id = scope.workspace_id and ${page.where} and ${after}
          order by ${page.orderBy} limit ${page.limit}::integer offset 0) page
        where (select step from chosen) = 'index' and (select enough from few)
        union all
        ${ordered} where (select step from chosen) = 'index' and not (select enough from few)) steps
      order by steps.k0::bigint ${direction}, steps.k1 ${direction}`);
  };

/**
 * Ids among `ids` that name records of `structure` the principal may read (`readable`): a writer
 * must not learn, through a reference it tries to set, that a record it may not read exists.
 */
const referencedStatement =
  (structure: string, ids: readonly string[], readable: Fragment) => (scope: Statement<unknown>) =>
    sql<{ id: string }>`with ${scope}
    select found.id from scope cross join lateral (
      select r.id from records r
      where r.workspace_id = scope.workspace_id and r.structure = ${structure} and r.id = any(${ids}::uuid[])
        and ${readable} offset 0) found`;

/** How one records limit is checked in an insert: count up to `bound` under the lock (null: no limit). */
export interface LimitCheck {
  bound: number | null;
  exclusive: boolean;
}

/**
 * A create's records limits: counted (each limit's lock, then the counts), or within a known
 * `headroom` (each bounded limit's lock shared, then the last insert position, which must lie in
 * the headroom: see `LimitHeadroom`).
 */
export interface LimitChecks {
  structure: LimitCheck;
  overall: LimitCheck;
  headroom?: Headroom | undefined;
}

export class RecordStore {
  private readonly database: Database;
  private maxConnections: Promise<number> | undefined;

  constructor(database: Database) {
    this.database = database;
  }

  async find(workspaceId: string, structure: string, id: string): Promise<RecordRow | undefined> {
    const [row] = await this.database.inWorkspace(workspaceId, (scope) =>
      prepared(
        'cordon_find_record',
        sql<RecordRow>`with ${scope}
          select found.* from scope cross join lateral (
            select r.id, r.data, r.created_by, r.created_at, r.updated_at, r.version from records r
            where r.workspace_id = scope.workspace_id and r.structure = ${structure} and r.id = ${id}::uuid offset 0) found`,
      ),
    );
    return row;
  }

  /** The workspace's record with this id, whichever its structure (a function's `getRecord`). */
  async findById(workspaceId: string, id: string): Promise<{ structure: string; row: RecordRow } | undefined> {
    const [found] = await this.database.inWorkspace(workspaceId, (scope) =>
      prepared(
        'cordon_find_record_by_id',
        sql<RecordRow & { structure: string }>`with ${scope}
          select found.* from scope cross join lateral (
            select r.structure, r.id, r.data, r.created_by, r.created_at, r.updated_at, r.version from records r
            where r.workspace_id = scope.workspace_id and r.id = ${id}::uuid offset 0) found`,
      ),
    );
    if (!found) return undefined;
    const { structure, ...row } = found;
    return { structure, row };
  }

  page(workspaceId: string, structure: string, page: PageQuery): Promise<(RecordRow & Record<string, unknown>)[]> {
    return this.database.inWorkspace(workspaceId, pageStatement(structure, page));
  }

  /** A list page with each record as the API's JSON text (`body`), beside its sort keys. */
  pageText(
    workspaceId: string,
    structure: string,
    page: PageQuery,
  ): Promise<({ body: string } & Record<string, unknown>)[]> {
    return this.database.inWorkspace(
      workspaceId,
      pageStatement<{ body: string } & Record<string, unknown>>(structure, page, recordBody),
    );
  }

  async count(workspaceId: string, structure: string, where: Fragment): Promise<number> {
    const [row] = await this.database.inWorkspace(
      workspaceId,
      (scope) => sql<{ count: string }>`with ${scope}
        select counted.count from scope cross join lateral (
          select count(*) from records r
          where r.workspace_id = scope.workspace_id and r.structure = ${structure} and ${where} offset 0) counted`,
    );
    return Number(row?.count ?? 0);
  }

  async referenced(
    workspaceId: string,
    structure: string,
    ids: readonly string[],
    readable: Fragment,
  ): Promise<Set<string>> {
    const rows = await this.database.inWorkspace(workspaceId, referencedStatement(structure, ids, readable));
    return new Set(rows.map((row) => row.id));
  }

  /**
   * Inserts the record, its decision and its event (`event`: an insert that takes effect only
   * `where exists (select 1 from inserted)`) in one statement, provided the structure still has the
   * fields the data was validated against (`fields`, JSON text) and the plan's records limits leave
   * room. The structure
   * row is share-locked, so a change in flight (which holds it for update) is waited for and then
   * seen. Each limit (this structure's, then every structure's) takes its advisory lock and reads
   * the committed count of records (see `RecordLimit`, and the `record_counts` migration); nothing
   * is inserted unless both counts are below their bounds. Within a headroom the counts are not
   * read: the last insert position must lie in it (see `LimitHeadroom`). Without limits, neither is
   * read. `position` is the last insert position read under the locks (0 without limits, null
   * when the sequence has none). `inserted` false with the counts below their bounds and the
   * position in the headroom: the structure changed.
   */
  async insert(
    workspaceId: string,
    structure: string,
    fields: string,
    row: RecordRow,
    decision: DecisionBatch,
    event: Statement<unknown>,
    limits: LimitChecks,
  ): Promise<{ inserted: boolean; structureCount: number; overallCount: number; position: number | null }> {
    const limited = limits.structure.bound !== null || limits.overall.bound !== null;
    const insertion = (from: Fragment, room: Fragment) =>
      sql`inserted as (
            insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at, version)
            select ${row.id}::uuid, scope.workspace_id, ${structure}, ${JSON.stringify(row.data)}::jsonb,
                   ${row.created_by}, ${row.created_at}::timestamptz, ${row.updated_at}::timestamptz, 1
            from ${from} cross join lateral (
              select 1 from structures s
              where s.workspace_id = scope.workspace_id and s.name = ${structure}
                and s.fields = ${fields}::jsonb offset 0 for share) current_structure
            where ${room}
            returning id),
          logged as (${appendDecisions([decision])} where exists (select 1 from inserted) returning 1),
          evented as (${event} returning 1)`;
    type Result = { inserted: number; structure_count: string; overall_count: string; position: string | null };
    const lockedShared = (limit: LimitCheck, key: Fragment) =>
      sql`case when ${limit.bound}::bigint is not null then pg_advisory_xact_lock_shared(hashtextextended(${key}, 0)) end`;
    const [result] = await this.database.inWorkspace(workspaceId, (scope) =>
      limited && limits.headroom
        ? prepared(
            'cordon_insert_record_within_headroom',
            sql<Result>`with ${scope},
              locked as materialized (
                select ${lockedShared(limits.structure, sql`'cordon:records:' || scope.workspace_id::text || ':' || ${structure}::text`)},
                       ${lockedShared(limits.overall, sql`'cordon:records:' || scope.workspace_id::text || ':*'`)}
                from scope),
              limits as materialized (
                select pg_sequence_last_value('record_insert_positions') as position from locked),
              ${insertion(
                sql`scope cross join limits`,
                sql`limits.position >= ${limits.headroom.base}::bigint and limits.position < ${limits.headroom.ceiling}::bigint`,
              )}
              select (select count(*)::int from inserted) as inserted, 0 as structure_count, 0 as overall_count,
                     limits.position
              from limits`,
          )
        : limited
          ? prepared(
              'cordon_insert_record_limited',
              sql<Result>`with ${scope},
              limits as materialized (
                select counted.* from scope cross join lateral cordon_records_under_limits(
                  scope.workspace_id, ${structure}::text,
                  ${limits.structure.bound}::bigint, ${limits.structure.exclusive}::boolean,
                  ${limits.overall.bound}::bigint, ${limits.overall.exclusive}::boolean) counted),
              ${insertion(
                sql`scope cross join limits`,
                sql`coalesce(limits.structure_count < ${limits.structure.bound}::bigint, true)
                  and coalesce(limits.overall_count < ${limits.overall.bound}::bigint, true)`,
              )}
              select (select count(*)::int from inserted) as inserted, limits.structure_count, limits.overall_count,
                     limits.inserted_position as position
              from limits`,
            )
          : prepared(
              'cordon_insert_record',
              sql<Result>`with ${scope}, ${insertion(sql`scope`, sql`true`)}
              select (select count(*)::int from inserted) as inserted, 0 as structure_count, 0 as overall_count,
                     0 as position`,
            ),
    );
    return {
      inserted: result!.inserted === 1,
      structureCount: Number(result!.structure_count),
      overallCount: Number(result!.overall_count),
      position: result!.position === null ? null : Number(result!.position),
    };
  }

  /**
   * An upper bound on the transactions in flight at once across every instance: PostgreSQL's
   * max_connections (each transaction holds a connection), read once.
   */
  inFlightBound(): Promise<number> {
    this.maxConnections ??= this.database
      .query(sql<{ setting: string }>`select current_setting('max_connections') as setting`)
      .then(([row]) => Number(row!.setting))
      .catch((error: unknown) => {
        this.maxConnections = undefined;
        throw error;
      });
    return this.maxConnections;
  }

  /** Runs `work` on the row locked for update, in one transaction inside the scope. */
  withLockedRow<T>(
    workspaceId: string,
    structure: string,
    id: string,
    work: (row: RecordRow | undefined, session: RecordSession) => Promise<T>,
  ): Promise<T> {
    return this.database.withWorkspace(workspaceId, async (scope) => {
      const [row] = await scope.query(
        prepared(
          'cordon_lock_record',
          sql<RecordRow>`select r.id, r.data, r.created_by, r.created_at, r.updated_at, r.version from records r
            where r.workspace_id = ${workspaceId}::uuid and r.structure = ${structure} and r.id = ${id}::uuid for update`,
        ),
      );
      return work(row, new RecordSession(scope));
    });
  }
}

/** Writes to a locked row in the row's transaction. */
export class RecordSession {
  readonly scope: Scope;

  constructor(scope: Scope) {
    this.scope = scope;
  }

  async update(
    id: string,
    data: Record<string, unknown>,
    at: Date,
    structure: string,
    fields: string,
  ): Promise<RecordRow | undefined> {
    const [row] = await this.scope.query(
      prepared(
        'cordon_update_record',
        sql<RecordRow>`update records r set data = ${JSON.stringify(data)}::jsonb, updated_at = ${at}::timestamptz, version = r.version + 1
          where r.workspace_id = ${this.scope.workspaceId}::uuid and r.id = ${id}::uuid
            and exists (select 1 from structures s where s.workspace_id = ${this.scope.workspaceId}::uuid
                          and s.name = ${structure} and s.fields = ${fields}::jsonb for share)
          returning r.id, r.data, r.created_by, r.created_at, r.updated_at, r.version`,
      ),
    );
    return row;
  }

  /** Reference checks run on this connection: waiting for a second one could deadlock the pool. */
  async referenced(structure: string, ids: readonly string[], readable: Fragment): Promise<Set<string>> {
    const rows = await this.scope.query(referencedStatement(structure, ids, readable)(this.scope.cte));
    return new Set(rows.map((row) => row.id));
  }

  async delete(id: string): Promise<void> {
    await this.scope.query(
      prepared(
        'cordon_delete_record',
        sql`delete from records r where r.workspace_id = ${this.scope.workspaceId}::uuid and r.id = ${id}::uuid`,
      ),
    );
  }
}
