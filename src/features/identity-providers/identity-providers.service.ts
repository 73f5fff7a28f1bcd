import { v7 as uuidv7 } from 'uuid';
import type { Scope } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
import type { IdentityProvider as TrustedProvider } from '../../auth/identity-provider.ts';
import type { Caller } from '../../policy/access.ts';
import { WorkspaceConfiguration } from '../../policy/workspace-configuration.ts';
import { IdentityProviderEntity, type IdentityProvider } from './identity-provider.entity.ts';
import type { IdentityProviderInput, IdentityProviderResponse } from './identity-providers.schema.ts';

export function toResponse(provider: IdentityProvider): IdentityProviderResponse {
  return {
    id: provider.id,
    workspaceId: provider.workspaceId,
    name: provider.name,
    type: provider.type,
    issuer: provider.issuer,
    jwksUri: provider.jwksUri ?? null,
    jwks: provider.jwks ?? null,
    audiences: provider.audiences,
    authorizedParties: provider.authorizedParties,
    algorithms: provider.algorithms,
    clockToleranceSeconds: provider.clockToleranceSeconds,
    orgId: provider.orgId,
    claims: provider.claims,
    roleMap: provider.roleMap,
    roleSource: provider.roleSource,
    allowPendingSessions: provider.allowPendingSessions,
    version: provider.version,
    createdAt: provider.createdAt.toISOString(),
    updatedAt: provider.updatedAt.toISOString(),
  };
}

const columns = ({ proofToken: _proof, ...input }: IdentityProviderInput) => ({
  ...input,
  jwksUri: input.jwksUri ?? null,
  jwks: input.jwks ?? null,
});

/** Checks that a token belongs to the organization a provider configuration binds (the front door's rules). */
export interface BindingProof {
  proveOrganization(provider: TrustedProvider, token: string): Promise<void>;
}

export class IdentityProvidersService extends WorkspaceConfiguration {
  private readonly proof: BindingProof;

  constructor(options: ConstructorParameters<typeof WorkspaceConfiguration>[0] & { proof: BindingProof }) {
    super(options, 'identity-provider');
    this.proof = options.proof;
  }

  /**
   * Binding (issuer, orgId) takes proof, so a workspace admin cannot claim another organization's
   * binding before its owner does, nor learn whether it is bound: a token of that org, verified
   * against the configuration being saved and with the keys its issuer publishes, before anything
   * is read or written. The platform admin (who provisions tenants) needs none.
   */
  private async proven(caller: Caller, input: IdentityProviderInput): Promise<void> {
    if (!caller.ability) return;
    if (!input.proofToken) {
      throw new ProblemError(
        'binding_proof_required',
        'Send proofToken: a current token of this organization signed by this issuer (your own session token)',
      );
    }
    const now = new Date();
    const candidate = {
      // A key set of its own: never mistaken for a stored provider's cached keys.
      id: `proof-${uuidv7()}`,
      workspaceId: caller.workspaceId,
      ...columns(input),
      version: 0,
      createdAt: now,
      updatedAt: now,
    };
    try {
      await this.proof.proveOrganization(candidate, input.proofToken);
    } catch (error) {
      if (!(error instanceof ProblemError) || error.code === 'identity_provider_unavailable') throw error;
      throw new ProblemError('binding_proof_invalid', `proofToken: ${error.message}`);
    }
  }

  private async load(scope: Scope, id: string): Promise<IdentityProvider> {
    const provider = isUuid(id)
      ? await scope.em.findOne(IdentityProviderEntity, { id: id.toLowerCase(), workspaceId: scope.workspaceId })
      : null;
    if (!provider)
      throw new ProblemError('identity_provider_not_found', `No identity provider "${id}" in this workspace`);
    return provider;
  }

  list(caller: Caller): Promise<IdentityProviderResponse[]> {
    return this.read(caller, async (scope) =>
      (
        await scope.em.find(
          IdentityProviderEntity,
          { workspaceId: scope.workspaceId },
          { orderBy: { createdAt: 'asc' } },
        )
      ).map(toResponse),
    );
  }

  get(caller: Caller, id: string): Promise<IdentityProviderResponse> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      return toResponse(await this.load(scope, id));
    });
  }

  async create(caller: Caller, input: IdentityProviderInput): Promise<IdentityProviderResponse> {
    await this.proven(caller, input);
    return this.change(caller, async (scope, ruling) => {
      const provider = scope.em.create(IdentityProviderEntity, {
        id: uuidv7(),
        workspaceId: scope.workspaceId,
        ...columns(input),
      });
      ruling.refine({ resourceId: provider.id });
      await scope.em.flush();
      return toResponse(provider);
    });
  }

  /** PUT replaces the whole configuration; the version moves on so cached tokens are re-verified. */
  async replace(caller: Caller, id: string, input: IdentityProviderInput): Promise<IdentityProviderResponse> {
    await this.proven(caller, input);
    return this.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const provider = await this.load(scope, id);
      scope.em.assign(provider, { ...columns(input), version: provider.version + 1 });
      await scope.em.flush();
      return toResponse(provider);
    });
  }

  remove(caller: Caller, id: string): Promise<void> {
    return this.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const provider = await this.load(scope, id);
      await scope.em.nativeDelete(IdentityProviderEntity, { id: provider.id, workspaceId: scope.workspaceId });
    });
  }
}
