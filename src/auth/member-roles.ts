import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
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
  /**
   * Counts the changes seen, for every workspace and per workspace: a lookup that a change to its
   * workspace (or to all) overtook answers, but is not cached. Changes elsewhere do not count.
   */
  private changesToAll = 0;
  private readonly changesTo = new LRUCache<string, number>({
    max: 10_000,
    // A count forgotten could read as unchanged: forgetting one counts as a change to all.
    dispose: (_count, _workspace, reason) => {
      if (reason === 'evict') this.changesToAll += 1;
    },
  });

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
        this.changesToAll += 1;
        this.cache.clear();
      } else if (change.topic === 'member' && change.userId !== undefined) {
        this.seen(change.workspaceId);
        this.cache.delete(key(change.workspaceId, change.userId));
      } else if (change.topic === 'member' || change.topic === 'workspace') {
        this.seen(change.workspaceId);
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
    const before = this.changesSeenBy(workspaceId);
    const roles = await this.load(workspaceId, userId);
    if (this.changesSeenBy(workspaceId) === before) this.cache.set(cacheKey, roles);
    return roles;
  }

  private seen(workspaceId: string): void {
    this.changesTo.set(workspaceId, (this.changesTo.get(workspaceId) ?? 0) + 1);
  }

  private changesSeenBy(workspaceId: string): string {
    return `${this.changesToAll}:${this.changesTo.get(workspaceId) ?? 0}`;
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
