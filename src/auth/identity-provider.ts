/**
 * A trusted identity provider as the front door reads it. The identity-providers feature owns the
 * table (its entity must stay assignable to this shape, which it checks); the front door only
 * reads it, through the workspace directory.
 */
export interface IdentityProvider {
  id: string;
  workspaceId: string;
  name: string;
  type: 'clerk' | 'auth0' | 'oidc';
  issuer: string;
  jwksUri?: string | null | undefined;
  jwks?: { keys: Record<string, unknown>[] } | null | undefined;
  audiences: string[];
  authorizedParties: string[];
  algorithms: string[];
  clockToleranceSeconds: number;
  orgId: string;
  claims: { subject?: string; orgId?: string; roles?: string; email?: string };
  roleMap: Record<string, string | string[]>;
  roleSource: 'claims' | 'members' | 'both';
  allowPendingSessions: boolean;
  version: number;
  createdAt: Date;
  updatedAt: Date;
}
