import { call, capabilities } from '../api.js';
import { h, json, problemView, ruleName, show, table, withErrors } from '../dom.js';
import { JsonEditor } from '../json-editor.js';

const exampleChecks = [
  { action: 'read', subject: 'Policy' },
  { action: 'update', subject: 'DecisionLog' },
];

/**
 * Playground: `POST …/check` for yourself or a named principal (which needs `manage Policy`), with
 * `explain: true` where this server explains decisions. Every check is logged like any other decision.
 */
export async function playgroundPage(container) {
  const { explain } = await capabilities();
  const asOther = h('input', { type: 'checkbox', id: 'as-other' });
  const principalId = h('input', { id: 'principal-id', placeholder: 'user_123', autocomplete: 'off' });
  const roles = h('input', { id: 'principal-roles', placeholder: 'member, viewer', autocomplete: 'off' });
  const email = h('input', { id: 'principal-email', type: 'email', autocomplete: 'off' });
  const claims = new JsonEditor({ label: 'Principal claims', rows: 4, value: '{}' });
  const checks = new JsonEditor({ label: 'Checks', rows: 12, value: json(exampleChecks) });
  const results = h('div', { id: 'check-results', 'aria-live': 'polite' });

  const run = async () => {
    show(results);
    const body = {};
    const list = checks.parse();
    if (list === undefined) return;
    body.checks = list;
    if (asOther.checked) {
      const claimValues = claims.parse();
      if (claimValues === undefined) return;
      body.principal = {
        id: principalId.value.trim(),
        roles: roles.value
          .split(',')
          .map((role) => role.trim())
          .filter(Boolean),
        claims: claimValues,
        ...(email.value.trim() && { email: email.value.trim() }),
      };
    }
    if (explain) body.explain = true;
    show(results, 'Checking…');
    try {
      const answer = await call('POST', '/check', { body });
      show(
        results,
        answer.results.map((result, index) => resultView(list[index], result)),
      );
    } catch (error) {
      // Field errors go to the editor holding the field; the rest (e.g. the principal's id) are listed.
      const notClaims = claims.showProblem(error.problem, '/principal/claims');
      const elsewhere = checks.showProblem({ errors: notClaims }, '/checks');
      show(results, problemView(withErrors(error, elsewhere)));
    }
  };

  show(
    container,
    h('h1', {}, 'Playground'),
    h(
      'p',
      { class: 'hint' },
      'Asks POST /check. Each check is logged in the decision log. ',
      explain
        ? 'Explanations are on (explain: true).'
        : 'This server does not explain decisions yet (no explain in its /check): results show the deciding rule only.',
    ),
    h(
      'fieldset',
      {},
      h('legend', {}, h('label', {}, asOther, ' As another principal (needs manage on Policy)')),
      h('label', { for: 'principal-id' }, 'Principal id'),
      principalId,
      h('label', { for: 'principal-roles' }, 'Roles (comma-separated)'),
      roles,
      h('label', { for: 'principal-email' }, 'Email (optional)'),
      email,
      h('span', { class: 'label' }, 'Claims (JSON)'),
      claims.element,
    ),
    h('span', { class: 'label' }, 'Checks: [{ action, subject, resource?, field? }]'),
    checks.element,
    h('div', { class: 'actions' }, h('button', { type: 'button', id: 'run-checks', onclick: run }, 'Check')),
    results,
  );
}

function resultView(check, result) {
  const outcome = result.allowed ? 'allowed' : 'denied';
  return h(
    'article',
    { class: `check-result ${outcome}`, dataset: { outcome } },
    h(
      'h3',
      {},
      h('span', { class: `badge ${outcome}` }, outcome),
      ` ${check?.action} ${check?.subject}`,
      check?.field ? ` .${check.field}` : '',
    ),
    h(
      'p',
      {},
      'Reason: ',
      result.reason,
      result.policyId ? ` — policy ${result.policyId} v${result.policyVersion}, rule ${result.ruleIndex}` : '',
    ),
    result.explanation ? explanationView(result.explanation) : null,
  );
}

function explanationView(explanation) {
  const failedView = (failed) =>
    Array.isArray(failed) && failed.length
      ? h(
          'ul',
          { class: 'failed' },
          failed.map((item) =>
            h(
              'li',
              {},
              h('code', {}, item.field),
              ` ${item.operator} expected ${JSON.stringify(item.expected)}, got ${item.actual === undefined ? 'nothing' : JSON.stringify(item.actual)} (${item.why})`,
            ),
          ),
        )
      : '';
  const yesNo = (value) => (value === null || value === undefined ? '—' : value ? 'yes' : 'no');
  return h(
    'div',
    { class: 'explanation' },
    h(
      'p',
      {},
      'Decided by ',
      h('strong', {}, ruleName(explanation.decidedBy)),
      explanation.reason ? `: ${explanation.reason}` : '',
    ),
    table(
      ['Rule', 'Effect', 'Action', 'Subject', 'Applies', 'Conditions held', 'Why not'],
      (explanation.rules ?? []).map((rule) =>
        h(
          'tr',
          {
            class: [
              'explained-rule',
              explanation.decidedBy &&
              explanation.decidedBy.policyId === rule.policyId &&
              explanation.decidedBy.ruleIndex === rule.ruleIndex
                ? 'decided'
                : '',
            ].join(' '),
          },
          h('td', {}, ruleName(rule)),
          h('td', {}, rule.effect),
          h('td', {}, [rule.action].flat().join(', ')),
          h('td', {}, [rule.subject].flat().join(', ')),
          h('td', {}, yesNo(rule.applies)),
          h('td', {}, yesNo(rule.matched)),
          h('td', {}, failedView(rule.failed)),
        ),
      ),
    ),
  );
}
