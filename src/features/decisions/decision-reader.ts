import { sql, type RawBuilder } from 'kysely';
import { z } from 'zod';
import type { Database, Scope } from '../../db/database.ts';
import { decodeCursor, encodeCursor, keysetPage } from '../../http/cursor.ts';
import { chained, type DecisionRow } from './chain.ts';
import { verifyChain } from './chain-verifier.ts';
import type {
  CheckpointResponse,
  DecisionFilters,
  DecisionResponse,
  PublicKeyResponse,
  VerifyResponse,
} from './decisions.schema.ts';
import { knownSigningKeys } from './signing-keys.ts';
import { publishedKey, type SigningKey } from './signing.ts';
import { chainEntries, selectCheckpoints, signedCheckpoint, type CheckpointRow } from './stored-chain.ts';

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

const selectSealed = sql`select d.*, s.seq, s.prev_hash, s.hash from decisions d left join decision_seals s on s.workspace_id = d.workspace_id and s.decision_id = d.id`;
const listPosition = z.object({ before: z.string().regex(/^\d{1,19}$/) });

const checkpointPosition = z.object({ after: z.string().regex(/^\d{1,19}$/) });
const afterCursor = (cursor: string | undefined) => (cursor ? decodeCursor(cursor, checkpointPosition).after : '0');

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

  /** Newest first, keyset-paginated on the append position; `count`: how many the filters select in all. */
  async list(
    workspaceId: string,
    filters: DecisionFilters,
    page: { limit: number; cursor?: string | undefined; count: boolean },
  ): Promise<{ data: DecisionResponse[]; nextCursor: string | null; count?: number }> {
    const before = page.cursor ? decodeCursor(page.cursor, listPosition).before : undefined;
    const [rows, count] = await this.scoped(workspaceId, async (scope) => [
      await scope.query(
        sql<SealedRow>`${selectSealed} where ${where(workspaceId, filters)}
          ${before ? sql`and d.position < ${before}::bigint` : sql``}
          order by d.position desc limit ${page.limit + 1}::integer`,
      ),
      page.count ? await scope.count(sql`decisions d where ${where(workspaceId, filters)}`) : undefined,
    ]);
    const { shown, nextCursor } = keysetPage(rows, page.limit, (last) =>
      encodeCursor({ before: String(last.position) }),
    );
    return { data: shown.map(toResponse), nextCursor, ...(count !== undefined && { count }) };
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

  /** Signed checkpoints, oldest first, keyset-paginated on seq; `count`: how many there are in all. */
  async checkpoints(
    workspaceId: string,
    page: { limit: number; cursor?: string | undefined; count: boolean },
  ): Promise<{ data: CheckpointResponse[]; nextCursor: string | null; count?: number }> {
    const [rows, count] = await this.scoped(workspaceId, async (scope) => [
      await scope.query(
        sql<CheckpointRow>`${selectCheckpoints(workspaceId, afterCursor(page.cursor))} limit ${page.limit + 1}::integer`,
      ),
      page.count ? await scope.count(sql`decision_checkpoints where workspace_id = ${workspaceId}::uuid`) : undefined,
    ]);
    const { shown, nextCursor } = keysetPage(rows, page.limit, (last) => encodeCursor({ after: String(last.seq) }));
    return { data: shown.map(signedCheckpoint), nextCursor, ...(count !== undefined && { count }) };
  }

  /** Where a checkpoint stream starts: the seq after which `cursor` points (a bad cursor is a 400). */
  checkpointsAfter(cursor: string | undefined): string {
    return afterCursor(cursor);
  }

  /** Every checkpoint after `after`, oldest first, from a server-side cursor. */
  async exportCheckpoints(
    workspaceId: string,
    after: string,
    write: (checkpoints: CheckpointResponse[]) => Promise<void>,
  ): Promise<void> {
    await this.scoped(workspaceId, async (scope) => {
      for await (const chunk of scope.stream(selectCheckpoints(workspaceId, after)))
        await write(chunk.map(signedCheckpoint));
    });
  }

  /** The running key and every earlier one, as published for auditors. */
  async publicKeys(current: SigningKey): Promise<PublicKeyResponse> {
    const known = await knownSigningKeys(this.database);
    const previous = known
      .filter((key) => key.keyId !== current.keyId)
      .map((key) => ({ ...publishedKey(key.publicKey), firstUsedAt: key.firstUsedAt }));
    return { ...publishedKey(current.publicKey), previous };
  }

  /**
   * Recomputes the chain in seq order and checks every signed checkpoint against it, with the
   * keys that ever signed (see chain-verifier.ts): a changed row, a removed link, a checkpoint
   * of an unknown key or a deleted tail (behind the last checkpoint) is the first break.
   */
  async verify(workspaceId: string, current: SigningKey): Promise<VerifyResponse> {
    const keys = new Map((await knownSigningKeys(this.database)).map((key) => [key.keyId, key.publicKey]));
    keys.set(current.keyId, current.publicKey);
    return this.scoped(workspaceId, async (scope) => {
      const { firstBreak } = await verifyChain(workspaceId, keys, chainEntries(scope));
      const [counts] = await scope.query(
        sql<{ sealed: string; unsealed: string }>`select
          (select count(*) from decision_seals where workspace_id = ${workspaceId}::uuid) as sealed,
          (select count(*) from decisions d where d.workspace_id = ${workspaceId}::uuid
             and not exists (select 1 from decision_seals s where s.workspace_id = d.workspace_id and s.decision_id = d.id)) as unsealed`,
      );
      if (!counts) throw new Error('counts query returned no row');
      return {
        verified: !firstBreak,
        sealed: Number(counts.sealed),
        unsealed: Number(counts.unsealed),
        ...(firstBreak ? { firstBreak: { seq: firstBreak.seq, reason: firstBreak.reason } } : {}),
      };
    });
  }
}
