import pg from 'pg';
import type { Logger } from 'pino';
import type { EntityManager } from '@mikro-orm/postgresql';
import type { Orm } from './orm.ts';
import { withWorkspace } from './scope.ts';

/** What changed, so caches on every instance drop exactly what they hold of it. */
/** `workspaceId: '*'` means every workspace. */
export type Change =
  | { topic: 'workspace'; workspaceId: string }
  | { topic: 'identity-provider'; workspaceId: string }
  | { topic: 'policy'; workspaceId: string }
  | { topic: 'member'; workspaceId: string }
  | { topic: 'structure'; workspaceId: string };

const channel = 'cordon_changes';

/**
 * Cache invalidation across instances through PostgreSQL LISTEN/NOTIFY. A change is announced
 * inside the transaction that makes it, so it is delivered exactly when it commits; the
 * instance that made it also applies it locally at once.
 */
export class ChangeBus {
  private readonly listeners = new Set<(change: Change) => void>();
  private client: pg.Client | undefined;
  private closed = false;
  private readonly url: string | undefined;
  private readonly logger: Logger;

  constructor(url: string | undefined, logger: Logger) {
    this.url = url;
    this.logger = logger;
  }

  subscribe(listener: (change: Change) => void): void {
    this.listeners.add(listener);
  }

  /** Announces a change as part of the caller's transaction. */
  private async announce(em: EntityManager, change: Change): Promise<void> {
    await em.execute('select pg_notify(?, ?)', [channel, JSON.stringify(change)]);
  }

  /**
   * Runs `work` in the transaction `begin` opens, announces `change` in it, and once committed
   * applies it here at once: the one way a change reaches every instance's caches.
   */
  async committing<T>(
    change: Change,
    begin: (work: (em: EntityManager) => Promise<T>) => Promise<T>,
    work: (em: EntityManager) => Promise<T>,
  ): Promise<T> {
    const result = await begin(async (em) => {
      const value = await work(em);
      await this.announce(em, change);
      return value;
    });
    this.apply(change);
    return result;
  }

  /** A change to one workspace: `work` runs in the workspace's RLS scope, announced on commit. */
  inWorkspace<T>(orm: Orm, change: Change, work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.committing(change, (scoped) => withWorkspace(orm, change.workspaceId, scoped), work);
  }

  /** Applies a committed change to this instance's caches without waiting for the echo. */
  apply(change: Change): void {
    for (const listener of this.listeners) listener(change);
  }

  async listen(): Promise<void> {
    if (!this.url || this.closed) return;
    const client = new pg.Client({ connectionString: this.url });
    client.on('notification', (message) => {
      if (message.channel !== channel || !message.payload) return;
      try {
        this.apply(JSON.parse(message.payload) as Change);
      } catch (error) {
        this.logger.warn({ err: error }, 'ignored a malformed change notification');
      }
    });
    client.on('error', (error) => {
      this.logger.warn({ err: error }, 'change listener lost its connection; reconnecting');
      this.client = undefined;
      void client.end().catch(() => undefined);
      this.reconnect();
    });
    await client.connect();
    await client.query(`listen ${channel}`);
    this.client = client;
  }

  /** Retries every second until listening again; then drops every cache, which may have missed changes. */
  private reconnect(): void {
    if (this.closed) return;
    setTimeout(() => {
      this.listen().then(
        () => this.apply({ topic: 'workspace', workspaceId: '*' }),
        (error: unknown) => {
          this.logger.warn({ err: error }, 'change listener could not reconnect; retrying');
          this.reconnect();
        },
      );
    }, 1_000).unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.client?.end().catch(() => undefined);
  }
}
