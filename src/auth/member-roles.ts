import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import { ChangeClock } from '../db/change-clock.ts';
import type { ChangeBus } from '../db/changes.ts';
import { prepared, type Database } from '../db/database.ts';

export interface MemberRolesOptions {
  /** The most (workspace, user) pairs held. */
  max: number;
  /** A safety net: an entry is read again after this long even if no change was heard of. */
  ttlMs: number;
  /** Epoch milliseconds; `Date.now` unless a test moves it. */
  now?: () => number;
}

/**
 * The roles a user holds as a member of a workspace (none for a non-member), for providers with
 * `roleSource: members` or `both`, cached per (workspace, user) so the members table is not read
 * on every request. A change to one member drops that member's entry (on this instance at once,
 * on the others when its notification arrives); a member change that names no user, or a change
 * to the workspace, drops the workspace's entries. A lookup that a change overtook answers, but is
 * not cached.
 */
export class MemberRoles {
  private readonly cache: LRUCache<string, readonly string[]>;
  private readonly database: Database;
  /** A lookup that a change to its workspace overtook answers, but is not cached. */
  private readonly clock = new ChangeClock();

  constructor(database: Database, changes: ChangeBus, options: MemberRolesOptions = { max: 10_000, ttlMs: 60_000 }) {
    this.database = database;
    this.cache = new LRUCache({
      // Counted by size, not `max`, which would allocate room for every entry up front (2 ms).
      maxSize: options.max,
      sizeCalculation: () => 1,
      ttl: options.ttlMs,
      ...(options.now && { perf: { now: options.now }, ttlResolution: 0 }),
    });
    changes.subscribe((change) => {
      if (change.workspaceId === '*') {
        this.clock.heard('*');
        this.cache.clear();
      } else if (change.topic === 'member' && change.userId !== undefined) {
        this.clock.heard(change.workspaceId);
        this.cache.delete(key(change.workspaceId, change.userId));
      } else if (change.topic === 'member' || change.topic === 'workspace') {
        this.clock.heard(change.workspaceId);
        const prefix = key(change.workspaceId, '');
        for (const cached of this.cache.keys()) if (cached.startsWith(prefix)) this.cache.delete(cached);
      }
    });
  }

  /** The cached roles without a round trip through the event loop; undefined when not cached. */
  cached(workspaceId: string, userId: string): readonly string[] | undefined {
    return this.cache.get(key(workspaceId, userId));
  }

  async of(workspaceId: string, userId: string): Promise<readonly string[]> {
    const cacheKey = key(workspaceId, userId);
    const cached = this.cache.get(cacheKey);
    if (cached) return cached;
    const mark = this.clock.mark();
    const roles = await this.load(workspaceId, userId);
    if (this.clock.unchangedSince(mark, workspaceId)) this.cache.set(cacheKey, roles);
    return roles;
  }

  /** How many (workspace, user) pairs are held. */
  get size(): number {
    return this.cache.size;
  }

  /**
   * One statement inside the workspace's scope. `offset 0` keeps the planner from pulling the
   * subquery up, so `members` is read only after `scope` set it.
   */
  private async load(workspaceId: string, userId: string): Promise<readonly string[]> {
    const [row] = await this.database.inWorkspace(workspaceId, (scope) =>
      prepared(
        'cordon_member_roles',
        sql<{ roles: string[] }>`with ${scope}
          select m.roles from scope cross join lateral (
            select roles from members where workspace_id = scope.workspace_id and user_id = ${userId} offset 0) m`,
      ),
    );
    return Object.freeze(row?.roles ?? []);
  }
}

/** A workspace id is a uuid, so the first 37 characters always say whose entry it is. */
const key = (workspaceId: string, userId: string) => `${workspaceId} ${userId}`;
