import { sql } from 'kysely';
import { prepared, type Database } from '../db/database.ts';
import { appendDecisions, type DecisionBatch } from './decision-log.ts';

interface Waiting extends DecisionBatch {
  resolve: () => void;
  reject: (error: unknown) => void;
}

const maxRowsPerFlush = 2_000;
const maxFlushesInFlight = 2;

/**
 * Group commit for decisions that have no transaction of their own (reads, denials, checks).
 * Each caller waits until its rows are committed, so nothing is answered before its decision is
 * durable; callers that arrive while a commit is in flight share the next one, which turns one
 * fsync per request into one per batch. Nothing is ever acknowledged from memory.
 */
export class DecisionWriter {
  private readonly database: Database;
  private waiting: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;

  constructor(database: Database) {
    this.database = database;
  }

  append(batch: DecisionBatch): Promise<void> {
    if (batch.entries.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiting.push({ ...batch, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.inFlight >= maxFlushesInFlight || !this.waiting.length) return;
    this.scheduled = true;
    // Let the requests that arrive in this same turn of the event loop join the batch.
    setImmediate(() => {
      this.scheduled = false;
      void this.flush();
    });
  }

  private take(): Waiting[] {
    let rows = 0;
    let count = 0;
    while (
      count < this.waiting.length &&
      (count === 0 || rows + this.waiting[count]!.entries.length <= maxRowsPerFlush)
    ) {
      rows += this.waiting[count]!.entries.length;
      count += 1;
    }
    return this.waiting.splice(0, count);
  }

  /** One statement per workspace in the batch, each its own transaction in its own scope. */
  private async flush(): Promise<void> {
    const batch = this.take();
    if (!batch.length) return;
    this.inFlight += 1;
    try {
      const groups = Map.groupBy(batch, (waiting) => waiting.context.workspaceId);
      await Promise.all([...groups].map(([workspaceId, group]) => this.write(workspaceId, group)));
    } finally {
      this.inFlight -= 1;
      this.schedule();
    }
  }

  /**
   * One workspace's share of a flush. A data exception (SQLSTATE class 22: a value PostgreSQL
   * refuses) is some request's own rows, so each request is then written again alone and only its
   * own fails; any other error (the connection, the server) would fail them all alike, and is
   * theirs at once. The failed statement committed nothing: its positions are left as gaps, which
   * are final like any rolled-back insert, and the sealer chains only rows that committed, in
   * position order. Each retry is a transaction of its own that takes the workspace's gate before
   * its rows take positions, as every append does, and they run one after another in the group's
   * order, so its requests' rows keep the order one statement would have given them.
   */
  private async write(workspaceId: string, group: readonly Waiting[]): Promise<void> {
    const append = (batches: readonly Waiting[]) =>
      this.database.inWorkspace(workspaceId, (scope) =>
        prepared('cordon_append_decisions', sql`with ${scope} ${appendDecisions(batches)}`),
      );
    try {
      await append(group);
      for (const waiting of group) waiting.resolve();
    } catch (error) {
      if (group.length === 1 || !isDataException(error)) {
        for (const waiting of group) waiting.reject(error);
        return;
      }
      for (const waiting of group) {
        try {
          await append([waiting]);
          waiting.resolve();
        } catch (alone) {
          waiting.reject(alone);
        }
      }
    }
  }
}

/** SQLSTATE class 22, as pg reports it (`code`) or as the ORM passes it on (`sqlState`). */
function isDataException(error: unknown): boolean {
  const { sqlState, code } = (error ?? {}) as { sqlState?: unknown; code?: unknown };
  const state = sqlState ?? code;
  return typeof state === 'string' && state.startsWith('22');
}
