import { sql } from 'kysely';
import type { Scope } from '../../db/database.ts';
import { chained, type DecisionRow } from './chain.ts';
import type { ChainEntry } from './chain-verifier.ts';
import type { CheckpointResponse } from './decisions.schema.ts';

/** The chain as PostgreSQL stores it (decision_seals, decision_checkpoints), read in seq order. */

export type CheckpointRow = {
  workspace_id: string;
  seq: string;
  hash: string;
  at: Date;
  key_id: string;
  signature: string;
};

export const selectCheckpoints = (workspaceId: string, after: string) =>
  sql<CheckpointRow>`select workspace_id, seq, hash, at, key_id, signature from decision_checkpoints
    where workspace_id = ${workspaceId}::uuid and seq > ${after}::bigint order by seq`;

/** Exactly what was signed: `at` in the ISO form the sealer signed (timestamptz keeps its milliseconds). */
export const signedCheckpoint = (row: CheckpointRow): CheckpointResponse => ({
  workspaceId: row.workspace_id,
  seq: Number(row.seq),
  hash: row.hash,
  at: new Date(row.at).toISOString(),
  keyId: row.key_id,
  signature: row.signature,
});

type LinkRow = DecisionRow & {
  seq: string;
  prev_hash: string;
  hash: string;
  checkpoint_workspace_id: string | null;
  checkpoint_hash: string | null;
  checkpoint_at: Date | null;
  checkpoint_key_id: string | null;
  checkpoint_signature: string | null;
};

/**
 * The chain as verifyChain reads it: every link with the checkpoint of its seq, through one
 * server-side cursor, then the checkpoints beyond the last link (a deleted tail's witnesses). Those
 * are read first, in one statement: a batch sealed while the links stream is not beyond the chain,
 * and must not look like a deleted tail. A checkpoint whose link is gone mid-chain needs no row:
 * the missing link is a break at or before its seq.
 */
export async function* chainEntries(scope: Scope): AsyncGenerator<ChainEntry> {
  const workspaceId = scope.workspaceId;
  const beyond = await scope.query(
    sql<CheckpointRow>`select c.workspace_id, c.seq, c.hash, c.at, c.key_id, c.signature from decision_checkpoints c
      where c.workspace_id = ${workspaceId}::uuid
        and c.seq > (select coalesce(max(s.seq), 0) from decision_seals s where s.workspace_id = ${workspaceId}::uuid)
      order by c.seq`,
  );
  let lastSeq = 0;
  const links = scope.stream(
    sql<LinkRow>`select s.seq, s.prev_hash, s.hash, d.*, c.workspace_id as checkpoint_workspace_id,
        c.hash as checkpoint_hash, c.at as checkpoint_at, c.key_id as checkpoint_key_id,
        c.signature as checkpoint_signature
      from decision_seals s
      left join decisions d on d.id = s.decision_id and d.workspace_id = s.workspace_id
      left join decision_checkpoints c on c.workspace_id = s.workspace_id and c.seq = s.seq
      where s.workspace_id = ${workspaceId}::uuid order by s.seq`,
  );
  for await (const rows of links) {
    for (const row of rows) {
      const seq = Number(row.seq);
      lastSeq = seq;
      yield { link: { seq, prevHash: row.prev_hash, hash: row.hash, decision: row.id ? chained(row, seq) : null } };
      if (row.checkpoint_hash !== null)
        yield {
          checkpoint: signedCheckpoint({
            workspace_id: row.checkpoint_workspace_id!,
            seq: row.seq,
            hash: row.checkpoint_hash,
            at: row.checkpoint_at!,
            key_id: row.checkpoint_key_id!,
            signature: row.checkpoint_signature!,
          }),
        };
    }
  }
  for (const row of beyond) if (Number(row.seq) > lastSeq) yield { checkpoint: signedCheckpoint(row) };
}
