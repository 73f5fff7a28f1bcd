import { sql } from 'kysely';
import { LRUCache } from 'lru-cache';
import { ChangeClock } from '../db/change-clock.ts';
import type { ChangeBus } from '../db/changes.ts';
import type { Database } from '../db/database.ts';
import type { IdentityProvider } from './identity-provider.ts';
import { isUuid, isWorkspaceReference } from '../json.ts';

/** The workspace's billing state, as enforcement needs it (see policy/standing.ts). */
export interface TenantBilling {
  plan: string;
  status: string;
  currentPeriodEnd: Date | null;
  graceEndsAt: Date | null;
  updatedAt: Date;
}

export interface TenantWorkspace {
  id: string;
  slug: string;
  status: string;
  plan: string;
  policySetVersion: number;
  billing: TenantBilling;
}

/** What the front door needs to know about the workspace named in a URL. */
export interface Tenant {
  workspace: TenantWorkspace;
  providers: IdentityProvider[];
}

const cacheMillis = 60_000;

/**
 * Caches workspace → trusted providers for the hot path. Entries are dropped on every relevant
 * change (locally at once, on other instances through the change bus) and expire anyway.
 * Anyone may name a workspace in a URL, without a token: a reference that could name none is
 * answered as unknown without a lookup, and unknown workspaces are remembered apart from the
 * known ones (a creation clears both), so no flood of names can evict a tenant.
 */
export class WorkspaceDirectory {
  /** Workspaces that exist. */
  private readonly found = new LRUCache<string, Tenant>({ max: 10_000, ttl: cacheMillis });
  /** References of no workspace: kept apart and fewer, so made-up names push out only each other. */
  private readonly missing = new LRUCache<string, true>({ max: 1_000, ttl: cacheMillis });
  private readonly database: Database;
  /** The changes it follows; the front door's other caches follow them too. */
  readonly changes: ChangeBus;
  /** A lookup that a change to its workspace (or to all) overtook answers, but is not cached. */
  private readonly clock = new ChangeClock();

  constructor(database: Database, changes: ChangeBus) {
    this.database = database;
    this.changes = changes;
    changes.subscribe((change) => {
      if (change.topic === 'workspace' || change.workspaceId === '*') {
        // A slug may have moved, or a workspace come to be: every reference may answer otherwise.
        this.clock.heard('*');
        this.found.clear();
        this.missing.clear();
      } else if (change.topic === 'identity-provider' || change.topic === 'policy' || change.topic === 'billing') {
        this.clock.heard(change.workspaceId);
        this.forget(change.workspaceId);
      }
    });
  }

  /** The cached answer without a round trip through the event loop; `null` when not cached. */
  cached(reference: string): Tenant | undefined | null {
    if (!isWorkspaceReference(reference)) return undefined;
    const key = this.key(reference);
    const found = this.found.get(key);
    if (found) return found;
    return this.missing.get(key) ? undefined : null;
  }

  async resolve(reference: string): Promise<Tenant | undefined> {
    const cached = this.cached(reference);
    if (cached !== null) return cached;
    const key = this.key(reference);
    const mark = this.clock.mark();
    const tenant = await this.load(key);
    if (this.clock.unchangedSince(mark, tenant?.workspace.id)) {
      if (tenant) this.found.set(key, tenant);
      else this.missing.set(key, true);
    }
    return tenant;
  }

  /** How many answers are held, of each kind. */
  held(): { found: number; missing: number } {
    return { found: this.found.size, missing: this.missing.size };
  }

  private key(reference: string): string {
    return isUuid(reference) ? reference.toLowerCase() : reference;
  }

  private forget(workspaceId: string): void {
    for (const [key, tenant] of this.found.entries()) {
      if (tenant.workspace.id === workspaceId) this.found.delete(key);
    }
  }

  /**
   * One statement of the same shape whether or not the workspace exists, so an unknown workspace
   * costs what a known one does (no enumeration by timing). The providers are read in the
   * workspace's scope, set by the statement itself; for an unknown workspace the scope is empty
   * and row-level security shows nothing.
   */
  private async load(reference: string): Promise<Tenant | undefined> {
    const target = isUuid(reference)
      ? sql`select id from workspaces where id = ${reference}::uuid`
      : sql`select id from workspaces where slug = ${reference}`;
    const [row] = await this.database.inWorkspace(
      target,
      (scope) => sql<LoadedRow>`with ${scope}
        select w.id, w.slug, w.status, w.policy_set_version, coalesce(providers.list, '[]'::json) as providers,
          coalesce(b.plan, 'free') as plan, coalesce(b.status, 'none') as billing_status, b.current_period_end,
          b.grace_ends_at, coalesce(b.updated_at, w.created_at) as billing_updated_at
        from scope
        left join workspaces w on w.id = scope.workspace_id
        left join lateral (
          select * from workspace_billing wb where wb.workspace_id = scope.workspace_id offset 0
        ) b on true
        left join lateral (
          select json_agg(${providerJson} order by p.created_at, p.id) as list
          from identity_providers p where p.workspace_id = scope.workspace_id
        ) providers on true`,
    );
    if (!row?.id) return undefined;
    return {
      workspace: {
        id: row.id,
        slug: row.slug,
        status: row.status,
        plan: row.plan,
        policySetVersion: Number(row.policy_set_version),
        billing: {
          plan: row.plan,
          status: row.billing_status,
          currentPeriodEnd: row.current_period_end,
          graceEndsAt: row.grace_ends_at,
          updatedAt: row.billing_updated_at,
        },
      },
      providers: row.providers.map((provider) => ({
        ...provider,
        createdAt: new Date(provider.createdAt),
        updatedAt: new Date(provider.updatedAt),
      })),
    };
  }
}

/** An identity provider as `IdentityProvider` names its properties (timestamps as JSON text). */
const providerJson = sql`json_build_object(
  'id', p.id, 'workspaceId', p.workspace_id, 'name', p.name, 'type', p.type, 'issuer', p.issuer, 'jwksUri', p.jwks_uri,
  'jwks', p.jwks, 'audiences', p.audiences, 'authorizedParties', p.authorized_parties, 'algorithms', p.algorithms,
  'clockToleranceSeconds', p.clock_tolerance_seconds, 'orgId', p.org_id, 'claims', p.claims, 'roleMap', p.role_map,
  'roleSource', p.role_source, 'allowPendingSessions', p.allow_pending_sessions, 'version', p.version,
  'createdAt', p.created_at, 'updatedAt', p.updated_at)`;

interface LoadedRow {
  id: string | null;
  slug: string;
  status: string;
  plan: string;
  billing_status: string;
  current_period_end: Date | null;
  grace_ends_at: Date | null;
  billing_updated_at: Date;
  policy_set_version: string;
  providers: (Omit<IdentityProvider, 'createdAt' | 'updatedAt'> & { createdAt: string; updatedAt: string })[];
}
