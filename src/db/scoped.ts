import type pg from 'pg';

/**
 * Plain-`pg` access inside a workspace's row-level-security scope, for the hot paths (records,
 * the decision log). The setting is local to the transaction either way.
 *
 * `scopeCte` sets it within a single statement (its own implicit transaction): `$1` is the
 * workspace id. A statement must read tenant rows only through something that depends on
 * `scope` — a LATERAL subquery referencing `scope.workspace_id`, or an INSERT … SELECT FROM scope —
 * so the setting is in force before PostgreSQL evaluates the RLS policy. Were it not, the policy
 * compares with NULL and the statement sees nothing: the failure is closed, never a leak.
 */
export const scopeCte = scopeCteFor('$1');

/** The same CTE with another placeholder for the workspace id (`?` for MikroORM's `execute`). */
export function scopeCteFor(placeholder: string): string {
  return `scope as materialized (select set_config('cordon.workspace_id', ${placeholder}::text, true)::uuid as workspace_id)`;
}

/** Several statements in one transaction inside the workspace's scope (updates, deletes, streamed reads). */
export async function scopedTransaction<T>(
  pool: pg.Pool,
  workspaceId: string,
  work: (client: pg.PoolClient) => Promise<T>,
  options: { readOnly?: boolean } = {},
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query(options.readOnly ? 'begin read only' : 'begin');
    await client.query("select set_config('cordon.workspace_id', $1::text, true)", [workspaceId]);
    const result = await work(client);
    await client.query('commit');
    client.release();
    return result;
  } catch (error) {
    // A connection that cannot even roll back is not returned to the pool.
    const broken = await client.query('rollback').then(
      () => false,
      () => true,
    );
    client.release(broken);
    throw error;
  }
}
