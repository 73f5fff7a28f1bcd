import { sql } from 'kysely';
import type { Database, Statement } from './database.ts';

/**
 * An append-only log whose rows take positions from a sequence at insert (the decision log, the
 * event log) while transactions commit out of order. A reader must never pass a position whose
 * transaction is still in flight, or it would later find a row below one it has already seen.
 *
 * So every insert takes its workspace's gate, shared, before its rows take positions, and holds
 * it to the end of its transaction; a reader takes the gate exclusively for a moment — which waits
 * out the inserts in flight — and reads the sequence: every position up to that value is final
 * (committed or rolled back for good), and every later insert takes a higher one.
 */
export interface Gate {
  /** The advisory-lock key's prefix; the workspace id completes it. */
  prefix: string;
  /** The sequence (with CACHE 1) the log's positions come from. */
  sequence: string;
}

export const decisionGate: Gate = { prefix: 'cordon:decisions:', sequence: 'decisions_position_seq' };
export const eventGate: Gate = { prefix: 'cordon:events:', sequence: 'events_seq' };

/**
 * The gate, shared, as a CTE for an INSERT … SELECT whose rows join it: `with ${scope},
 * gate as materialized (…) insert … select … from scope cross join gate …`. The key comes from
 * `scope`, which row-level security already pins every row to.
 */
export const sharedGate = (gate: Gate): Statement<unknown> =>
  sql`gate as materialized (select pg_advisory_xact_lock_shared(hashtextextended(${gate.prefix}::text || scope.workspace_id::text, 0)) from scope)`;

const sqlState = (error: unknown) => {
  const { sqlState, code } = (error ?? {}) as { sqlState?: unknown; code?: unknown };
  return sqlState ?? code;
};

/**
 * How far the workspace's positions are final, or undefined when inserts in flight outlast
 * `timeoutMs` (inserts that arrive meanwhile queue behind the waiting reader, so this bounds their
 * wait too; the reader tries again on its next pass).
 */
export async function finalPosition(
  database: Database,
  gate: Gate,
  workspaceId: string,
  timeoutMs: number,
): Promise<string | undefined> {
  try {
    return await database.outsideWorkspaces(async (transaction) => {
      await transaction.query(sql`select set_config('lock_timeout', ${`${timeoutMs}ms`}, true)`);
      await transaction.query(
        sql`select pg_advisory_xact_lock(hashtextextended(${gate.prefix}::text || ${workspaceId}::uuid::text, 0))`,
      );
      const [sequence] = await transaction.query(
        sql<{ position: string | null; cache: string }>`select pg_sequence_last_value(s.seqrelid) as position,
            s.seqcache as cache
          from pg_sequence s where s.seqrelid = ${gate.sequence}::regclass`,
      );
      // A cache hands out positions below the last value after it was read: none may be final.
      if (Number(sequence?.cache) !== 1) throw new Error(`${gate.sequence} must keep CACHE 1 to be read in order`);
      return sequence!.position ?? '0';
    });
  } catch (error) {
    if (sqlState(error) === '55P03') return undefined; // lock_not_available: the gate timed out
    throw error;
  }
}
