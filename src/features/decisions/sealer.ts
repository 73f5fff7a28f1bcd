import type { EntityManager } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import type { Orm } from '../../db/orm.ts';
import { withWorkspace } from '../../db/scope.ts';
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
  private readonly orm: Orm;
  private readonly key: SigningKey;
  private readonly logger: Logger;
  private readonly options: SealerOptions;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<unknown> = Promise.resolve();

  constructor(orm: Orm, key: SigningKey, logger: Logger, options: Partial<SealerOptions> = {}) {
    this.orm = orm;
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
    const workspaces = await this.orm.em
      .fork()
      .execute<{ workspace_id: string }[]>('select workspace_id from cordon_workspaces_to_seal(?)', [
        this.options.window,
      ]);
    let sealed = 0;
    for (const { workspace_id: workspaceId } of workspaces) sealed += await this.sealWorkspace(workspaceId);
    return sealed;
  }

  async sealWorkspace(workspaceId: string): Promise<number> {
    let total = 0;
    for (;;) {
      const sealed = await withWorkspace(this.orm, workspaceId, (em) => this.sealBatch(em, workspaceId));
      total += sealed;
      if (sealed < this.options.batchSize) return total;
    }
  }

  private async sealBatch(em: EntityManager, workspaceId: string): Promise<number> {
    const [lock] = await em.execute<{ locked: boolean }[]>(
      "select pg_try_advisory_xact_lock(hashtextextended('cordon:seal:' || ?, 0)) as locked",
      [workspaceId],
    );
    if (!lock?.locked) return 0;
    const [last] = await em.execute<{ seq: string; hash: string }[]>(
      'select seq, hash from decision_seals where workspace_id = ? order by seq desc limit 1',
      [workspaceId],
    );
    const [high] = await em.execute<{ position: string }[]>(
      'select coalesce(max(decision_position), 0) as position from decision_seals where workspace_id = ?',
      [workspaceId],
    );
    const rows = await em.execute<(DecisionRow & { position: string })[]>(
      `select d.* from decisions d
       where d.workspace_id = ? and d.position > ? and not exists (select 1 from decision_seals s where s.decision_id = d.id)
       order by d.position limit ?`,
      [workspaceId, Number(high?.position ?? 0) - this.options.window, this.options.batchSize],
    );
    if (!rows.length) return 0;

    let seq = Number(last?.seq ?? 0);
    let prevHash = last?.hash ?? genesisHash;
    const values: unknown[] = [];
    for (const row of rows) {
      seq += 1;
      const hash = linkHash(prevHash, chained(row, seq));
      values.push(workspaceId, seq, row.id, row.position, prevHash, hash);
      prevHash = hash;
    }
    await em.execute(
      `insert into decision_seals (workspace_id, seq, decision_id, decision_position, prev_hash, hash) values ${rows.map(() => '(?, ?, ?, ?, ?, ?)').join(', ')}`,
      values,
    );
    const checkpoint = { workspaceId, seq, hash: prevHash, at: new Date().toISOString() };
    await em.execute(
      'insert into decision_checkpoints (workspace_id, seq, hash, at, key_id, signature) values (?, ?, ?, ?, ?, ?)',
      [workspaceId, seq, prevHash, checkpoint.at, this.key.keyId, signCheckpoint(checkpoint, this.key.privateKey)],
    );
    return rows.length;
  }
}
