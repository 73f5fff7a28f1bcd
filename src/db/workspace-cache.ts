import { LRUCache } from 'lru-cache';
import { ChangeClock } from './change-clock.ts';
import type { Change, ChangeBus } from './changes.ts';

/** Entries expire even without a change heard: a missed notification heals within this. */
const cacheMillis = 60_000;

/**
 * Values read from a workspace's rows, cached per (workspace, key) and dropped on every instance
 * when a change of one of `topics` (or of the workspace itself) is heard. A load that a change
 * overtook answers its caller but is not cached: it may hold what the change replaced.
 */
export class WorkspaceCache<V extends object> {
  private readonly cache: LRUCache<string, V>;
  /** A load that a change to its workspace overtook answers, but is not cached. */
  private readonly clock = new ChangeClock();

  constructor(changes: ChangeBus, topics: readonly Change['topic'][], max: number) {
    this.cache = new LRUCache<string, V>({ max, ttl: cacheMillis });
    changes.subscribe((change) => {
      if (change.workspaceId === '*') {
        this.clock.heard('*');
        this.cache.clear();
      } else if (change.topic === 'workspace' || topics.includes(change.topic)) this.forget(change.workspaceId);
    });
  }

  /** The cached value, or `load`'s (cached unless a change came meanwhile); undefined is not cached. */
  async get(workspaceId: string, key: string, load: () => Promise<V | undefined>): Promise<V | undefined> {
    const cacheKey = `${workspaceId}:${key}`;
    const cached = this.cache.get(cacheKey);
    if (cached) return cached;
    const mark = this.clock.mark();
    const value = await load();
    if (value !== undefined && this.clock.unchangedSince(mark, workspaceId)) this.cache.set(cacheKey, value);
    return value;
  }

  /** Drops what is cached of one workspace (a change this instance has not heard of yet, found by a write). */
  forget(workspaceId: string): void {
    this.clock.heard(workspaceId);
    const prefix = `${workspaceId}:`;
    for (const key of this.cache.keys()) if (key.startsWith(prefix)) this.cache.delete(key);
  }
}
