import { call, download } from '../api.js';
import { h, isoFromLocal, problemView, show } from '../dom.js';

const pageSize = 50;

/** The decision log: filters, pages of decisions (newest first), export as a file, the chain's verify status. */
export async function decisionsPage(container) {
  const field = (id, label, props = {}) => {
    const input = h('input', { id, autocomplete: 'off', spellcheck: 'false', ...props });
    return { input, view: h('div', { class: 'field' }, h('label', { for: id }, label), input) };
  };
  const principalId = field('filter-principal', 'Principal id');
  const role = field('filter-role', 'Role');
  const action = field('filter-action', 'Action', { list: 'actions' });
  const subject = field('filter-subject', 'Subject');
  const resourceId = field('filter-resource', 'Resource id');
  const from = field('filter-from', 'From', { type: 'datetime-local' });
  const to = field('filter-to', 'To', { type: 'datetime-local' });
  const outcome = h(
    'select',
    { id: 'filter-outcome' },
    h('option', { value: '' }, 'any'),
    h('option', { value: 'true' }, 'allowed'),
    h('option', { value: 'false' }, 'denied'),
  );
  const verifyStatus = h('div', { id: 'verify-status', class: 'verify', 'aria-live': 'polite' });
  const rows = h('tbody', {});
  const more = h('div', { class: 'actions' });
  const status = h('div', { class: 'status', 'aria-live': 'polite' });

  const filters = () => ({
    principalId: principalId.input.value.trim(),
    role: role.input.value.trim(),
    action: action.input.value.trim(),
    subject: subject.input.value.trim(),
    resourceId: resourceId.input.value.trim(),
    allowed: outcome.value,
    from: isoFromLocal(from.input.value),
    to: isoFromLocal(to.input.value),
  });

  // A newer search makes the pages of an older one stale: they are dropped when they arrive.
  let generation = 0;
  const fetchPage = async (query, cursor, round = generation) => {
    show(status, 'Loading…');
    try {
      const page = await call('GET', '/decisions', { query: { ...query, limit: pageSize, cursor } });
      if (round !== generation) return;
      rows.append(...page.data.map(decisionRow));
      show(status, rows.children.length ? `${rows.children.length} decisions shown` : 'No decision matches.');
      status.dataset.count = String(rows.children.length);
      show(
        more,
        page.nextCursor
          ? h(
              'button',
              { type: 'button', id: 'more-decisions', onclick: () => fetchPage(query, page.nextCursor, round) },
              'More',
            )
          : null,
      );
    } catch (error) {
      if (round === generation) show(status, problemView(error));
    }
  };

  const search = (event) => {
    event?.preventDefault();
    generation += 1;
    delete status.dataset.count;
    rows.replaceChildren();
    show(more);
    return fetchPage(filters());
  };

  const exportAs = async (format) => {
    try {
      await download('/decisions/export', { ...filters(), format }, `decisions.${format}`);
    } catch (error) {
      show(status, problemView(error));
    }
  };

  const verify = async () => {
    show(verifyStatus, 'Verifying the chain…');
    delete verifyStatus.dataset.verified;
    try {
      const result = await call('GET', '/decisions/verify');
      verifyStatus.dataset.verified = String(result.verified);
      show(
        verifyStatus,
        h(
          'span',
          { class: `badge ${result.verified ? 'allowed' : 'denied'}` },
          result.verified ? 'verified' : 'broken',
        ),
        ` ${result.sealed} sealed, ${result.unsealed} not sealed yet`,
        result.firstBreak ? ` — first break at seq ${result.firstBreak.seq}: ${result.firstBreak.reason}` : '',
      );
    } catch (error) {
      show(verifyStatus, problemView(error));
    }
  };

  show(
    container,
    h('h1', {}, 'Decision log'),
    h(
      'div',
      { class: 'panel' },
      h('h2', {}, 'Chain'),
      verifyStatus,
      h('button', { type: 'button', id: 'verify', onclick: verify }, 'Verify again'),
      h(
        'p',
        { class: 'hint' },
        'Checks the hash chain and signed checkpoints on the server, against the keys in its database. For proof that does not trust the server, verify an unfiltered NDJSON export offline (npm run verify-log).',
      ),
    ),
    h(
      'form',
      { id: 'decision-filters', class: 'filters', onsubmit: search },
      principalId.view,
      role.view,
      action.view,
      subject.view,
      resourceId.view,
      h('div', { class: 'field' }, h('label', { for: 'filter-outcome' }, 'Outcome'), outcome),
      from.view,
      to.view,
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'submit', id: 'search-decisions' }, 'Search'),
        h('button', { type: 'button', id: 'export-ndjson', onclick: () => exportAs('ndjson') }, 'Export NDJSON'),
        h('button', { type: 'button', id: 'export-csv', onclick: () => exportAs('csv') }, 'Export CSV'),
      ),
      h(
        'datalist',
        { id: 'actions' },
        ['create', 'read', 'update', 'delete', 'manage'].map((name) => h('option', { value: name })),
      ),
    ),
    status,
    h(
      'table',
      { id: 'decision-list' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          ['At', 'Principal', 'Action', 'Subject', 'Resource', 'Outcome', 'Reason', 'Rule', 'Seq'].map((name) =>
            h('th', {}, name),
          ),
        ),
      ),
      rows,
    ),
    more,
  );
  await Promise.all([verify(), search()]);
}

function decisionRow(decision) {
  const outcome = decision.allowed ? 'allowed' : 'denied';
  return h(
    'tr',
    { class: 'decision-row', dataset: { id: decision.id, outcome } },
    h('td', {}, decision.at),
    h('td', {}, decision.principal.id, h('div', { class: 'hint' }, decision.principal.roles.join(', '))),
    h('td', {}, decision.action, h('div', { class: 'hint' }, decision.operation)),
    h('td', {}, decision.subject),
    h(
      'td',
      {},
      decision.resourceId ?? '',
      decision.fields ? h('div', { class: 'hint' }, decision.fields.join(', ')) : null,
    ),
    h('td', {}, h('span', { class: `badge ${outcome}` }, outcome)),
    h('td', {}, decision.reason),
    h(
      'td',
      {},
      decision.policyId ? `${decision.policyId.slice(0, 8)} v${decision.policyVersion} #${decision.ruleIndex}` : '',
    ),
    h('td', { class: 'number' }, decision.seq ?? ''),
  );
}
