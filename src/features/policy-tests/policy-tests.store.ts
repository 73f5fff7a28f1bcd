import { sql } from 'kysely';
import type { Scope } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import { loadPolicies } from '../../policy/policy-store.ts';
import { runSuite, type Suite } from '../../policy/policy-suite.ts';
import type { StoredSuiteResponse } from './policy-tests.schema.ts';

interface SuiteRow {
  suite: Suite;
  updated_at: Date;
  updated_by: string;
}

const toResponse = (row: SuiteRow): StoredSuiteResponse => ({
  suite: row.suite,
  updatedAt: new Date(row.updated_at).toISOString(),
  updatedBy: row.updated_by,
});

/** The workspace's stored suite, as the caller's transaction sees it. */
export async function storedSuite(scope: Scope): Promise<StoredSuiteResponse | undefined> {
  const [row] = await scope.query(
    sql<SuiteRow>`select suite, updated_at, updated_by from policy_tests where workspace_id = ${scope.workspaceId}::uuid`,
  );
  return row && toResponse(row);
}

export async function saveSuite(scope: Scope, suite: Suite, updatedBy: string): Promise<StoredSuiteResponse> {
  const [row] = await scope.query(
    sql<SuiteRow>`insert into policy_tests (workspace_id, suite, updated_by)
      values (${scope.workspaceId}::uuid, ${JSON.stringify(suite)}::jsonb, ${updatedBy})
      on conflict (workspace_id) do update set suite = excluded.suite, updated_by = excluded.updated_by, updated_at = now()
      returning suite, updated_at, updated_by`,
  );
  return toResponse(row!);
}

/**
 * Runs `change` between two runs of the stored suite, in the change's transaction: refused with
 * 409 `policy_tests_failed` if a test that passed before fails after, unless forced. The caller
 * holds the workspace's membership lock (Managers.of), which also serialises suite updates, so a
 * concurrent policy change or suite update cannot slip between the runs.
 */
export async function guardPolicyChange<T>(scope: Scope, force: boolean, change: () => Promise<T>): Promise<T> {
  const stored = force ? undefined : await storedSuite(scope);
  if (!stored) return change();
  const before = runSuite(await loadPolicies(scope), stored.suite, scope.workspaceId);
  const value = await change();
  const after = runSuite(await loadPolicies(scope), stored.suite, scope.workspaceId);
  const failures = after.results.filter((result, index) => !result.passed && before.results[index]!.passed);
  if (failures.length) {
    throw new ProblemError(
      'policy_tests_failed',
      `${failures.length} stored policy test${failures.length === 1 ? '' : 's'} would fail: ${failures
        .slice(0, 5)
        .map((failure) => `"${failure.name}"`)
        .join(', ')}${failures.length > 5 ? ', …' : ''}; fix the change, update the suite, or use ?force=true`,
      {
        extensions: {
          failures: failures.map(({ name, expected, actual, rule, reason }) => ({
            name,
            expected,
            actual,
            rule,
            reason,
          })),
        },
      },
    );
  }
  return value;
}
