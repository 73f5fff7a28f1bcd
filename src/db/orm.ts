import { MikroORM } from '@mikro-orm/postgresql';
import type { Logger } from 'pino';
import { IdentityProviderEntity } from '../features/identity-providers/identity-provider.entity.ts';
import { PolicyEntity } from '../features/policies/policy.entity.ts';
import { StructureEntity } from '../features/structures/structure.entity.ts';
import { WorkspaceEntity } from '../features/workspaces/workspace.entity.ts';

/** Every entity, imported once: MikroORM refuses a module it sees twice. */
export const entities = [WorkspaceEntity, PolicyEntity, IdentityProviderEntity, StructureEntity];

export type Orm = MikroORM;

/** The serving ORM: connects as the role that owns no table, so RLS always applies. */
export async function createOrm(options: { url: string; poolSize: number }, logger: Logger): Promise<Orm> {
  return MikroORM.init({
    clientUrl: options.url,
    entities,
    pool: { min: 0, max: options.poolSize },
    allowGlobalContext: false,
    logger: (message) => logger.debug(message),
  });
}
