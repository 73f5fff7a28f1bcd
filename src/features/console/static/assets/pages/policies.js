import { call } from '../api.js';
import { diffLines } from '../diff.js';
import { h, json, problemView, show, table, withErrors } from '../dom.js';
import { JsonEditor } from '../json-editor.js';

/** What a policy's editor holds: the body PUT and POST take. */
const editable = ({ name, description, roles, rules }) => ({ name, description, roles, rules });

const template = {
  name: 'new-policy',
  description: '',
  roles: ['member'],
  rules: [{ action: 'read', subject: 'all' }],
};

/** Policies: the list, one policy's JSON editor, its version history and a diff of two versions. */
export async function policiesPage(container) {
  const list = h('div', { class: 'list' });
  const detail = h('div', { class: 'detail' });
  show(container, h('h1', {}, 'Policies'), h('div', { class: 'split' }, list, detail));

  const load = async (selectId) => {
    const { data } = await call('GET', '/policies');
    show(
      list,
      h('button', { type: 'button', id: 'new-policy', onclick: () => openEditor(undefined) }, 'New policy'),
      table(
        ['Name', 'Roles', 'Version'],
        data.map((policy) =>
          h(
            'tr',
            { class: 'policy-row', dataset: { id: policy.id, name: policy.name } },
            h(
              'td',
              {},
              h(
                'a',
                { href: '#policies', onclick: (event) => (event.preventDefault(), openEditor(policy)) },
                policy.name,
              ),
            ),
            h('td', {}, policy.roles.join(', ')),
            h('td', { class: 'number' }, String(policy.version)),
          ),
        ),
        { id: 'policy-list' },
      ),
    );
    const selected = data.find((policy) => policy.id === selectId);
    if (selected) openEditor(selected);
  };

  const openEditor = (policy) => {
    const editor = new JsonEditor({ label: 'Policy JSON', rows: 22, value: json(editable(policy ?? template)) });
    const status = h('div', { class: 'status', 'aria-live': 'polite' });
    const history = h('div', { class: 'history' });
    const save = async (force) => {
      const body = editor.parse();
      if (body === undefined) return show(status);
      show(status, 'Saving…');
      try {
        const saved = policy
          ? await call('PUT', `/policies/${encodeURIComponent(policy.id)}`, {
              body,
              query: { force: force ? 'true' : '' },
            })
          : await call('POST', '/policies', { body, query: { force: force ? 'true' : '' } });
        await load(saved.id);
        // load() reopened the editor on the saved version; say so there.
        container
          .querySelector('.detail .status')
          ?.replaceChildren(h('p', { class: 'ok' }, `Saved version ${saved.version}.`));
      } catch (error) {
        const elsewhere = editor.showProblem(error.problem);
        show(
          status,
          problemView(withErrors(error, elsewhere)),
          failuresView(error.problem),
          error.code === 'policy_tests_failed'
            ? h('button', { type: 'button', onclick: () => save(true) }, 'Save anyway (force)')
            : null,
        );
      }
    };
    const remove = async () => {
      if (!confirm(`Delete the policy "${policy.name}"? Its versions are kept.`)) return;
      try {
        await call('DELETE', `/policies/${encodeURIComponent(policy.id)}`);
        show(detail);
        await load();
      } catch (error) {
        show(status, problemView(error), failuresView(error.problem));
      }
    };
    show(
      detail,
      h('h2', {}, policy ? `${policy.name} (version ${policy.version})` : 'New policy'),
      policy ? h('p', { class: 'hint' }, `Last changed ${policy.updatedAt} by ${policy.updatedBy}`) : null,
      editor.element,
      h(
        'div',
        { class: 'actions' },
        h(
          'button',
          { type: 'button', id: 'save-policy', onclick: () => save(false) },
          policy ? 'Save new version' : 'Create',
        ),
        policy ? h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete') : null,
      ),
      status,
      history,
    );
    if (policy) historyView(history, policy).catch((error) => show(history, problemView(error)));
  };

  await load();
}

/** A refused change's stored-test failures (`409 policy_tests_failed`). */
function failuresView(problem) {
  if (!Array.isArray(problem?.failures)) return null;
  return table(
    ['Test', 'Expected', 'Actual', 'Reason'],
    problem.failures.map((failure) =>
      h(
        'tr',
        {},
        h('td', {}, failure.name),
        h('td', {}, failure.expected),
        h('td', {}, failure.actual),
        h('td', {}, failure.reason ?? ''),
      ),
    ),
    { class: 'failures' },
  );
}

async function historyView(container, policy) {
  const { data: versions } = await call('GET', `/policies/${encodeURIComponent(policy.id)}/versions`);
  const diff = h('div', { class: 'diff-view' });
  const picker = (name, checkedVersion) =>
    versions.map((version) =>
      h('input', {
        type: 'radio',
        name,
        value: String(version.version),
        'aria-label': `${name === 'from' ? 'From' : 'To'} version ${version.version}`,
        checked: version.version === checkedVersion,
        onchange: render,
      }),
    );
  const last = versions.at(-1)?.version;
  const from = picker('from', versions.at(-2)?.version ?? last);
  const to = picker('to', last);
  function render() {
    const chosen = (inputs) =>
      versions.find((version) => String(version.version) === inputs.find((input) => input.checked)?.value);
    const a = chosen(from);
    const b = chosen(to);
    if (!a || !b) return show(diff);
    if (a === b)
      return show(
        diff,
        h(
          'p',
          { class: 'hint', id: 'same-version' },
          `Version ${a.version} on both sides: pick two versions to compare.`,
        ),
      );
    const lines = diffLines(json(editable(a)), json(editable(b)));
    const changed = lines.filter((line) => line.kind !== 'same').length;
    show(
      diff,
      h('h3', {}, `Version ${a.version} → version ${b.version}`, changed ? '' : ' (no change)'),
      h(
        'pre',
        { class: 'diff', dataset: { from: String(a.version), to: String(b.version) } },
        lines.map((line) =>
          h(
            'span',
            { class: `line ${line.kind}` },
            `${line.kind === 'added' ? '+' : line.kind === 'removed' ? '-' : ' '} ${line.text}\n`,
          ),
        ),
      ),
    );
  }
  show(
    container,
    h('h3', {}, 'Version history'),
    table(
      ['From', 'To', 'Version', 'Changed', 'By', ''],
      versions.map((version, index) =>
        h(
          'tr',
          { class: 'version-row', dataset: { version: String(version.version) } },
          h('td', {}, from[index]),
          h('td', {}, to[index]),
          h('td', { class: 'number' }, String(version.version)),
          h('td', {}, version.updatedAt),
          h('td', {}, version.updatedBy),
          h('td', {}, version.deleted ? 'deleted' : ''),
        ),
      ),
      { id: 'version-list' },
    ),
    diff,
  );
  render();
}
