import { sql } from 'kysely';
import pg from 'pg';
import type { Logger } from 'pino';
import type { Transaction } from './database.ts';

/**
 * What changed, so caches on every instance drop exactly what they hold of it. `workspaceId: '*'`
 * means every workspace; a member change names its user when one user's membership changed, and
 * without one stands for any member of the workspace.
 */
export type Change =
  | { topic: 'workspace'; workspaceId: string }
  | { topic: 'identity-provider'; workspaceId: string }
  | { topic: 'policy'; workspaceId: string }
  | { topic: 'member'; workspaceId: string; userId?: string }
  | { topic: 'structure'; workspaceId: string }
  | { topic: 'function'; workspaceId: string }
  | { topic: 'trigger'; workspaceId: string }
  | { topic: 'billing'; workspaceId: string };

const channel = 'cordon_changes';
/** News that a workspace committed events: its id alone, never their data (each instance reads the table). */
const eventsChannel = 'cordon_events';

/**
 * Cache invalidation across instances through PostgreSQL LISTEN/NOTIFY. A change is announced
 * inside the transaction that makes it, so it is delivered exactly when it commits; the
 * instance that made it also applies it locally at once.
 */
export class ChangeBus {
  private readonly listeners = new Set<(change: Change) => void>();
  private readonly eventListeners = new Set<(workspaceId: string) => void>();
  /** Workspaces whose committed events are still to be announced, and whether an announcement is being sent. */
  private readonly unannounced = new Set<string>();
  private announcing = false;
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

  /**
   * Announces a change as part of the transaction that makes it: other instances hear of it when
   * it commits, never before. The caller applies it here once committed (`apply`).
   */
  async announce(transaction: Transaction, change: Change): Promise<void> {
    await transaction.query(sql`select pg_notify(${channel}::text, ${JSON.stringify(change)}::text)`);
  }

  /** Hears that another instance committed events in a workspace (`*`: any, after a lost connection). */
  onEvents(listener: (workspaceId: string) => void): void {
    this.eventListeners.add(listener);
  }

  /**
   * Tells the other instances that events committed in a workspace: after the commit, outside any
   * transaction (a NOTIFY inside the writing transaction would serialise every such commit), on
   * the listening connection, many workspaces per statement while one is being sent. News lost
   * with a connection only delays readers until their next poll.
   */
  announceEvents(workspaceId: string): void {
    if (!this.client) return;
    this.unannounced.add(workspaceId);
    if (this.announcing) return;
    this.announcing = true;
    void this.sendAnnouncements().finally(() => (this.announcing = false));
  }

  private async sendAnnouncements(): Promise<void> {
    while (this.unannounced.size && this.client) {
      const workspaces = [...this.unannounced];
      this.unannounced.clear();
      try {
        // A constant statement with parameters, on the listener's own connection (not the pool).
        // eslint-disable-next-line no-restricted-syntax
        await this.client.query('select pg_notify($1, w) from unnest($2::text[]) w', [eventsChannel, workspaces]);
      } catch (error) {
        this.logger.warn({ err: error }, 'could not announce committed events; other instances will poll');
      }
    }
  }

  /** Applies a committed change to this instance's caches without waiting for the echo. */
  apply(change: Change): void {
    for (const listener of this.listeners) listener(change);
  }

  async listen(): Promise<void> {
    if (!this.url || this.closed) return;
    const client = new pg.Client({ connectionString: this.url });
    client.on('notification', (message) => {
      if (message.channel === eventsChannel && message.payload) {
        // This instance's own news came to it directly (EventLog.committed).
        if (message.processId === (client as unknown as { processID?: number }).processID) return;
        for (const listener of this.eventListeners) listener(message.payload);
        return;
      }
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
    // LISTEN takes no parameters; the channel is a constant of this file.
    // eslint-disable-next-line no-restricted-syntax
    await client.query(`listen ${channel}`);
    // eslint-disable-next-line no-restricted-syntax
    await client.query(`listen ${eventsChannel}`);
    this.client = client;
  }

  /** Retries every second until listening again; then drops every cache, which may have missed changes. */
  private reconnect(): void {
    if (this.closed) return;
    setTimeout(() => {
      this.listen().then(
        () => {
          this.apply({ topic: 'workspace', workspaceId: '*' });
          for (const listener of this.eventListeners) listener('*');
        },
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
