import { z } from 'zod';
import { refusingProtoKey } from '../json.ts';
import { buildAbility, subjectTypeKey, type PrincipalAbility, type StoredPolicy } from './ability.ts';
import { actions, systemFields } from './vocabulary.ts';

/**
 * Policy tests: named principals and resources, and tests that say what a principal may do to a
 * resource (or a subject type). The same evaluation runs behind `POST …/policies/test`, the guard
 * on policy changes, and `npm run policy-test` offline, so a suite passes in CI exactly when it
 * passes on the server.
 */

const name = z.string().min(1).max(100);
const limits = { principals: 200, resources: 1_000, tests: 1_000 } as const;

export const suiteSchema = z.strictObject({
  principals: z
    .record(
      name,
      z.strictObject({
        id: z.string().min(1).max(500),
        roles: z.array(z.string().min(1).max(100)).max(50),
        claims: refusingProtoKey(z.record(z.string(), z.unknown())).optional(),
        email: z.string().max(320).optional(),
      }),
    )
    .refine((principals) => Object.keys(principals).length <= limits.principals, {
      message: `at most ${limits.principals} principals`,
    }),
  resources: z
    .record(
      name,
      z.strictObject({
        structure: z.string().min(1).max(64),
        data: refusingProtoKey(z.record(z.string(), z.unknown())).superRefine((data, context) => {
          if (Object.hasOwn(data, subjectTypeKey))
            context.addIssue({ code: 'custom', path: [subjectTypeKey], message: 'is reserved', input: data });
        }),
        id: z.string().max(500).optional(),
        createdBy: z.string().max(500).optional(),
        createdAt: z.string().max(100).optional(),
        updatedAt: z.string().max(100).optional(),
      }),
    )
    .default({})
    .refine((resources) => Object.keys(resources).length <= limits.resources, {
      message: `at most ${limits.resources} resources`,
    }),
  tests: z
    .array(
      z.strictObject({
        name: z.string().min(1).max(200),
        principal: name,
        action: z.enum(actions),
        resource: name.optional(),
        subject: z.string().min(1).max(64).optional(),
        field: z.string().min(1).max(200).optional(),
        expect: z.enum(['allow', 'deny']),
        rule: z.string().min(1).max(200).optional(),
      }),
    )
    .min(1)
    .max(limits.tests),
});

export type Suite = z.output<typeof suiteSchema>;

export interface SuiteError {
  pointer: string;
  detail: string;
}

/** What the schema cannot say: names that refer to nothing, and a test with both or neither target. */
export function suiteErrors(suite: Suite, base = ''): SuiteError[] {
  const errors: SuiteError[] = [];
  suite.tests.forEach((test, index) => {
    const at = `${base}/tests/${index}`;
    if (!Object.hasOwn(suite.principals, test.principal))
      errors.push({ pointer: `${at}/principal`, detail: `no principal named "${test.principal}" in this suite` });
    if (test.resource !== undefined && !Object.hasOwn(suite.resources, test.resource))
      errors.push({ pointer: `${at}/resource`, detail: `no resource named "${test.resource}" in this suite` });
    if ((test.resource === undefined) === (test.subject === undefined))
      errors.push({ pointer: at, detail: 'a test names either a resource or a subject (for a type-level check)' });
    if (test.rule !== undefined && !/^.+#\d+$/.test(test.rule))
      errors.push({ pointer: `${at}/rule`, detail: 'an expected rule is written "<policy name>#<rule index>"' });
  });
  return errors;
}

/** A policy as a suite runs it: stored (with its id) or a draft (no id yet). */
export interface SuitePolicy {
  id: string | null;
  name: string;
  roles: string[];
  rules: StoredPolicy['rules'];
  version?: number;
}

export interface RuleReference {
  policyId: string | null;
  policyName: string;
  ruleIndex: number;
}

export interface TestResult {
  name: string;
  expected: 'allow' | 'deny';
  actual: 'allow' | 'deny';
  passed: boolean;
  rule: RuleReference | null;
  reason: string;
  /** Set when the test named a deciding rule: the one it named. */
  expectedRule?: string;
}

export interface RuleCoverage extends RuleReference {
  action: string | string[];
  subject: string | string[];
  effect: 'allow' | 'deny';
  decided: number;
}

export interface SuiteReport {
  passed: boolean;
  total: number;
  failed: number;
  results: TestResult[];
  coverage: { rules: RuleCoverage[]; total: number; exercised: number; unexercisedShare: number };
}

export const ruleLabel = (rule: Pick<RuleReference, 'policyName' | 'ruleIndex'>) =>
  `${rule.policyName}#${rule.ruleIndex}`;

/**
 * The document conditions see: the resource's fields plus its system fields. CASL's subject-type
 * key is left out like a system field written in `data`: the schema refuses it now, but a suite
 * stored before it did is run by every policy change, and the key would make CASL throw there. No
 * record can hold it (field names start with a lowercase letter), so without it the document is
 * what a record with that data would be, and the test keeps guarding changes.
 */
function documentOf(resource: Suite['resources'][string]): Record<string, unknown> {
  const ignored: readonly string[] = [...systemFields, subjectTypeKey];
  const document = Object.fromEntries(Object.entries(resource.data).filter(([key]) => !ignored.includes(key)));
  for (const field of systemFields) if (resource[field] !== undefined) document[field] = resource[field];
  return document;
}

/**
 * Runs every test of `suite` against `policies` (the workspace's evaluation order). Policies are
 * keyed by their position while evaluated, so drafts without an id are told apart too.
 */
export function runSuite(policies: readonly SuitePolicy[], suite: Suite, workspaceId: string): SuiteReport {
  const keyed: StoredPolicy[] = policies.map((policy, index) => ({
    id: String(index),
    name: policy.name,
    version: policy.version ?? 1,
    roles: policy.roles,
    rules: policy.rules,
  }));
  const abilities = new Map<string, PrincipalAbility>();
  const abilityOf = (principalName: string) => {
    let ability = abilities.get(principalName);
    if (!ability) {
      const principal = suite.principals[principalName]!;
      ability = buildAbility(keyed, {
        principal: { id: principal.id, email: principal.email, roles: principal.roles, claims: principal.claims ?? {} },
        workspaceId,
      });
      abilities.set(principalName, ability);
    }
    return ability;
  };
  const decided = new Map<string, number>();
  const results = suite.tests.map((test): TestResult => {
    const resource = test.resource === undefined ? undefined : suite.resources[test.resource]!;
    const subject = resource ? resource.structure : test.subject!;
    const decision = abilityOf(test.principal).decide(
      test.action,
      subject,
      resource && documentOf(resource),
      test.field,
    );
    const policy = decision.policyId === null ? undefined : policies[Number(decision.policyId)];
    const rule =
      policy && decision.ruleIndex !== null
        ? { policyId: policy.id, policyName: policy.name, ruleIndex: decision.ruleIndex }
        : null;
    if (rule)
      decided.set(
        `${decision.policyId}#${rule.ruleIndex}`,
        (decided.get(`${decision.policyId}#${rule.ruleIndex}`) ?? 0) + 1,
      );
    const actual = decision.allowed ? 'allow' : 'deny';
    const ruleHolds = test.rule === undefined || (rule !== null && ruleLabel(rule) === test.rule);
    return {
      name: test.name,
      expected: test.expect,
      actual,
      passed: actual === test.expect && ruleHolds,
      rule,
      reason: decision.reason,
      ...(test.rule !== undefined && { expectedRule: test.rule }),
    };
  });
  const rules = policies.flatMap((policy, index) =>
    policy.rules.map((rule, ruleIndex): RuleCoverage => ({
      policyId: policy.id,
      policyName: policy.name,
      ruleIndex,
      action: rule.action,
      subject: rule.subject,
      effect: rule.inverted ? 'deny' : 'allow',
      decided: decided.get(`${index}#${ruleIndex}`) ?? 0,
    })),
  );
  const exercised = rules.filter((rule) => rule.decided > 0).length;
  const failed = results.filter((result) => !result.passed).length;
  return {
    passed: failed === 0,
    total: results.length,
    failed,
    results,
    coverage: {
      rules,
      total: rules.length,
      exercised,
      unexercisedShare: rules.length ? (rules.length - exercised) / rules.length : 0,
    },
  };
}
