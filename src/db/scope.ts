import type { EntityManager } from '@mikro-orm/postgresql';
import type { Orm } from './orm.ts';

/**
 * Runs one unit of work inside a workspace's row-level-security scope. The setting is local to
 * the transaction, so it cannot leak to the next user of the pooled connection, and nothing run
 * through `fn` can reach another workspace's rows.
 */
export async function withWorkspace<T>(
  orm: Orm,
  workspaceId: string,
  fn: (em: EntityManager) => Promise<T>,
): Promise<T> {
  return orm.em.fork().transactional(async (em) => {
    await em.execute("select set_config('cordon.workspace_id', ?, true)", [workspaceId]);
    return fn(em);
  });
}
