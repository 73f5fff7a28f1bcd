/**
 * Builds elements from code: attributes are named by the console itself, and every piece of data
 * goes in as a text node or a property, never as HTML (the page's Trusted Types policy would refuse it).
 */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'class') element.className = value;
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else if (key === 'value' || key === 'checked') element[key] = value;
    else element.setAttribute(key, value === true ? '' : String(value));
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces an element's content with the given children. */
export function show(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

/** A problem (RFC 9457) or any other error, as a message block. */
export function problemView(error) {
  const problem = error?.problem;
  if (!problem) return h('p', { class: 'error', role: 'alert' }, error?.message ?? String(error));
  return h(
    'div',
    { class: 'error', role: 'alert', dataset: { code: problem.code ?? '' } },
    h('strong', {}, `${problem.status ?? error.status} ${problem.code ?? ''}`),
    ' ',
    problem.detail ?? problem.title ?? '',
    Array.isArray(problem.errors) && problem.errors.length
      ? h(
          'ul',
          {},
          problem.errors.map((item) => h('li', {}, h('code', {}, item.pointer || '(whole body)'), ' ', item.detail)),
        )
      : null,
  );
}

export const table = (headings, rows, props = {}) =>
  h(
    'table',
    props,
    h(
      'thead',
      {},
      h(
        'tr',
        {},
        headings.map((heading) => h('th', {}, heading)),
      ),
    ),
    h('tbody', {}, rows),
  );

export const json = (value) => JSON.stringify(value, null, 2);

/** A datetime-local input's value (local time) as an ISO instant; empty stays empty. */
export const isoFromLocal = (value) => (value ? new Date(value).toISOString() : '');

/** An instant as a datetime-local input's value, in local time. */
export function localFromDate(date) {
  const pad = (number) => String(number).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

export const ruleName = (rule) =>
  rule ? `${rule.policyName ?? rule.policyId ?? '?'}#${rule.ruleIndex ?? '?'}` : 'default deny';

/** The error with only the field errors no editor showed (the others are marked at their fields). */
export const withErrors = (error, errors) =>
  error?.problem ? { status: error.status, problem: { ...error.problem, errors } } : error;
