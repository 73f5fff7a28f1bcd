import type { Database, Scope } from '../../db/database.ts';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import type { AccessControl, Caller } from '../../policy/access.ts';
import { lockMembership } from '../../policy/managers.ts';
import { loadPolicies } from '../../policy/policy-store.ts';
import { runSuite, suiteErrors, type Suite, type SuitePolicy, type SuiteReport } from '../../policy/policy-suite.ts';
import { validateRules } from '../../policy/validate.ts';
import type { PolicyInput } from '../policies/policies.schema.ts';
import { structureFields } from '../policies/policies.service.ts';
import type { StoredSuiteResponse } from './policy-tests.schema.ts';
import { saveSuite, storedSuite } from './policy-tests.store.ts';

const invalid = (errors: FieldError[]) =>
  new ProblemError('validation_failed', 'The policy test suite or its draft policies are invalid', { errors });

function requireConsistent(suite: Suite, base: string): void {
  const errors = suiteErrors(suite, base);
  if (errors.length) throw invalid(errors.map((error) => ({ ...error, in: 'body' as const })));
}

/**
 * Policy test suites: run against the stored policies or a draft set, and one stored suite per
 * workspace, which every policy change is then checked against (see policy-tests.store.ts).
 */
export class PolicyTestsService {
  private readonly database: Database;
  private readonly access: AccessControl;

  constructor(options: { database: Database; access: AccessControl }) {
    this.database = options.database;
    this.access = options.access;
  }

  run(caller: Caller, suite: Suite, drafts: PolicyInput[] | undefined): Promise<SuiteReport> {
    requireConsistent(suite, '/suite');
    return this.access.read(caller, () =>
      this.database.withWorkspace(
        caller.workspaceId,
        async (scope) => runSuite(await this.policiesFor(scope, drafts), suite, scope.workspaceId),
        { readOnly: true },
      ),
    );
  }

  /** The stored policies, or the drafts validated as a create would validate them (ids kept by name). */
  private async policiesFor(scope: Scope, drafts: PolicyInput[] | undefined): Promise<SuitePolicy[]> {
    const stored = await loadPolicies(scope);
    if (!drafts) return stored;
    const structures = await structureFields(scope);
    const errors: FieldError[] = [];
    const seen = new Set<string>();
    drafts.forEach((draft, index) => {
      if (seen.has(draft.name))
        errors.push({ pointer: `/policies/${index}/name`, in: 'body', detail: `a second draft named "${draft.name}"` });
      seen.add(draft.name);
      for (const error of validateRules(draft.rules, structures))
        errors.push({ pointer: `/policies/${index}${error.pointer}`, in: 'body', detail: error.detail });
    });
    if (errors.length) throw invalid(errors);
    const idsByName = new Map(stored.map((policy) => [policy.name, policy.id]));
    return drafts.map((draft) => ({ ...draft, id: idsByName.get(draft.name) ?? null }));
  }

  get(caller: Caller): Promise<StoredSuiteResponse> {
    return this.access.read(caller, () =>
      this.database.withWorkspace(
        caller.workspaceId,
        async (scope) => {
          const stored = await storedSuite(scope);
          if (!stored) throw new ProblemError('policy_tests_not_found', 'No policy test suite is stored yet');
          return stored;
        },
        { readOnly: true },
      ),
    );
  }

  /** Stored under the lock policy changes take, so a change in flight is checked against one suite or the other. */
  put(caller: Caller, suite: Suite): Promise<StoredSuiteResponse> {
    requireConsistent(suite, '/suite');
    return this.access.change(caller, async (scope) => {
      await lockMembership(scope);
      return saveSuite(scope, suite, caller.principal.id);
    });
  }
}
