import type { EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { ChangeBus } from '../../db/changes.ts';
import type { Actor } from '../../policy/access.ts';
import type { Orm } from '../../db/orm.ts';
import { withWorkspace } from '../../db/scope.ts';
import { WorkspaceConfiguration } from '../../db/workspace-configuration.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../workspaces/workspaces.schema.ts';
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
  constructor(orm: Orm, changes: ChangeBus) {
    super(orm, changes, 'identity-provider');
  }

  private async load(em: EntityManager, workspaceId: string, id: string): Promise<IdentityProvider> {
    const provider = isUuid(id)
      ? await em.findOne(IdentityProviderEntity, { id: id.toLowerCase(), workspaceId })
      : null;
    if (!provider)
      throw new ProblemError('identity_provider_not_found', `No identity provider "${id}" in this workspace`);
    return provider;
  }

  list(workspaceId: string): Promise<IdentityProviderResponse[]> {
    return withWorkspace(this.orm, workspaceId, async (em) =>
      (await em.find(IdentityProviderEntity, { workspaceId }, { orderBy: { createdAt: 'asc' } })).map(toResponse),
    );
  }

  get(workspaceId: string, id: string): Promise<IdentityProviderResponse> {
    return withWorkspace(this.orm, workspaceId, async (em) => toResponse(await this.load(em, workspaceId, id)));
  }

  create(actor: Actor, workspaceId: string, input: IdentityProviderInput): Promise<IdentityProviderResponse> {
    return this.change(workspaceId, actor, async (em) => {
      const provider = em.create(IdentityProviderEntity, { id: uuidv7(), workspaceId, ...columns(input) });
      await em.flush();
      return toResponse(provider);
    });
  }

  /** PUT replaces the whole configuration; the version moves on so cached tokens are re-verified. */
  replace(
    actor: Actor,
    workspaceId: string,
    id: string,
    input: IdentityProviderInput,
  ): Promise<IdentityProviderResponse> {
    return this.change(workspaceId, actor, async (em) => {
      const provider = await this.load(em, workspaceId, id);
      em.assign(provider, { ...columns(input), version: provider.version + 1 });
      await em.flush();
      return toResponse(provider);
    });
  }

  remove(actor: Actor, workspaceId: string, id: string): Promise<void> {
    return this.change(workspaceId, actor, async (em) => {
      const provider = await this.load(em, workspaceId, id);
      await em.nativeDelete(IdentityProviderEntity, { id: provider.id, workspaceId });
    });
  }
}
