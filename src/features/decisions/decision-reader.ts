import { sql, type RawBuilder } from 'kysely';
import { z } from 'zod';
import type { Database, Scope } from '../../db/database.ts';
import { decodeCursor, encodeCursor, keysetPage } from '../../http/cursor.ts';
import { chained, checkpointVerifies, genesisHash, linkHash, type DecisionRow } from './chain.ts';
import type { DecisionFilters, DecisionResponse, VerifyResponse } from './decisions.schema.ts';
import type { KeyObject } from 'node:crypto';

type SealedRow = DecisionRow & { position: string; seq: string | null; prev_hash: string | null; hash: string | null };

export function toResponse(row: SealedRow): DecisionResponse {
  const decision = chained(row, 0);
  return {
    ...decision,
    seq: row.seq === null ? null : Number(row.seq),
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

/** The auditor filters as SQL over `d`, every value bound. */
function where(workspaceId: string, filters: DecisionFilters): RawBuilder<unknown> {
  const clauses: RawBuilder<unknown>[] = [sql`d.workspace_id = ${workspaceId}::uuid`];
  if (filters.from) clauses.push(sql`d.at >= ${filters.from}::timestamptz`);
  if (filters.to) clauses.push(sql`d.at < ${filters.to}::timestamptz`);
  if (filters.principalId) clauses.push(sql`d.principal_id = ${filters.principalId}`);
  if (filters.role) clauses.push(sql`${filters.role}::text = any (d.principal_roles)`);
  if (filters.action) clauses.push(sql`d.action = ${filters.action}`);
  if (filters.subject) clauses.push(sql`d.subject = ${filters.subject}`);
  if (filters.allowed !== undefined) clauses.push(sql`d.allowed = ${filters.allowed}`);
  if (filters.resourceId) clauses.push(sql`d.resource_id = ${filters.resourceId}`);
  if (filters.policyId) clauses.push(sql`d.policy_id = ${filters.policyId}::uuid`);
  return sql.join(clauses, sql` and `);
}

const selectSealed = sql`select d.*, s.seq, s.prev_hash, s.hash from decisions d left join decision_seals s on s.decision_id = d.id`;
const listPosition = z.object({ before: z.string().regex(/^\d{1,19}$/) });

/**
 * Reads the decision log with server-side cursors, so exports and verification run in constant
 * memory however long the log is. Every read runs in the workspace's RLS scope, read-only.
 */
export class DecisionReader {
  private readonly database: Database;

  constructor(database: Database) {
    this.database = database;
  }

  private scoped<T>(workspaceId: string, work: (scope: Scope) => Promise<T>): Promise<T> {
    return this.database.withWorkspace(workspaceId, work, { readOnly: true });
  }

  /** Newest first, keyset-paginated on the append position. */
  async list(
    workspaceId: string,
    filters: DecisionFilters,
    limit: number,
    cursor?: string,
  ): Promise<{ data: DecisionResponse[]; nextCursor: string | null }> {
    const before = cursor ? decodeCursor(cursor, listPosition).before : undefined;
    const rows = await this.scoped(workspaceId, (scope) =>
      scope.query(
        sql<SealedRow>`${selectSealed} where ${where(workspaceId, filters)}
          ${before ? sql`and d.position < ${before}::bigint` : sql``}
          order by d.position desc limit ${limit + 1}::integer`,
      ),
    );
    const { shown, nextCursor } = keysetPage(rows, limit, (last) => encodeCursor({ before: String(last.position) }));
    return { data: shown.map(toResponse), nextCursor };
  }

  /** Oldest first, in batches from a server-side cursor; `write` may wait for the client to drain. */
  async export(
    workspaceId: string,
    filters: DecisionFilters,
    write: (rows: DecisionResponse[]) => Promise<void>,
  ): Promise<void> {
    await this.scoped(workspaceId, async (scope) => {
      const rows = scope.stream(
        sql<SealedRow>`${selectSealed} where ${where(workspaceId, filters)} order by d.position`,
      );
      for await (const chunk of rows) await write(chunk.map(toResponse));
    });
  }

  /**
   * Recomputes the chain in seq order and checks every signed checkpoint against it: a changed
   * row, a removed link or a deleted tail (behind the last checkpoint) is the first break.
   */
  async verify(workspaceId: string, key: { keyId: string; publicKey: KeyObject }): Promise<VerifyResponse> {
    return this.scoped(workspaceId, async (scope) => {
      const checkpoints = await scope.query(
        sql<{
          seq: string;
          hash: string;
          at: Date;
          signature: string;
          key_id: string;
        }>`select seq, hash, at, signature, key_id
          from decision_checkpoints where workspace_id = ${workspaceId}::uuid order by seq`,
      );
      const bySeq = new Map(checkpoints.map((checkpoint) => [Number(checkpoint.seq), checkpoint]));
      const breaks: { seq: number; reason: string }[] = [];
      for (const checkpoint of checkpoints) {
        const seq = Number(checkpoint.seq);
        const signed = { workspaceId, seq, hash: checkpoint.hash, at: new Date(checkpoint.at).toISOString() };
        if (checkpoint.key_id !== key.keyId)
          breaks.push({ seq, reason: `checkpoint signed by an unknown key (${checkpoint.key_id})` });
        else if (!checkpointVerifies(signed, checkpoint.signature, key.publicKey))
          breaks.push({ seq, reason: 'checkpoint signature does not verify' });
      }

      let expected = 1;
      let prevHash = genesisHash;
      let broken = false;
      const links = scope.stream(
        sql<
          SealedRow & { decision_id: string }
        >`select s.seq, s.prev_hash, s.hash, s.decision_id, d.* from decision_seals s
          left join decisions d on d.id = s.decision_id and d.workspace_id = s.workspace_id
          where s.workspace_id = ${workspaceId}::uuid order by s.seq`,
      );
      {
        for await (const rows of links) {
          if (broken) break;
          for (const row of rows) {
            const seq = Number(row.seq);
            let reason: string | undefined;
            if (seq !== expected) reason = 'a link of the chain is missing';
            else if (!row.id) reason = 'the decision of this link is missing';
            else if (row.prev_hash !== prevHash) reason = 'the link does not follow the previous one';
            else if (linkHash(prevHash, chained(row, seq)) !== row.hash)
              reason = 'the decision does not match its hash';
            else if (bySeq.has(seq) && bySeq.get(seq)!.hash !== row.hash)
              reason = 'the chain does not match its signed checkpoint';
            if (reason) {
              breaks.push({ seq: expected, reason });
              broken = true;
              break;
            }
            prevHash = row.hash!;
            expected += 1;
          }
        }
      }
      const [counts] = await scope.query(
        sql<{ sealed: string; last: string | null; unsealed: string }>`select
          (select count(*) from decision_seals where workspace_id = ${workspaceId}::uuid) as sealed,
          (select max(seq) from decision_seals where workspace_id = ${workspaceId}::uuid) as last,
          (select count(*) from decisions d where d.workspace_id = ${workspaceId}::uuid
             and not exists (select 1 from decision_seals s where s.decision_id = d.id)) as unsealed`,
      );
      if (!counts) throw new Error('counts query returned no row');
      const lastCheckpoint = checkpoints.at(-1);
      const lastSeq = Number(counts.last ?? 0);
      if (lastCheckpoint && Number(lastCheckpoint.seq) > lastSeq) {
        breaks.push({
          seq: lastSeq + 1,
          reason: `decisions up to seq ${lastCheckpoint.seq} were signed but are missing`,
        });
      }
      const firstBreak = breaks.sort((left, right) => left.seq - right.seq)[0];
      return {
        verified: !firstBreak,
        sealed: Number(counts.sealed),
        unsealed: Number(counts.unsealed),
        ...(firstBreak ? { firstBreak } : {}),
      };
    });
  }
}
