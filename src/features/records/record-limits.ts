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
/** A ceiling is used this long after its count, then the create counts again. */
const headroomMillis = 10_000;

/** A headroom learned from a count: insert positions from `base` (the count's) up to `ceiling`. */
export interface Headroom {
  base: number;
  ceiling: number;
  learnedAt: number;
}

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
 * statement inserts only while `s ≤ v <` ceiling. At the ceiling the create counts again (and
 * learns a new ceiling, or none near the limit). Positions are drawn by every workspace, so the
 * ceiling is met sooner than the limit: the shortcut stays safe and only grows shorter on a busy
 * platform.
 *
 * The argument needs a sequence that never goes back. A position below the base (a restored
 * backup, a sequence restarted) or none at all makes the create count; a lost database
 * connection (a restart, a failover) forgets every ceiling; and a ceiling is used for
 * `headroomMillis` at most. It is keyed by the limits it was computed for: a plan change starts
 * from a count.
 */
export class LimitHeadroom {
  private readonly headrooms = new Map<string, Headroom>();
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
   * The headroom within which a create may skip counting, if this instance knows one (never when
   * `count` is set, nor for a limit checked exclusively); the check is counted by the way it is made.
   */
  find(key: string, limits: readonly RecordLimit[], count: boolean): Headroom | undefined {
    if (limits.some((limit) => limit.exclusive)) {
      this.checks.inc({ way: 'exclusive' });
      return undefined;
    }
    let headroom = count ? undefined : this.headrooms.get(key);
    if (headroom && Date.now() - headroom.learnedAt > headroomMillis) {
      this.headrooms.delete(key);
      headroom = undefined;
    }
    this.checks.inc({ way: headroom ? 'headroom' : 'counted' });
    return headroom;
  }

  /**
   * A counted create read `counts` (in the order of `limits`) at `position`: learn the room left,
   * unless a higher ceiling is known (each ceiling is a bound of its own; the higher one holds too).
   */
  counted(key: string, limits: readonly RecordLimit[], counts: readonly number[], position: number): void {
    let room = Infinity;
    limits.forEach((limit, index) => {
      if (limit.limit !== null) room = Math.min(room, limit.limit - 2 * limit.margin - counts[index]!);
    });
    if (room <= 0 || room === Infinity) return;
    const known = this.headrooms.get(key);
    if (known && known.ceiling >= position + room) return;
    this.headrooms.delete(key);
    if (this.headrooms.size >= headroomEntries) this.headrooms.delete(this.headrooms.keys().next().value!);
    this.headrooms.set(key, { base: position, ceiling: position + room, learnedAt: Date.now() });
  }

  /** Whether a create's position is outside the headroom it was given; if so, that headroom is forgotten. */
  spent(key: string, headroom: Headroom, position: number | null): boolean {
    if (position !== null && position >= headroom.base && position < headroom.ceiling) return false;
    if (this.headrooms.get(key) === headroom) this.headrooms.delete(key);
    return true;
  }

  /** The database may have lost what the ceilings were learned from (a restart, a failover). */
  forget(): void {
    this.headrooms.clear();
  }
}
