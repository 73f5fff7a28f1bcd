import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { policyBody } from '../src/features/policies/policies.schema.ts';
import { escapePointer } from '../src/json.ts';
import {
  ruleLabel,
  runSuite,
  suiteErrors,
  suiteSchema,
  type SuitePolicy,
  type SuiteReport,
} from '../src/policy/policy-suite.ts';
import { validateRules } from '../src/policy/validate.ts';
import { anySubject, isSystemSubject } from '../src/policy/vocabulary.ts';

/**
 * `npm run policy-test -- suite.json --policies dir/ [--json] [--workspace-id <uuid>]`: runs a
 * policy test suite offline, with the evaluation the server runs, for CI pipelines. Exit 0 when
 * every test passes, 1 when one fails, 2 when the suite or a policy file is invalid.
 */

const usage = 'usage: npm run policy-test -- <suite.json> --policies <dir or file> [--json] [--workspace-id <uuid>]';

class InputError extends Error {}

const pointerOf = (issue: z.core.$ZodIssue) => '/' + issue.path.map((key) => escapePointer(String(key))).join('/');

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    throw new InputError(`${file}: ${(error as Error).message}`);
  }
}

/**
 * Policy files in name order (the order the server evaluates is creation order: name files so the
 * two agree). A file holds one policy, a list of them, or `{ data: [...] }` as `GET …/policies` answers.
 */
function readPolicies(location: string): SuitePolicy[] {
  const files = statSync(location).isDirectory()
    ? readdirSync(location)
        .filter((file) => file.endsWith('.json'))
        .sort()
        .map((file) => path.join(location, file))
    : [location];
  if (!files.length) throw new InputError(`${location}: no .json policy files`);
  const policies: SuitePolicy[] = [];
  for (const file of files) {
    const content = readJson(file);
    const list = Array.isArray(content)
      ? content
      : content && typeof content === 'object' && Array.isArray((content as { data?: unknown }).data)
        ? (content as { data: unknown[] }).data
        : [content];
    list.forEach((item, index) => {
      const where = list.length > 1 || Array.isArray(content) ? `${file}[${index}]` : file;
      // Exported policies carry server fields (id, version, dates): only the policy itself is read.
      const {
        id,
        version,
        createdAt: _c,
        updatedAt: _u,
        updatedBy: _b,
        ...body
      } = (item ?? {}) as Record<string, unknown>;
      const parsed = policyBody.safeParse(body);
      if (!parsed.success)
        throw new InputError(
          parsed.error.issues.map((issue) => `${where}: ${pointerOf(issue)} ${issue.message}`).join('\n'),
        );
      policies.push({
        ...parsed.data,
        id: typeof id === 'string' ? id : null,
        ...(typeof version === 'number' && { version }),
      });
    });
  }
  // Offline the workspace's structures are unknown: every record subject a rule names counts as one
  // with the fields rules name. Actions, conditions and placeholders are checked as the server checks them.
  const structures = new Map<string, string[]>();
  for (const policy of policies)
    for (const rule of policy.rules)
      for (const subject of [rule.subject].flat())
        if (subject !== anySubject && !isSystemSubject(subject))
          structures.set(subject, [...(structures.get(subject) ?? []), ...[rule.fields ?? []].flat()]);
  const errors = policies.flatMap((policy) =>
    validateRules(policy.rules, structures).map((error) => `policy "${policy.name}": ${error.pointer} ${error.detail}`),
  );
  if (errors.length) throw new InputError(errors.join('\n'));
  return policies;
}

function readSuite(file: string) {
  const parsed = suiteSchema.safeParse(readJson(file));
  if (!parsed.success)
    throw new InputError(
      parsed.error.issues.map((issue) => `${file}: ${pointerOf(issue)} ${issue.message}`).join('\n'),
    );
  const errors = suiteErrors(parsed.data);
  if (errors.length)
    throw new InputError(errors.map((error) => `${file}: ${error.pointer} ${error.detail}`).join('\n'));
  return parsed.data;
}

const percent = (share: number) => `${Math.round(share * 100)}%`;
const list = (value: string | string[]) => [value].flat().join(',');

function summary(report: SuiteReport): string {
  const lines: string[] = [];
  const width = Math.max(...report.results.map((result) => result.name.length));
  for (const result of report.results) {
    const decidedBy = result.rule ? ruleLabel(result.rule) : 'default deny';
    const detail = result.passed
      ? `${result.actual}, ${decidedBy}`
      : result.actual !== result.expected
        ? `expected ${result.expected}, got ${result.actual}, ${decidedBy}: ${result.reason}`
        : `expected rule ${result.expectedRule}, decided by ${decidedBy}`;
    lines.push(`${result.passed ? 'PASS' : 'FAIL'}  ${result.name.padEnd(width)}  ${detail}`);
  }
  lines.push('', `${report.total} tests, ${report.total - report.failed} passed, ${report.failed} failed`);
  const { coverage } = report;
  lines.push(
    `coverage: ${coverage.exercised} of ${coverage.total} rules decided a test; ${percent(coverage.unexercisedShare)} never exercised`,
  );
  const labelWidth = Math.max(...coverage.rules.map((rule) => ruleLabel(rule).length));
  for (const rule of coverage.rules) {
    lines.push(
      `  ${ruleLabel(rule).padEnd(labelWidth)}  ${String(rule.decided).padStart(4)}  ${rule.effect.padEnd(5)}  ${list(rule.action)} ${list(rule.subject)}${rule.decided ? '' : '  (never exercised)'}`,
    );
  }
  return lines.join('\n');
}

function main(): number {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        policies: { type: 'string' },
        json: { type: 'boolean', default: false },
        'workspace-id': { type: 'string', default: '00000000-0000-0000-0000-000000000000' },
      },
    });
  } catch (error) {
    console.error(`${(error as Error).message}\n${usage}`);
    return 2;
  }
  const [suiteFile] = parsed.positionals;
  if (!suiteFile || !parsed.values.policies || parsed.positionals.length > 1) {
    console.error(usage);
    return 2;
  }
  let report: SuiteReport;
  try {
    report = runSuite(readPolicies(parsed.values.policies), readSuite(suiteFile), parsed.values['workspace-id']);
  } catch (error) {
    if (!(error instanceof InputError) && (error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
    console.error(error instanceof InputError ? error.message : (error as Error).message);
    return 2;
  }
  console.log(parsed.values.json ? JSON.stringify(report, null, 2) : summary(report));
  return report.passed ? 0 : 1;
}

process.exitCode = main();
