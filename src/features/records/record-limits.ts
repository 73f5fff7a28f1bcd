import { Counter, type Registry } from 'prom-client';
import type { LimitCheck } from './record-store.ts';

/**
 * One records limit of the plan (a structure's, or every structure's: "*") as a create checks it.
 *
 * A create takes the limit's advisory lock shared and counts committed rows, bounded, after it.
 * Transactions in flight at once are at most `margin` (max_connections), so while the count is
 * below `limit − margin` even all of them committing cannot pass the limit: creates far from it
 * proceed together. Otherwise the create does not insert and is retried with the lock exclusive
 * (a new transaction: a lock held shared is never upgraded), which waits out the shared holders
 * in flight and holds new ones back, and counts exactly. A limit no larger than the margin is
 * checked exclusively from the start: its shared attempt could never succeed.
 */
export class RecordLimit {
  readonly name: string;
  readonly limit: number | null;
  readonly margin: number;
  exclusive: boolean;

  constructor(name: string, limit: number | null, margin: number) {
    this.name = name;
    this.limit = limit;
    this.margin = margin;
    this.exclusive = limit !== null && limit <= margin;
  }

  check(): LimitCheck {
    return { bound: this.bound(), exclusive: this.exclusive };
  }

  /** The count (up to the bound) leaves no room under this check. */
  refuses(count: number): boolean {
    const bound = this.bound();
    return bound !== null && count >= bound;
  }

  private bound(): number | null {
    if (this.limit === null) return null;
    return this.exclusive ? this.limit : this.limit - this.margin;
  }
}

/** Ceilings kept per instance; past this many, the oldest is forgotten (it is only a shortcut). */
const headroomEntries = 10_000;

/**
 * What this instance learned about room under a workspace's records limits, so that a create far
 * from them skips counting.
 *
 * Every inserted record draws a position from one platform-wide sequence (the
 * `record_insert_positions` migration). A counted create reads the sequence's last value `s`, then
 * the counts `c` under a fresh snapshot. Rows missing from those counts drew a later position, or
 * belong to a transaction in flight when the counts were read (at most `margin` of them). So a
 * later create that reads the last value `v` under the limits' shared locks knows the records that
 * can ever commit are at most `c + (v − s) + 2 × margin` (the second margin: transactions in flight
 * at its own check, itself included). While that stays below the limit it inserts without
 * counting: the ceiling is `s + min(limit − 2 × margin − c)` over the bounded limits, and the
 * statement inserts only while `v` is below it. At the ceiling the create counts again (and learns
 * a new ceiling, or none near the limit). Positions are drawn by every workspace, so the ceiling
 * is met sooner than the limit: the shortcut stays safe and only grows shorter on a busy platform.
 *
 * The ceiling is keyed by the limits it was computed for: a plan change starts from a count.
 */
export class LimitHeadroom {
  private readonly ceilings = new Map<string, number>();
  private readonly checks: Counter<'way'>;

  constructor(registry: Registry) {
    this.checks = new Counter({
      name: 'cordon_record_limit_checks_total',
      help: 'Records-limit checks of creates: within a known headroom, counted shared, or counted exclusive',
      labelNames: ['way'],
      registers: [registry],
    });
  }

  static key(workspaceId: string, structure: string, limits: readonly RecordLimit[]): string {
    return [workspaceId, structure, ...limits.map((limit) => limit.limit ?? '-')].join('\u0000');
  }

  /**
   * The ceiling under which a create may skip counting, if this instance knows one (never for a
   * limit checked exclusively); the check is counted by the way it is made.
   */
  ceiling(key: string, limits: readonly RecordLimit[]): number | undefined {
    if (limits.some((limit) => limit.exclusive)) {
      this.checks.inc({ way: 'exclusive' });
      return undefined;
    }
    const ceiling = this.ceilings.get(key);
    this.checks.inc({ way: ceiling === undefined ? 'counted' : 'headroom' });
    return ceiling;
  }

  /** A counted create read `counts` (in the order of `limits`) at `position`: learn the room left. */
  counted(key: string, limits: readonly RecordLimit[], counts: readonly number[], position: number): void {
    let room = Infinity;
    limits.forEach((limit, index) => {
      if (limit.limit !== null) room = Math.min(room, limit.limit - 2 * limit.margin - counts[index]!);
    });
    this.ceilings.delete(key);
    if (room <= 0 || room === Infinity) return;
    if (this.ceilings.size >= headroomEntries) this.ceilings.delete(this.ceilings.keys().next().value!);
    this.ceilings.set(key, position + room);
  }

  /** The create met the ceiling: the next one counts. */
  spent(key: string): void {
    this.ceilings.delete(key);
  }
}
