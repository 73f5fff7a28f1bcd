import { call, capabilities, ProblemError } from '../api.js';
import { h, json, problemView, ruleName, show, table, withErrors } from '../dom.js';
import { JsonEditor } from '../json-editor.js';
import { unavailable } from './unavailable.js';

const exampleSuite = {
  principals: { admin: { id: 'user_admin', roles: ['admin'] }, viewer: { id: 'user_viewer', roles: ['viewer'] } },
  resources: {},
  tests: [
    { name: 'admins manage policies', principal: 'admin', action: 'update', subject: 'Policy', expect: 'allow' },
    {
      name: 'viewers do not change policies',
      principal: 'viewer',
      action: 'update',
      subject: 'Policy',
      expect: 'deny',
    },
  ],
};

/** Test suites: edit the stored suite, save it, run it against the stored policies; results and coverage per rule. */
export async function testsPage(container) {
  const offered = await capabilities();
  show(container, h('h1', {}, 'Policy tests'));
  if (!offered.policyTests) {
    container.append(
      unavailable(['POST /v1/workspaces/{ws}/policies/test', 'GET/PUT /v1/workspaces/{ws}/policy-tests']),
    );
    return;
  }
  const editor = new JsonEditor({ label: 'Test suite JSON', rows: 24 });
  const stored = h('p', { class: 'hint', id: 'suite-origin' });
  const status = h('div', { class: 'status', 'aria-live': 'polite' });
  const results = h('div', { id: 'test-results' });

  const send = async (method, path, label) => {
    const suite = editor.parse();
    if (suite === undefined) return undefined;
    show(status, label);
    try {
      return await call(method, path, { body: { suite } });
    } catch (error) {
      show(status, problemView(withErrors(error, editor.showProblem(error.problem, '/suite'))));
      return undefined;
    }
  };
  const run = async () => {
    show(results);
    const report = await send('POST', '/policies/test', 'Running…');
    if (!report) return;
    show(status);
    show(results, reportView(report));
  };
  const save = async () => {
    const saved = await send('PUT', '/policy-tests', 'Saving…');
    if (saved)
      show(
        status,
        h('p', { class: 'ok' }, 'Suite saved: policy changes that make one of its tests fail are now refused.'),
      );
  };

  container.append(
    h(
      'p',
      { class: 'hint' },
      'A suite names principals and resources, then tests: { name, principal, action, resource | subject, field?, expect: "allow" | "deny", rule? }. Run checks the text below against the stored policies without saving it.',
    ),
    stored,
    editor.element,
    h(
      'div',
      { class: 'actions' },
      h('button', { type: 'button', id: 'run-tests', onclick: run }, 'Run'),
      offered.storedSuite
        ? h('button', { type: 'button', id: 'save-suite', onclick: save }, 'Save as the stored suite')
        : null,
    ),
    status,
    results,
  );
  if (!offered.storedSuite) {
    editor.value = json(exampleSuite);
    return;
  }
  try {
    const current = await call('GET', '/policy-tests');
    editor.value = json(current.suite);
    show(stored, `The stored suite, saved ${current.updatedAt} by ${current.updatedBy}.`);
  } catch (error) {
    if (!(error instanceof ProblemError && error.status === 404)) throw error;
    editor.value = json(exampleSuite);
    show(stored, 'No stored suite yet: an example to start from.');
  }
}

function reportView(report) {
  const coverage = report.coverage ?? { rules: [], total: 0, exercised: 0, unexercisedShare: 0 };
  return [
    h(
      'p',
      { class: `summary ${report.passed ? 'allowed' : 'denied'}`, dataset: { passed: String(report.passed) } },
      h('span', { class: `badge ${report.passed ? 'allowed' : 'denied'}` }, report.passed ? 'passed' : 'failed'),
      ` ${report.total - report.failed} of ${report.total} tests passed`,
    ),
    table(
      ['Test', 'Expected', 'Actual', 'Deciding rule', 'Reason'],
      report.results.map((result) =>
        h(
          'tr',
          { class: `test-result ${result.passed ? 'passed' : 'failed'}`, dataset: { passed: String(result.passed) } },
          h('td', {}, result.name),
          h('td', {}, result.expected),
          h('td', {}, result.actual),
          h('td', {}, ruleName(result.rule)),
          h('td', {}, result.reason ?? ''),
        ),
      ),
      { id: 'test-result-list' },
    ),
    h(
      'h2',
      {},
      `Coverage: ${coverage.exercised} of ${coverage.total} rules decided a test (${Math.round(coverage.unexercisedShare * 100)}% never exercised)`,
    ),
    table(
      ['Rule', 'Effect', 'Action', 'Subject', 'Tests decided'],
      coverage.rules.map((rule) =>
        h(
          'tr',
          {
            class: `coverage-row ${rule.decided ? '' : 'unexercised'}`,
            dataset: { rule: ruleName(rule), decided: String(rule.decided) },
          },
          h('td', {}, ruleName(rule)),
          h('td', {}, rule.effect),
          h('td', {}, [rule.action].flat().join(', ')),
          h('td', {}, [rule.subject].flat().join(', ')),
          h('td', { class: 'number' }, String(rule.decided)),
        ),
      ),
      { id: 'coverage-list' },
    ),
  ];
}
