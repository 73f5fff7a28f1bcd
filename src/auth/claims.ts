import type { JWTPayload } from 'jose';
import type { IdentityProvider } from './identity-provider.ts';
import { storable } from '../json.ts';

type ProviderClaims = Pick<IdentityProvider, 'type' | 'claims' | 'roleMap'>;

export interface MappedClaims {
  subject: string | undefined;
  orgId: string | undefined;
  /** Roles from the token, after the preset's clean-up and the provider's roleMap. */
  roles: string[];
  email: string | undefined;
}

/**
 * Reads a claim by path. A claim whose whole name equals the path wins (`https://x.com/roles`,
 * `org.id` as one name); otherwise the path is walked on dots (`o.rol`). Names containing a
 * slash are never split.
 */
export function readClaim(payload: Record<string, unknown>, path: string): unknown {
  if (Object.hasOwn(payload, path)) return payload[path];
  if (path.includes('/')) return undefined;
  let value: unknown = payload;
  for (const segment of path.split('.')) {
    if (typeof value !== 'object' || value === null || Array.isArray(value) || !Object.hasOwn(value, segment))
      return undefined;
    value = (value as Record<string, unknown>)[segment];
  }
  return value;
}

/**
 * A usable claim string: non-empty and storable. PostgreSQL text cannot hold NUL (reaching a query
 * parameter it breaks the statement, not just the match) and a lone surrogate would be stored
 * mangled, so the decision log would name someone else.
 */
const usable = (value: unknown): value is string => typeof value === 'string' && value.length > 0 && storable(value);

const asString = (value: unknown) => (usable(value) ? value : undefined);

const asRoles = (value: unknown): string[] => {
  if (typeof value === 'string') return usable(value) ? [value] : [];
  if (Array.isArray(value)) return value.filter(usable);
  return [];
};

interface ClaimPaths {
  subject: string;
  orgId: string | undefined;
  roles: string | undefined;
  email: string;
}

/** Clerk session tokens: v2 (`v: 2`) nests the organization under `o`; v1 uses `org_*` claims. */
function pathsOf(provider: ProviderClaims, clerkVersion: 1 | 2): ClaimPaths {
  const preset =
    provider.type === 'clerk'
      ? clerkVersion === 2
        ? { orgId: 'o.id', roles: 'o.rol' }
        : { orgId: 'org_id', roles: 'org_role' }
      : provider.type === 'auth0'
        ? { orgId: 'org_id', roles: undefined }
        : { orgId: undefined, roles: undefined };
  return {
    subject: provider.claims.subject ?? 'sub',
    orgId: provider.claims.orgId ?? preset.orgId,
    roles: provider.claims.roles ?? preset.roles,
    email: provider.claims.email ?? 'email',
  };
}

type Mapper = (payload: JWTPayload) => MappedClaims;

/** A provider's mapping, worked out once: paths chosen, role map looked up without copying. */
function compileMapper(provider: ProviderClaims): Mapper {
  const roleMap = provider.roleMap;
  const mapsRoles = Object.keys(roleMap).length > 0;
  const forVersion = (version: 1 | 2): Mapper => {
    const paths = pathsOf(provider, version);
    return (payload) => {
      let roles = paths.roles ? asRoles(readClaim(payload, paths.roles)) : [];
      if (provider.type === 'clerk') roles = roles.map((role) => (role.startsWith('org:') ? role.slice(4) : role));
      if (mapsRoles)
        roles = roles.flatMap((role) => (Object.hasOwn(roleMap, role) ? [roleMap[role] ?? []].flat() : [role]));
      return {
        subject: asString(readClaim(payload, paths.subject)),
        orgId: asString(paths.orgId ? readClaim(payload, paths.orgId) : undefined),
        roles: roles.length > 1 ? [...new Set(roles)] : roles,
        email: asString(readClaim(payload, paths.email)),
      };
    };
  };
  const v1 = forVersion(1);
  const v2 = forVersion(2);
  return provider.type === 'clerk' ? (payload) => (payload.v === 2 ? v2 : v1)(payload) : v1;
}

// Providers are immutable snapshots (a change loads new objects), so a mapper per object is safe.
const mappers = new WeakMap<ProviderClaims, Mapper>();

export function mapClaims(provider: ProviderClaims, payload: JWTPayload): MappedClaims {
  let mapper = mappers.get(provider);
  if (!mapper) {
    mapper = compileMapper(provider);
    mappers.set(provider, mapper);
  }
  return mapper(payload);
}
