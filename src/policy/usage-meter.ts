import type { RequestHandler } from 'express';
import { sql } from 'kysely';
import type { Logger } from 'pino';
import type { Database } from '../db/database.ts';
import { ProblemError } from '../http/errors.ts';
import type { Plans } from './plans.ts';
import { effectivePlan } from './standing.ts';

/** The month (UTC) an instant falls in: its first day, and when the next one starts. */
export function monthOf(at: Date): { period: string; next: Date } {
  const start = Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), 1);
  return {
    period: new Date(start).toISOString().slice(0, 10),
    next: new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth() + 1, 1)),
  };
}

/**
 * API calls per workspace and month, counted in memory and flushed in batches: every `flushMs`
 * one upsert per workspace adds what this instance counted since the last flush. Nothing is
 * written per request; a crash loses what was counted since the last flush (at most `flushMs`
 * of calls on that instance). The quota compares the month's total as of this instance's last
 * flush (all instances' calls) plus its own unflushed ones, so instances together may overshoot
 * by what the others counted within one flush interval.
 */
export class UsageMeter {
  private readonly database: Database;
  private readonly logger: Logger;
  private readonly flushMs: number;
  /** `period workspaceId` → calls counted here and not yet flushed. */
  private readonly pending = new Map<string, number>();
  /** Taken out of `pending` by a flush still writing them. */
  private readonly flushing = new Map<string, number>();
  /** The month's total in the database as last read or written here. */
  private readonly totals = new Map<string, number>();
  private readonly loading = new Map<string, Promise<number>>();
  private month = monthOf(new Date(0));
  private timer: NodeJS.Timeout | undefined;
  private flushed: Promise<void> = Promise.resolve();

  constructor(database: Database, options: { flushMs: number; logger: Logger }) {
    this.database = database;
    this.flushMs = options.flushMs;
    this.logger = options.logger;
  }

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.flushMs);
    this.timer.unref();
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /** Counts one call of the workspace this month, unless the month's `limit` (null: none) is spent. */
  async admit(workspaceId: string, limit: number | null, now = new Date()): Promise<void> {
    if (now >= this.month.next) this.month = monthOf(now);
    const key = `${this.month.period} ${workspaceId}`;
    const loaded = limit === null ? 0 : (this.totals.get(key) ?? (await this.load(key, workspaceId)));
    // Counted only after that wait, and counted in the same step as the call is added: calls that
    // waited together on the month's first read must each see the ones admitted before them, or
    // all would see none. The total is read again: a flush meanwhile moves calls from `used` into it.
    if (limit !== null && this.used(key) + (this.totals.get(key) ?? loaded) >= limit) {
      const seconds = Math.max(1, Math.ceil((this.month.next.getTime() - now.getTime()) / 1000));
      throw new ProblemError(
        'api_quota_exceeded',
        `The plan's ${limit} API calls for this month are spent; the quota renews on ${this.month.next.toISOString()}`,
        { headers: { 'Retry-After': String(seconds) } },
      );
    }
    this.pending.set(key, (this.pending.get(key) ?? 0) + 1);
  }

  /** The month's calls: flushed by every instance, plus this instance's unflushed ones. */
  async callsThisMonth(workspaceId: string, now = new Date()): Promise<number> {
    const { period } = monthOf(now);
    const key = `${period} ${workspaceId}`;
    const total = await this.load(key, workspaceId);
    return this.used(key) + total;
  }

  /**
   * Counts requests authenticated as a workspace principal, against their workspace's plan; a
   * route answered past the quota (`beyondQuota`: billing) is counted, never refused.
   */
  guard(plans: Plans): RequestHandler {
    return async (request, _response, next) => {
      const workspace = request.workspace;
      if (workspace && request.principal) {
        const limit = effectivePlan(plans, workspace.billing).limits.apiCallsPerMonth;
        await this.admit(workspace.id, request.beyondQuota ? null : limit);
      }
      next();
    };
  }

  private used(key: string): number {
    return (this.pending.get(key) ?? 0) + (this.flushing.get(key) ?? 0);
  }

  private load(key: string, workspaceId: string): Promise<number> {
    let loading = this.loading.get(key);
    if (!loading) {
      const period = key.slice(0, 10);
      loading = this.database
        .inWorkspace(
          workspaceId,
          (scope) => sql<{ calls: string }>`with ${scope}
            select found.calls from scope cross join lateral (
              select u.calls from api_usage u
              where u.workspace_id = scope.workspace_id and u.period = ${period}::date offset 0) found`,
        )
        .then(([row]) => {
          const calls = Number(row?.calls ?? 0);
          if (!this.totals.has(key)) this.totals.set(key, calls);
          return this.totals.get(key)!;
        })
        .finally(() => this.loading.delete(key));
      this.loading.set(key, loading);
    }
    return loading;
  }

  /** One upsert per workspace and month, adding this instance's count; a failed one is kept for the next. */
  flush(): Promise<void> {
    this.flushed = this.flushed.then(() => this.write());
    return this.flushed;
  }

  private async write(): Promise<void> {
    const batch = [...this.pending];
    this.pending.clear();
    for (const [key, calls] of batch) this.flushing.set(key, calls);
    for (const [key, calls] of batch) {
      const period = key.slice(0, 10);
      const workspaceId = key.slice(11);
      try {
        const [row] = await this.database.inWorkspace(
          workspaceId,
          (scope) => sql<{ calls: string }>`with ${scope}
            insert into api_usage (workspace_id, period, calls)
            select scope.workspace_id, ${period}::date, ${calls}::bigint from scope
            on conflict (workspace_id, period) do update set calls = api_usage.calls + excluded.calls
            returning calls`,
        );
        if (row) this.totals.set(key, Number(row.calls));
      } catch (error) {
        // A workspace deleted meanwhile is gone with its usage; anything else is counted again next time.
        if ((error as { code?: string }).code !== '23503') {
          this.pending.set(key, (this.pending.get(key) ?? 0) + calls);
          this.logger.warn({ err: error, workspaceId }, 'API usage flush failed; kept for the next flush');
        }
      } finally {
        this.flushing.delete(key);
      }
    }
    // Past months are no longer asked about.
    for (const key of this.totals.keys()) if (!key.startsWith(this.month.period)) this.totals.delete(key);
  }
}
