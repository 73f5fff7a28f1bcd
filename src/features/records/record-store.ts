import type pg from 'pg';
import { scopeCte, scopedTransaction } from '../../db/scoped.ts';
import {
  decisionInsert,
  insertStatement,
  type DecisionContext,
  type DecisionEntry,
} from '../decisions/decision-log.ts';

/**
 * Every SQL statement of the record path, as plain `pg` with bound parameters: a read is one
 * statement and one round trip, a create is one statement that also appends its decision, and
 * updates and deletes lock the row in a transaction. Each reads tenant rows only inside the
 * workspace's RLS scope and filters on the workspace as well.
 */

export interface RecordRow {
  id: string;
  data: Record<string, unknown>;
  created_by: string;
  created_at: Date;
  updated_at: Date;
  version: number;
}

const rowColumns = 'r.id, r.data, r.created_by, r.created_at, r.updated_at, r.version';

export interface NewRecord {
  id: string;
  structure: string;
  structureVersion: number;
  data: Record<string, unknown>;
  createdBy: string;
  at: Date;
}

export interface AuditedDecision {
  context: DecisionContext;
  entries: readonly DecisionEntry[];
}

/**
 * Run on the caller's own connection when it holds one: a transaction that waited for a second
 * pool connection could wait for ever once every connection is held by such a transaction.
 */
async function existingIds(
  via: pg.Pool | pg.PoolClient,
  workspaceId: string,
  structure: string,
  ids: readonly string[],
): Promise<Set<string>> {
  const { rows } = await via.query<{ id: string }>(
    `with ${scopeCte}
     select found.id from scope cross join lateral (
       select r.id from records r
       where r.workspace_id = scope.workspace_id and r.structure = $2 and r.id = any($3::uuid[]) offset 0) found`,
    [workspaceId, structure, ids],
  );
  return new Set(rows.map((row) => row.id));
}

/** The statement behind a list page (exported for the benchmark's explain plans). */
export function pageStatement(
  workspaceId: string,
  structure: string,
  where: { text: string; values: unknown[] },
  order: { columns: string; orderBy: string },
  limit: number,
): { text: string; values: unknown[] } {
  return {
    text: `with ${scopeCte}
           select page.* from scope cross join lateral (
             select ${rowColumns}, ${order.columns} from records r
             where r.workspace_id = scope.workspace_id and r.structure = $2 and ${where.text}
             order by ${order.orderBy} limit ${limit} offset 0) page`,
    values: [workspaceId, structure, ...where.values],
  };
}

export class RecordStore {
  private readonly pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  async find(workspaceId: string, structure: string, id: string): Promise<RecordRow | undefined> {
    const { rows } = await this.pool.query<RecordRow>({
      name: 'cordon_find_record',
      text: `with ${scopeCte}
             select found.* from scope cross join lateral (
               select ${rowColumns} from records r
               where r.workspace_id = scope.workspace_id and r.structure = $2 and r.id = $3 offset 0) found`,
      values: [workspaceId, structure, id],
    });
    return rows[0];
  }

  /** One page: the permission and filter conditions are SQL over the rows, never applied afterwards. */
  async page(...args: Parameters<typeof pageStatement>): Promise<(RecordRow & Record<string, unknown>)[]> {
    return (await this.pool.query<RecordRow & Record<string, unknown>>(pageStatement(...args))).rows;
  }

  async count(workspaceId: string, structure: string, where: { text: string; values: unknown[] }): Promise<number> {
    const { rows } = await this.pool.query<{ count: string }>(
      `with ${scopeCte}
       select counted.count from scope cross join lateral (
         select count(*) from records r
         where r.workspace_id = scope.workspace_id and r.structure = $2 and ${where.text} offset 0) counted`,
      [workspaceId, structure, ...where.values],
    );
    return Number(rows[0]?.count ?? 0);
  }

  /** Ids among `ids` that are records of `structure` in the workspace (reference checks). */
  existing(workspaceId: string, structure: string, ids: readonly string[]): Promise<Set<string>> {
    return existingIds(this.pool, workspaceId, structure, ids);
  }

  /**
   * Inserts the record and its decision in one statement, provided the structure is still at the
   * version the data was validated against; false when it is not (the caller reloads and retries).
   * The structure row is share-locked, so a change in flight (which holds it for update) is waited
   * for and then seen.
   */
  async insert(workspaceId: string, record: NewRecord, audit: AuditedDecision): Promise<boolean> {
    const decision = decisionInsert([audit], 7, 'where exists (select 1 from inserted)');
    const { rows } = await this.pool.query<{ inserted: number }>({
      name: 'cordon_insert_record',
      text: `with ${scopeCte},
             inserted as (
               insert into records (id, workspace_id, structure, data, created_by, created_at, updated_at, version)
               select $3, scope.workspace_id, $2, $4::jsonb, $5, $6, $6, 1
               from scope cross join lateral (
                 select 1 from structures s
                 where s.workspace_id = scope.workspace_id and s.name = $2 and s.version = $7 offset 0 for share) current_structure
               returning id),
             logged as (${decision.text} returning 1)
             select count(*)::int as inserted from inserted`,
      values: [
        workspaceId,
        record.structure,
        record.id,
        JSON.stringify(record.data),
        record.createdBy,
        record.at,
        record.structureVersion,
        ...decision.values,
      ],
    });
    return rows[0]!.inserted === 1;
  }

  /** Runs `work` on the row locked for update, in one transaction inside the scope. */
  async withLockedRow<T>(
    workspaceId: string,
    structure: string,
    id: string,
    work: (row: RecordRow | undefined, session: RecordSession) => Promise<T>,
  ): Promise<T> {
    return scopedTransaction(this.pool, workspaceId, async (client) => {
      const { rows } = await client.query<RecordRow>({
        name: 'cordon_lock_record',
        text: `select ${rowColumns} from records r where r.workspace_id = $1 and r.structure = $2 and r.id = $3 for update`,
        values: [workspaceId, structure, id],
      });
      return work(rows[0], new RecordSession(client, workspaceId));
    });
  }
}

/** Writes to a locked row, each with its decision, in the row's transaction. */
export class RecordSession {
  private readonly client: pg.PoolClient;
  private readonly workspaceId: string;

  constructor(client: pg.PoolClient, workspaceId: string) {
    this.client = client;
    this.workspaceId = workspaceId;
  }

  async update(
    id: string,
    data: Record<string, unknown>,
    at: Date,
    structureVersion: number,
    structure: string,
  ): Promise<RecordRow | undefined> {
    const { rows } = await this.client.query<RecordRow>({
      name: 'cordon_update_record',
      text: `update records r set data = $3::jsonb, updated_at = $4, version = r.version + 1
             where r.workspace_id = $1 and r.id = $2
               and exists (select 1 from structures s where s.workspace_id = $1 and s.name = $5 and s.version = $6 for share)
             returning ${rowColumns}`,
      values: [this.workspaceId, id, JSON.stringify(data), at, structure, structureVersion],
    });
    return rows[0];
  }

  existing(structure: string, ids: readonly string[]): Promise<Set<string>> {
    return existingIds(this.client, this.workspaceId, structure, ids);
  }

  async delete(id: string): Promise<void> {
    await this.client.query({
      name: 'cordon_delete_record',
      text: 'delete from records r where r.workspace_id = $1 and r.id = $2',
      values: [this.workspaceId, id],
    });
  }

  async audit(audit: AuditedDecision): Promise<void> {
    await this.client.query(insertStatement(this.workspaceId, [audit]));
  }
}
