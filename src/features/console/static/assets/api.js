/**
 * The console's one road to Cordon: same-origin fetches with `Authorization: Bearer`. The token
 * lives in this tab's sessionStorage only (never localStorage, a cookie or a URL), so it is gone
 * when the tab closes and other tabs never see it.
 */
const keys = { token: 'cordon.console.token', workspace: 'cordon.console.workspace' };

export const session = {
  get token() {
    return sessionStorage.getItem(keys.token);
  },
  get workspace() {
    return sessionStorage.getItem(keys.workspace);
  },
  signIn(token, workspace) {
    sessionStorage.setItem(keys.token, token);
    sessionStorage.setItem(keys.workspace, workspace);
  },
  signOut() {
    sessionStorage.removeItem(keys.token);
    sessionStorage.removeItem(keys.workspace);
  },
};

export class ProblemError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? problem?.title ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem ?? { status, title: `HTTP ${status}` };
  }

  get code() {
    return this.problem.code;
  }
}

let unauthorized = () => {};
/** Called when a request answers 401: the token expired or was refused. */
export const onUnauthorized = (handler) => {
  unauthorized = handler;
};

/** A URL under the signed-in workspace, with the query's non-empty values. */
export function workspaceUrl(path, query = {}) {
  const url = new URL(`/v1/workspaces/${encodeURIComponent(session.workspace ?? '')}${path}`, location.origin);
  for (const [name, value] of Object.entries(query))
    if (value !== undefined && value !== null && value !== '') url.searchParams.set(name, String(value));
  return url;
}

async function problemOf(response) {
  const text = await response.text();
  try {
    return new ProblemError(response.status, JSON.parse(text));
  } catch {
    return new ProblemError(response.status, { status: response.status, title: text.slice(0, 200) });
  }
}

/** Calls the workspace's API; resolves to the JSON body (null for 204) or rejects with a ProblemError. */
export async function call(method, path, { body, query, raw = false } = {}) {
  const headers = { authorization: `Bearer ${session.token ?? ''}`, accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(workspaceUrl(path, query), {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
    credentials: 'omit',
    referrerPolicy: 'no-referrer',
  });
  if (!response.ok) {
    const error = await problemOf(response);
    if (response.status === 401) unauthorized(error);
    throw error;
  }
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

let offered;
/**
 * What this server offers, read from its OpenAPI document (public): the pages for policy tests,
 * what-if and explanations work only where those routes exist.
 */
export function capabilities() {
  offered ??= fetch('/openapi.json', { cache: 'no-store', credentials: 'omit' })
    .then((response) => (response.ok ? response.json() : { paths: {} }))
    .then(({ paths = {} }) => ({
      policyTests: Boolean(paths['/v1/workspaces/{ws}/policies/test']?.post),
      storedSuite: Boolean(paths['/v1/workspaces/{ws}/policy-tests']?.put),
      whatIf: Boolean(paths['/v1/workspaces/{ws}/policies/what-if']?.post),
      explain: JSON.stringify(paths['/v1/workspaces/{ws}/check']?.post?.requestBody ?? {}).includes('"explain"'),
    }))
    .catch(() => ({ policyTests: false, storedSuite: false, whatIf: false, explain: false }));
  return offered;
}

/** Fetches with the token and hands the body to the browser as a file (the token never enters a URL). */
export async function download(path, query, filename) {
  const response = await call('GET', path, { query, raw: true });
  const url = URL.createObjectURL(await response.blob());
  const link = Object.assign(document.createElement('a'), { href: url, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}
