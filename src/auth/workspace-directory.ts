import { LRUCache } from 'lru-cache';
import type { ChangeBus } from '../db/changes.ts';
import type { Orm } from '../db/orm.ts';
import { withWorkspace } from '../db/scope.ts';
import { IdentityProviderEntity, type IdentityProvider } from '../features/identity-providers/identity-provider.entity.ts';
import { WorkspaceEntity } from '../features/workspaces/workspace.entity.ts';
import { isUuid } from '../features/workspaces/workspaces.schema.ts';

export interface TenantWorkspace {
  id: string;
  slug: string;
  status: string;
  plan: string;
  policySetVersion: number;
}

/** What the front door needs to know about the workspace named in a URL. */
export interface Tenant {
  workspace: TenantWorkspace;
  providers: IdentityProvider[];
}

const cacheMillis = 60_000;
const missingMillis = 5_000;

/**
 * Caches workspace → trusted providers for the hot path. Entries are dropped on every relevant
 * change (locally at once, on other instances through the change bus) and expire anyway.
 */
export class WorkspaceDirectory {
  private readonly cache = new LRUCache<string, Tenant | 'missing'>({ max: 10_000, ttl: cacheMillis });
  private readonly orm: Orm;

  constructor(orm: Orm, changes: ChangeBus) {
    this.orm = orm;
    changes.subscribe((change) => {
      if (change.topic === 'workspace' || change.workspaceId === '*') this.cache.clear();
      else if (change.topic === 'identity-provider' || change.topic === 'policy') this.forget(change.workspaceId);
    });
  }

  /** The cached answer without a round trip through the event loop; `null` when not cached. */
  cached(reference: string): Tenant | undefined | null {
    const cached = this.cache.get(this.key(reference));
    if (cached === undefined) return null;
    return cached === 'missing' ? undefined : cached;
  }

  async resolve(reference: string): Promise<Tenant | undefined> {
    const cached = this.cached(reference);
    if (cached !== null) return cached;
    const key = this.key(reference);
    const tenant = await this.load(key);
    this.cache.set(key, tenant ?? 'missing', tenant ? {} : { ttl: missingMillis });
    return tenant;
  }

  private key(reference: string): string {
    return isUuid(reference) ? reference.toLowerCase() : reference;
  }

  private forget(workspaceId: string): void {
    for (const [key, value] of this.cache.entries()) {
      if (value !== 'missing' && value.workspace.id === workspaceId) this.cache.delete(key);
    }
  }

  private async load(reference: string): Promise<Tenant | undefined> {
    const em = this.orm.em.fork();
    const workspace = await em.findOne(WorkspaceEntity, isUuid(reference) ? { id: reference } : { slug: reference });
    if (!workspace) return undefined;
    const providers = await withWorkspace(this.orm, workspace.id, (scoped) =>
      scoped.find(IdentityProviderEntity, { workspaceId: workspace.id }, { orderBy: { createdAt: 'asc' } }),
    );
    return {
      workspace: {
        id: workspace.id,
        slug: workspace.slug,
        status: workspace.status,
        plan: workspace.plan,
        policySetVersion: Number(workspace.policySetVersion),
      },
      // Plain copies: entity property accessors are measurably slow on the hot path.
      providers: providers.map((provider) => ({ ...provider })),
    };
  }
}
