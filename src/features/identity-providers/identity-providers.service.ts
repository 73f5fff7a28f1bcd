import type { EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import type { ChangeBus } from '../../db/changes.ts';
import type { Actor } from '../../policy/access.ts';
import type { Orm } from '../../db/orm.ts';
import { withWorkspace } from '../../db/scope.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../workspaces/workspaces.schema.ts';
import type { WorkspacesService } from '../workspaces/workspaces.service.ts';
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

const columns = (input: IdentityProviderInput) => ({ ...input, jwksUri: input.jwksUri ?? null, jwks: input.jwks ?? null });

export class IdentityProvidersService {
  private readonly orm: Orm;
  private readonly workspaces: WorkspacesService;
  private readonly changes: ChangeBus;

  constructor(orm: Orm, workspaces: WorkspacesService, changes: ChangeBus) {
    this.orm = orm;
    this.workspaces = workspaces;
    this.changes = changes;
  }

  /** Every query runs inside the workspace's RLS scope; a change is announced in its transaction. */
  private async inWorkspace<T>(reference: string, work: (em: EntityManager, workspaceId: string) => Promise<T>, actor?: Actor): Promise<T> {
    const workspace = await this.workspaces.find(this.orm.em.fork(), reference);
    const scoped = (transaction: (em: EntityManager) => Promise<T>) => withWorkspace(this.orm, workspace.id, transaction);
    if (!actor) return scoped((em) => work(em, workspace.id));
    return this.changes.committing({ topic: 'identity-provider', workspaceId: workspace.id }, scoped, async (em) => {
      const value = await work(em, workspace.id);
      await actor.audit(em);
      return value;
    });
  }

  private async load(em: EntityManager, workspaceId: string, id: string): Promise<IdentityProvider> {
    const provider = isUuid(id) ? await em.findOne(IdentityProviderEntity, { id: id.toLowerCase(), workspaceId }) : null;
    if (!provider) throw new ProblemError('identity_provider_not_found', `No identity provider "${id}" in this workspace`);
    return provider;
  }

  list(workspace: string): Promise<IdentityProviderResponse[]> {
    return this.inWorkspace(workspace, async (em, workspaceId) =>
      (await em.find(IdentityProviderEntity, { workspaceId }, { orderBy: { createdAt: 'asc' } })).map(toResponse),
    );
  }

  get(workspace: string, id: string): Promise<IdentityProviderResponse> {
    return this.inWorkspace(workspace, async (em, workspaceId) => toResponse(await this.load(em, workspaceId, id)));
  }

  create(actor: Actor, workspace: string, input: IdentityProviderInput): Promise<IdentityProviderResponse> {
    return this.inWorkspace(
      workspace,
      async (em, workspaceId) => {
        const provider = em.create(IdentityProviderEntity, { id: uuidv7(), workspaceId, ...columns(input) });
        await em.flush();
        return toResponse(provider);
      },
      actor,
    );
  }

  /** PUT replaces the whole configuration; the version moves on so cached tokens are re-verified. */
  replace(actor: Actor, workspace: string, id: string, input: IdentityProviderInput): Promise<IdentityProviderResponse> {
    return this.inWorkspace(
      workspace,
      async (em, workspaceId) => {
        const provider = await this.load(em, workspaceId, id);
        em.assign(provider, { ...columns(input), version: provider.version + 1 });
        await em.flush();
        return toResponse(provider);
      },
      actor,
    );
  }

  remove(actor: Actor, workspace: string, id: string): Promise<void> {
    return this.inWorkspace(
      workspace,
      async (em, workspaceId) => {
        const provider = await this.load(em, workspaceId, id);
        await em.nativeDelete(IdentityProviderEntity, { id: provider.id, workspaceId });
      },
      actor,
    );
  }
}
