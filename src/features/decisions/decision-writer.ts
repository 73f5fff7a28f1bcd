import type pg from 'pg';
import { insertStatement, type DecisionContext, type DecisionEntry, type DecisionLog } from './decision-log.ts';

interface Waiting {
  context: DecisionContext;
  entries: readonly DecisionEntry[];
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
  private readonly pool: pg.Pool;
  private readonly log: DecisionLog;
  private waiting: Waiting[] = [];
  private inFlight = 0;
  private scheduled = false;

  /** Plain `pg`: bound parameters, and none of the ORM's per-query work on the hot path. */
  constructor(pool: pg.Pool, log: DecisionLog) {
    this.pool = pool;
    this.log = log;
  }

  append(context: DecisionContext, entries: readonly DecisionEntry[]): Promise<void> {
    if (!this.log.enabled || entries.length === 0) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiting.push({ context, entries, resolve, reject });
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

  private async flush(): Promise<void> {
    const batch = this.take();
    if (!batch.length) return;
    this.inFlight += 1;
    try {
      const groups = [...Map.groupBy(batch, (waiting) => waiting.context.workspaceId)];
      const client = await this.pool.connect();
      try {
        // One workspace (the usual case): a single statement is its own transaction. Several:
        // one transaction, one statement per workspace, each with its own RLS scope.
        if (groups.length > 1) await client.query('begin');
        for (const [workspaceId, group] of groups) await client.query(insertStatement(workspaceId, group));
        if (groups.length > 1) await client.query('commit');
      } catch (error) {
        if (groups.length > 1) await client.query('rollback').catch(() => undefined);
        throw error;
      } finally {
        client.release();
      }
      for (const waiting of batch) waiting.resolve();
    } catch (error) {
      for (const waiting of batch) waiting.reject(error);
    } finally {
      this.inFlight -= 1;
      this.schedule();
    }
  }
}
