import { call, onUnauthorized, session } from './api.js';
import { h, problemView, show } from './dom.js';
import { decisionsPage } from './pages/decisions.js';
import { playgroundPage } from './pages/playground.js';
import { policiesPage } from './pages/policies.js';
import { testsPage } from './pages/tests.js';
import { whatIfPage } from './pages/what-if.js';

const pages = {
  policies: policiesPage,
  tests: testsPage,
  'what-if': whatIfPage,
  playground: playgroundPage,
  decisions: decisionsPage,
};

const view = document.getElementById('view');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signOutButton = document.getElementById('sign-out');

function signInPage(message) {
  const workspace = h('input', {
    id: 'workspace',
    required: true,
    pattern: '[a-z0-9][a-z0-9\\-]{1,62}',
    autocomplete: 'off',
    spellcheck: 'false',
    value: session.workspace ?? '',
  });
  // No `name`: even a submission the script failed to stop would carry no token (and form-action 'none' refuses it).
  const token = h('input', { id: 'token', type: 'password', required: true, autocomplete: 'off', spellcheck: 'false' });
  const status = h('div', { class: 'status' }, message ? problemView(message) : null);
  const submit = async (event) => {
    event.preventDefault();
    session.signIn(token.value.trim(), workspace.value.trim());
    token.value = '';
    show(status, 'Signing in…');
    try {
      await start();
    } catch (error) {
      session.signOut();
      show(status, problemView(error));
    }
  };
  show(
    view,
    h(
      'form',
      { id: 'sign-in', class: 'panel narrow', onsubmit: submit },
      h('h1', {}, 'Sign in'),
      h('label', { for: 'workspace' }, 'Workspace slug'),
      workspace,
      h('label', { for: 'token' }, 'Bearer token'),
      token,
      h('button', { type: 'submit' }, 'Sign in'),
      status,
      h(
        'p',
        { class: 'hint' },
        'Paste a token your identity provider issued for this workspace (an admin or auditor role). ',
        'It is kept in this tab only (sessionStorage) and sent as Authorization: Bearer. ',
        'Outside production, the development issuer makes one: ',
        h('code', {}, 'npm run token -- --workspace <slug> --user <id> --role admin'),
        '.',
      ),
    ),
  );
  workspace.focus();
}

/** Checks the session's token with `whoami`, then shows the page the address names. */
async function start() {
  const principal = await call('GET', '/whoami');
  show(who, `${principal.id} (${principal.roles.join(', ') || 'no role'}) in ${session.workspace}`);
  who.dataset.principal = principal.id;
  nav.hidden = false;
  signOutButton.hidden = false;
  if (!location.hash) location.hash = '#policies';
  else route();
}

function signOut(message) {
  session.signOut();
  nav.hidden = true;
  signOutButton.hidden = true;
  show(who);
  signInPage(message);
}

let current = 0;
function route() {
  if (!session.token) return signInPage();
  const name = location.hash.slice(1).split('/')[0] || 'policies';
  const page = pages[name] ?? pages.policies;
  for (const link of nav.querySelectorAll('a'))
    link.toggleAttribute('aria-current', link.getAttribute('href') === `#${name}`);
  const generation = ++current;
  const container = h('section', { class: 'page', dataset: { page: name } });
  show(view, container);
  page(container).catch((error) => {
    if (generation === current) container.append(problemView(error));
  });
}

onUnauthorized((error) => signOut(error));
signOutButton.addEventListener('click', () => signOut());
window.addEventListener('hashchange', route);

if (session.token) start().catch((error) => signOut(error));
else signInPage();
