import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database, Scope } from '../../db/database.ts';
import { decisionGate, finalPosition } from '../../db/gate.ts';
import { chained, genesisHash, linkHash, signCheckpoint, type DecisionRow } from './chain.ts';
import type { SigningKey } from './signing.ts';

export interface SealerOptions {
  intervalMs: number;
  batchSize: number;
  /**
   * How long a pass waits at a workspace's gate for the decision inserts in flight there. Inserts
   * that arrive meanwhile queue behind the waiting sealer, so this bounds their wait too; a
   * workspace whose inserts outlast it is sealed by a later pass.
   */
  gateTimeoutMs: number;
}

const defaults: SealerOptions = { intervalMs: 1_000, batchSize: 2_000, gateTimeoutMs: 100 };

type Row = DecisionRow & { position: string; sealed: boolean };

/**
 * Links each workspace's new decisions into its hash chain, in batches, and ends every batch
 * with an Ed25519-signed checkpoint. A per-workspace advisory lock keeps two instances from ever
 * forking a chain.
 *
 * Positions are taken at insert and transactions commit out of order, so a position is sealed
 * only once it is final: every decision insert holds its workspace's gate (policy/decision-log.ts)
 * from before its rows take positions to the end of its transaction, and the sealer holds that
 * gate exclusively for a moment to learn how far the workspace's positions are final. It then
 * seals, in position order, every decision up to there and records how far it got.
 */
export class Sealer {
  private readonly database: Database;
  private readonly key: SigningKey;
  private readonly logger: Logger;
  private readonly options: SealerOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(database: Database, key: SigningKey, logger: Logger, options: Partial<SealerOptions> = {}) {
    this.database = database;
    this.key = key;
    this.logger = logger;
    this.options = { ...defaults, ...options };
  }

  start(): void {
    this.timer ??= setInterval(() => {
      this.running = this.running
        .then(() => this.sealAll())
        .catch((error: unknown) => this.logger.warn({ err: error }, 'sealing failed; will retry'));
    }, this.options.intervalMs).unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.running.catch(() => undefined);
  }

  /** Seals everything pending in every workspace; returns how many decisions it linked. */
  async sealAll(): Promise<number> {
    const workspaces = await this.database.query(
      sql<{ workspace_id: string }>`select workspace_id from cordon_workspaces_with_unsealed_decisions()`,
    );
    let sealed = 0;
    for (const { workspace_id: workspaceId } of workspaces) sealed += await this.sealWorkspace(workspaceId);
    return sealed;
  }

  async sealWorkspace(workspaceId: string): Promise<number> {
    const final = await finalPosition(this.database, decisionGate, workspaceId, this.options.gateTimeoutMs);
    if (final === undefined) {
      this.logger.debug({ workspaceId }, 'decisions in flight outlasted the gate; sealing them next pass');
      return 0;
    }
    let total = 0;
    for (;;) {
      const batch = await this.database.withWorkspace(workspaceId, (scope) => this.sealBatch(scope, final));
      total += batch.sealed;
      if (!batch.more) return total;
    }
  }

  private async sealBatch(scope: Scope, final: string): Promise<{ sealed: number; more: boolean }> {
    const workspaceId = scope.workspaceId;
    const [lock] = await scope.query(
      sql<{
        locked: boolean;
      }>`select pg_try_advisory_xact_lock(hashtextextended('cordon:seal:' || ${workspaceId}::text, 0)) as locked`,
    );
    if (!lock?.locked) return { sealed: 0, more: false };
    const [progress] = await scope.query(
      sql<{ position: string }>`select sealed_through as position from decision_seal_progress
        where workspace_id = ${workspaceId}::uuid`,
    );
    if (progress && BigInt(progress.position) >= BigInt(final)) return { sealed: 0, more: false };
    const from = progress?.position ?? (await this.firstPass(scope, final));

    // Rows sealed already are skipped: the windowed sealer sealed out of position order.
    const rows = await scope.query(
      sql<Row>`select d.*, exists (select 1 from decision_seals s where s.workspace_id = d.workspace_id and s.decision_id = d.id) as sealed
        from decisions d
        where d.workspace_id = ${workspaceId}::uuid and d.position > ${from}::bigint and d.position <= ${final}::bigint
        order by d.position limit ${this.options.batchSize}::integer`,
    );
    const unsealed = rows.filter((row) => !row.sealed);
    if (unsealed.length) await this.link(scope, unsealed);
    const more = rows.length === this.options.batchSize;
    await scope.query(
      sql`insert into decision_seal_progress (workspace_id, sealed_through)
        values (${workspaceId}::uuid, ${more ? rows.at(-1)!.position : final}::bigint)
        on conflict (workspace_id) do update set sealed_through = excluded.sealed_through
          where decision_seal_progress.sealed_through < excluded.sealed_through`,
    );
    return { sealed: unsealed.length, more };
  }

  /**
   * Where a workspace with no progress yet starts: just before its oldest decision not sealed
   * (one the windowed sealer missed, or its first), else at `final`. One walk over its log, once.
   */
  private async firstPass(scope: Scope, final: string): Promise<string> {
    const [start] = await scope.query(
      sql<{ position: string }>`select coalesce((
          select d.position - 1 from decisions d
          where d.workspace_id = ${scope.workspaceId}::uuid and d.position <= ${final}::bigint
            and not exists (select 1 from decision_seals s where s.workspace_id = d.workspace_id and s.decision_id = d.id)
          order by d.position limit 1), ${final}::bigint) as position`,
    );
    return start!.position;
  }

  /** Appends the rows to the chain, in the order given, and signs a checkpoint at its end. */
  private async link(scope: Scope, rows: readonly Row[]): Promise<void> {
    const workspaceId = scope.workspaceId;
    const [last] = await scope.query(
      sql<{ seq: string; hash: string }>`select seq, hash from decision_seals
        where workspace_id = ${workspaceId}::uuid order by seq desc limit 1`,
    );
    let seq = Number(last?.seq ?? 0);
    let prevHash = last?.hash ?? genesisHash;
    const links = rows.map((row) => {
      seq += 1;
      const hash = linkHash(prevHash, chained(row, seq));
      const link = { seq, decision_id: row.id, decision_position: row.position, prev_hash: prevHash, hash };
      prevHash = hash;
      return link;
    });
    await scope.query(
      sql`insert into decision_seals (workspace_id, seq, decision_id, decision_position, prev_hash, hash)
        select ${workspaceId}::uuid, link.* from jsonb_to_recordset(${JSON.stringify(links)}::jsonb)
          as link(seq bigint, decision_id uuid, decision_position bigint, prev_hash text, hash text)`,
    );
    const checkpoint = { workspaceId, seq, hash: prevHash, at: new Date().toISOString() };
    await scope.query(
      sql`insert into decision_checkpoints (workspace_id, seq, hash, at, key_id, signature)
        values (${workspaceId}::uuid, ${seq}::bigint, ${prevHash}, ${checkpoint.at}::timestamptz, ${this.key.keyId},
                ${signCheckpoint(checkpoint, this.key.privateKey)})`,
    );
  }
}
