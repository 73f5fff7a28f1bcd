import type pg from 'pg';
import Cursor from 'pg-cursor';
import { decodeCursor, encodeCursor, keysetPage } from '../../http/cursor.ts';
import { scopedTransaction } from '../../db/scoped.ts';
import { z } from 'zod';
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

/** The WHERE clause of the auditor filters, as parameterised SQL. */
function where(workspaceId: string, filters: DecisionFilters): { sql: string; values: unknown[] } {
  const clauses: string[] = [];
  const values: unknown[] = [];
  const add = (clause: string, value: unknown) => {
    values.push(value);
    clauses.push(clause.replace('$', `$${values.length}`));
  };
  add('d.workspace_id = $', workspaceId);
  if (filters.from) add('d.at >= $', filters.from);
  if (filters.to) add('d.at < $', filters.to);
  if (filters.principalId) add('d.principal_id = $', filters.principalId);
  if (filters.role) add('$ = any (d.principal_roles)', filters.role);
  if (filters.action) add('d.action = $', filters.action);
  if (filters.subject) add('d.subject = $', filters.subject);
  if (filters.allowed !== undefined) add('d.allowed = $', filters.allowed);
  if (filters.resourceId) add('d.resource_id = $', filters.resourceId);
  if (filters.policyId) add('d.policy_id = $', filters.policyId);
  return { sql: clauses.join(' and '), values };
}

const selectSealed =
  'select d.*, s.seq, s.prev_hash, s.hash from decisions d left join decision_seals s on s.decision_id = d.id';
const listPosition = z.object({ before: z.string().regex(/^\d{1,19}$/) });

/**
 * Reads the decision log with plain `pg` and server-side cursors, so exports and verification
 * run in constant memory however long the log is. Every read runs in the workspace's RLS scope.
 */
export class DecisionReader {
  private readonly pool: pg.Pool;

  constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  private scoped<T>(workspaceId: string, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return scopedTransaction(this.pool, workspaceId, work, { readOnly: true });
  }

  /** Newest first, keyset-paginated on the append position. */
  async list(
    workspaceId: string,
    filters: DecisionFilters,
    limit: number,
    cursor?: string,
  ): Promise<{ data: DecisionResponse[]; nextCursor: string | null }> {
    const { sql, values } = where(workspaceId, filters);
    const before = cursor ? decodeCursor(cursor, listPosition).before : undefined;
    const rows = await this.scoped(
      workspaceId,
      async (client) =>
        (
          await client.query<SealedRow>(
            `${selectSealed} where ${sql} ${before ? `and d.position < $${values.length + 1}` : ''} order by d.position desc limit ${limit + 1}`,
            before ? [...values, before] : values,
          )
        ).rows,
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
    const { sql, values } = where(workspaceId, filters);
    await this.scoped(workspaceId, async (client) => {
      const cursor = client.query(new Cursor<SealedRow>(`${selectSealed} where ${sql} order by d.position`, values));
      try {
        for (let rows = await cursor.read(1_000); rows.length; rows = await cursor.read(1_000))
          await write(rows.map(toResponse));
      } finally {
        await cursor.close();
      }
    });
  }

  /**
   * Recomputes the chain in seq order and checks every signed checkpoint against it: a changed
   * row, a removed link or a deleted tail (behind the last checkpoint) is the first break.
   */
  async verify(workspaceId: string, key: { keyId: string; publicKey: KeyObject }): Promise<VerifyResponse> {
    return this.scoped(workspaceId, async (client) => {
      const checkpoints = (
        await client.query<{ seq: string; hash: string; at: Date; signature: string; key_id: string }>(
          'select seq, hash, at, signature, key_id from decision_checkpoints where workspace_id = $1 order by seq',
          [workspaceId],
        )
      ).rows;
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
      const cursor = client.query(
        new Cursor<SealedRow & { decision_id: string }>(
          `select s.seq, s.prev_hash, s.hash, s.decision_id, d.* from decision_seals s
         left join decisions d on d.id = s.decision_id and d.workspace_id = s.workspace_id
         where s.workspace_id = $1 order by s.seq`,
          [workspaceId],
        ),
      );
      try {
        for (let rows = await cursor.read(1_000); rows.length && !broken; rows = await cursor.read(1_000)) {
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
      } finally {
        await cursor.close();
      }
      const counts = (
        await client.query<{ sealed: string; last: string | null; unsealed: string }>(
          `select (select count(*) from decision_seals where workspace_id = $1) as sealed, (select max(seq) from decision_seals where workspace_id = $1) as last,
                (select count(*) from decisions d where d.workspace_id = $1 and not exists (select 1 from decision_seals s where s.decision_id = d.id)) as unsealed`,
          [workspaceId],
        )
      ).rows[0]!;
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
