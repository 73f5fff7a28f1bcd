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
  private readonly margin: number;
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
