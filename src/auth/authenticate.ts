import type { RequestHandler } from 'express';
import type { Database } from '../db/database.ts';
import { ProblemError } from '../http/errors.ts';
import { bearerToken } from './admin.ts';
import { mapClaims } from './claims.ts';
import type { IdentityProvider } from './identity-provider.ts';
import { MemberRoles } from './member-roles.ts';
import type { Principal } from './principal.ts';
import { tokenProblem, type TokenVerifier } from './tokens.ts';
import type { Tenant, TenantWorkspace, WorkspaceDirectory } from './workspace-directory.ts';

declare module 'express-serve-static-core' {
  interface Request {
    /** Set by the front door on every tenant route. */
    principal?: Principal;
    workspace?: TenantWorkspace;
  }
}

/** Steps 1–2 of the enforcement order: authenticate, then resolve the workspace context. */
export class Authenticator {
  private readonly directory: WorkspaceDirectory;
  private readonly verifier: TokenVerifier;
  private readonly memberRoles: MemberRoles;

  /** Member roles are cached, and follow the changes the directory follows unless given. */
  constructor(
    directory: WorkspaceDirectory,
    verifier: TokenVerifier,
    database: Database,
    memberRoles = new MemberRoles(database, directory.changes),
  ) {
    this.directory = directory;
    this.verifier = verifier;
    this.memberRoles = memberRoles;
  }

  /**
   * The principal's email is the one the token itself asserts (never one from the members
   * table), and only if the token does not say it is unverified (`email_verified: false`).
   */
  /** See `TokenVerifier.proveOrganization`: binding an (issuer, orgId) takes a token of that org. */
  proveOrganization(provider: IdentityProvider, token: string): Promise<void> {
    return this.verifier.proveOrganization(provider, token);
  }

  async authenticate(
    workspaceReference: string,
    token: string | undefined,
  ): Promise<{ principal: Principal; tenant: Tenant }> {
    if (!token) throw tokenProblem('token_missing', 'Send the user token as a Bearer token');
    const cached = this.directory.cached(workspaceReference);
    const tenant = cached === null ? await this.directory.resolve(workspaceReference) : cached;
    const { tenant: verifiedTenant, provider, payload } = await this.verifier.verify(tenant, token);
    const claims = mapClaims(provider, payload);
    if (!claims.subject) throw tokenProblem('token_claims', 'The token has no subject claim');
    const subject = claims.subject;
    if (claims.orgId !== provider.orgId) {
      throw new ProblemError('org_mismatch', "The token's organization is not bound to this workspace");
    }
    if (verifiedTenant.workspace.status !== 'active') throw new ProblemError('workspace_suspended');

    let roles = provider.roleSource === 'members' ? [] : claims.roles;
    // The email is the token's own (a member row's email is editable and proves nothing), and
    // only if the token does not say it is unverified: policies may match on it.
    const email = payload.email_verified === false || payload.email_verified === 'false' ? undefined : claims.email;
    if (provider.roleSource !== 'claims') {
      const workspaceId = verifiedTenant.workspace.id;
      const memberRoles =
        this.memberRoles.cached(workspaceId, subject) ?? (await this.memberRoles.of(workspaceId, subject));
      roles = roles.length ? [...new Set([...roles, ...memberRoles])] : [...memberRoles];
    }
    const principal: Principal = {
      id: subject,
      workspaceId: verifiedTenant.workspace.id,
      roles,
      provider: provider.name,
      ...(email ? { email } : {}),
      claims: payload,
    };
    return { principal, tenant: verifiedTenant };
  }

  /**
   * Express guard for routes with a `:ws` parameter. `queryToken`: the token may come as the
   * `access_token` query parameter instead (event streams: a browser's EventSource sends no
   * headers). Request URLs are never logged.
   */
  guard(options: { queryToken?: boolean } = {}): RequestHandler {
    return async (request, _response, next) => {
      const fromQuery = options.queryToken ? request.query.access_token : undefined;
      const { principal, tenant } = await this.authenticate(
        String(request.params.ws ?? ''),
        bearerToken(request.headers) ?? (typeof fromQuery === 'string' ? fromQuery : undefined),
      );
      request.principal = principal;
      request.workspace = tenant.workspace;
      next();
    };
  }
}
