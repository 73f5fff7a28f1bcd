import { LRUCache } from 'lru-cache';

/**
 * When changes were heard, per workspace and for every workspace, for caches that must not keep a
 * load that a change overtook (it may hold what the change replaced): `mark()` when a load starts,
 * `unchangedSince(mark, workspaceId)` when it ends. Only a change to that workspace (or to all)
 * counts: other tenants' changes, which arrive all the time on a busy instance, do not keep a
 * workspace's entries from being cached.
 */
export class ChangeClock {
  private now = 0;
  /** The last change to every workspace, or the moment a workspace's own moment was forgotten. */
  private all = 0;
  private readonly last = new LRUCache<string, number>({
    max: 10_000,
    // A forgotten moment could read as "never changed": forgetting one counts as a change to all.
    dispose: (_moment, _workspace, reason) => {
      if (reason === 'evict') this.all = this.now;
    },
  });

  /** A change heard, to one workspace or to all (`'*'`). */
  heard(workspaceId: string): void {
    this.now += 1;
    if (workspaceId === '*') this.all = this.now;
    else this.last.set(workspaceId, this.now);
  }

  /** The moment a load starts. */
  mark(): number {
    return this.now;
  }

  /** No change to this workspace, nor to all, since `mark` (without a workspace: none to all). */
  unchangedSince(mark: number, workspaceId?: string): boolean {
    if (this.all > mark) return false;
    return workspaceId === undefined || (this.last.get(workspaceId) ?? 0) <= mark;
  }
}
