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
      await Promise.all(
        [...groups].map(async ([workspaceId, group]) => {
          try {
            await this.database.inWorkspace(workspaceId, (scope) =>
              prepared('cordon_append_decisions', sql`with ${scope} ${appendDecisions(group)}`),
            );
            for (const waiting of group) waiting.resolve();
          } catch (error) {
            for (const waiting of group) waiting.reject(error);
          }
        }),
      );
    } finally {
      this.inFlight -= 1;
      this.schedule();
    }
  }
}
