import { call, capabilities } from '../api.js';
import { h, isoFromLocal, json, localFromDate, problemView, ruleName, show, table, withErrors } from '../dom.js';
import { JsonEditor } from '../json-editor.js';
import { unavailable } from './unavailable.js';

const editable = ({ name, description, roles, rules }) => ({ name, description, roles, rules });

/** What-if: replay a window of logged decisions against a draft of the whole policy set, and see what would flip. */
export async function whatIfPage(container) {
  const offered = await capabilities();
  show(container, h('h1', {}, 'What-if'));
  if (!offered.whatIf) {
    container.append(unavailable(['POST /v1/workspaces/{ws}/policies/what-if']));
    return;
  }
  const now = new Date();
  const from = h('input', {
    id: 'what-if-from',
    type: 'datetime-local',
    value: localFromDate(new Date(now.getTime() - 86_400_000)),
  });
  const to = h('input', {
    id: 'what-if-to',
    type: 'datetime-local',
    value: localFromDate(new Date(now.getTime() + 60_000)),
  });
  const limit = h('input', { id: 'what-if-limit', type: 'number', min: '1', max: '200', value: '20' });
  const editor = new JsonEditor({ label: 'Draft policies JSON', rows: 24, value: '[]' });
  const status = h('div', { class: 'status', 'aria-live': 'polite' });
  const results = h('div', { id: 'what-if-results' });

  const loadStored = async () => {
    const { data } = await call('GET', '/policies');
    editor.value = json(data.map(editable));
    editor.textarea.dataset.source = 'stored';
  };
  const run = async () => {
    const policies = editor.parse();
    if (policies === undefined) return;
    show(results);
    show(status, 'Replaying…');
    try {
      const report = await call('POST', '/policies/what-if', {
        body: {
          policies,
          from: isoFromLocal(from.value),
          to: isoFromLocal(to.value),
          limit: Number(limit.value) || 20,
        },
      });
      show(status);
      show(results, reportView(report));
    } catch (error) {
      show(status, problemView(withErrors(error, editor.showProblem(error.problem, '/policies'))));
    }
  };

  container.append(
    h(
      'p',
      { class: 'hint' },
      'The draft is the whole policy set as it would be (the bodies POST /policies takes). Start from the stored policies, change them, and replay.',
    ),
    h(
      'div',
      { class: 'filters' },
      h('div', { class: 'field' }, h('label', { for: 'what-if-from' }, 'From'), from),
      h('div', { class: 'field' }, h('label', { for: 'what-if-to' }, 'To'), to),
      h('div', { class: 'field' }, h('label', { for: 'what-if-limit' }, 'Samples'), limit),
    ),
    h(
      'div',
      { class: 'actions' },
      h(
        'button',
        {
          type: 'button',
          id: 'load-stored',
          onclick: () => loadStored().catch((error) => show(status, problemView(error))),
        },
        'Start from the stored policies',
      ),
    ),
    editor.element,
    h('div', { class: 'actions' }, h('button', { type: 'button', id: 'run-what-if', onclick: run }, 'Replay')),
    status,
    results,
  );
  await loadStored();
}

function reportView(report) {
  const byReason = Object.entries(report.notReplayable?.byReason ?? {});
  return [
    h(
      'p',
      {
        class: 'summary',
        dataset: {
          replayed: String(report.replayed),
          flips: String(report.flips.allowToDeny + report.flips.denyToAllow),
        },
      },
      `${report.replayed} decisions replayed from ${report.window.from} to ${report.window.to}: ${report.unchanged} unchanged, `,
      h('strong', {}, `${report.flips.allowToDeny} allow → deny`),
      ', ',
      h('strong', {}, `${report.flips.denyToAllow} deny → allow`),
      report.notReplayable?.count ? `, ${report.notReplayable.count} not replayable` : '',
      '.',
    ),
    byReason.length
      ? h(
          'ul',
          { class: 'not-replayable' },
          byReason.map(([reason, count]) => h('li', {}, `${count}: ${reason}`)),
        )
      : null,
    h('h2', {}, 'Flips by action, subject and role'),
    table(
      ['Direction', 'Action', 'Subject', 'Role', 'Count'],
      report.counts.map((count) =>
        h(
          'tr',
          { class: 'flip-count' },
          h('td', {}, count.direction === 'allowToDeny' ? 'allow → deny' : 'deny → allow'),
          h('td', {}, count.action),
          h('td', {}, count.subject),
          h('td', {}, count.role ?? ''),
          h('td', { class: 'number' }, String(count.count)),
        ),
      ),
      { id: 'flip-counts' },
    ),
    h('h2', {}, 'Samples'),
    table(
      ['At', 'Principal', 'Action', 'Subject', 'Resource', 'Before', 'After', 'Rule', 'Reason'],
      report.samples.map((sample) =>
        h(
          'tr',
          { class: 'flip-sample', dataset: { decision: sample.decisionId } },
          h('td', {}, sample.at),
          h('td', {}, sample.principalId, h('div', { class: 'hint' }, (sample.roles ?? []).join(', '))),
          h('td', {}, sample.action),
          h('td', {}, sample.subject, sample.field ? ` .${sample.field}` : ''),
          h('td', {}, sample.resourceId ?? ''),
          h('td', {}, h('span', { class: `badge ${sample.before === 'allow' ? 'allowed' : 'denied'}` }, sample.before)),
          h('td', {}, h('span', { class: `badge ${sample.after === 'allow' ? 'allowed' : 'denied'}` }, sample.after)),
          h('td', {}, ruleName(sample.rule)),
          h('td', {}, sample.reason ?? ''),
        ),
      ),
      { id: 'flip-samples' },
    ),
  ];
}
