import { MikroORM } from '@mikro-orm/postgresql';
import pg from 'pg';
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

/**
 * Plain `pg` for the hot paths (decisions, records), as the same serving role. A bounded wait for
 * a connection: running out is a 503, never a request that hangs. A connection the server drops
 * (restart, failover, idle timeout) is an `'error'` event, and one without a listener would take
 * the process down: the pool discards the connection, the query in flight rejects on its own, so
 * there is only something to log (the message, never the connection string).
 */
export function createServingPool(orm: Orm, logger: Logger): pg.Pool {
  const pool = new pg.Pool({ connectionString: orm.config.get('clientUrl'), max: 6, connectionTimeoutMillis: 5_000 });
  const dropped = (error: Error) =>
    logger.warn({ code: (error as { code?: string }).code }, `PostgreSQL connection dropped: ${error.message}`);
  pool.on('error', dropped);
  pool.on('connect', (client) => client.on('error', dropped));
  return pool;
}
