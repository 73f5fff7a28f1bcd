import { v7 as uuidv7 } from 'uuid';
import type { Scope } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
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

const columns = (input: IdentityProviderInput) => ({
  ...input,
  jwksUri: input.jwksUri ?? null,
  jwks: input.jwks ?? null,
});

export class IdentityProvidersService extends WorkspaceConfiguration {
  constructor(options: ConstructorParameters<typeof WorkspaceConfiguration>[0]) {
    super(options, 'identity-provider');
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

  create(caller: Caller, input: IdentityProviderInput): Promise<IdentityProviderResponse> {
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
  replace(caller: Caller, id: string, input: IdentityProviderInput): Promise<IdentityProviderResponse> {
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
