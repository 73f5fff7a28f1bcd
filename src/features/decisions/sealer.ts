import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database, Scope } from '../../db/database.ts';
import { chained, genesisHash, linkHash, signCheckpoint, type DecisionRow } from './chain.ts';
import type { SigningKey } from './signing.ts';

export interface SealerOptions {
  intervalMs: number;
  batchSize: number;
  /**
   * How far back (in decision positions) unsealed rows are looked for. Positions are taken at
   * insert and transactions commit out of order, so a row can become visible after later ones
   * were sealed; it is then sealed with a later seq.
   */
  window: number;
}

const defaults: SealerOptions = { intervalMs: 1_000, batchSize: 2_000, window: 10_000 };

/**
 * Links each workspace's new decisions into its hash chain, in batches, and ends every batch
 * with an Ed25519-signed checkpoint. A per-workspace advisory lock keeps two instances from ever
 * forking a chain; appending decisions never waits for it.
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
      sql<{ workspace_id: string }>`select workspace_id from cordon_workspaces_to_seal(${this.options.window}::bigint)`,
    );
    let sealed = 0;
    for (const { workspace_id: workspaceId } of workspaces) sealed += await this.sealWorkspace(workspaceId);
    return sealed;
  }

  async sealWorkspace(workspaceId: string): Promise<number> {
    let total = 0;
    for (;;) {
      const sealed = await this.database.withWorkspace(workspaceId, (scope) => this.sealBatch(scope));
      total += sealed;
      if (sealed < this.options.batchSize) return total;
    }
  }

  private async sealBatch(scope: Scope): Promise<number> {
    const workspaceId = scope.workspaceId;
    const [lock] = await scope.query(
      sql<{
        locked: boolean;
      }>`select pg_try_advisory_xact_lock(hashtextextended('cordon:seal:' || ${workspaceId}::text, 0)) as locked`,
    );
    if (!lock?.locked) return 0;
    const [last] = await scope.query(
      sql<{ seq: string; hash: string }>`select seq, hash from decision_seals
        where workspace_id = ${workspaceId}::uuid order by seq desc limit 1`,
    );
    const [high] = await scope.query(
      sql<{ position: string }>`select coalesce(max(decision_position), 0) as position from decision_seals
        where workspace_id = ${workspaceId}::uuid`,
    );
    const rows = await scope.query(
      sql<DecisionRow & { position: string }>`select d.* from decisions d
        where d.workspace_id = ${workspaceId}::uuid and d.position > ${Number(high?.position ?? 0) - this.options.window}::bigint
          and not exists (select 1 from decision_seals s where s.decision_id = d.id)
        order by d.position limit ${this.options.batchSize}::integer`,
    );
    if (!rows.length) return 0;

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
    return rows.length;
  }
}
