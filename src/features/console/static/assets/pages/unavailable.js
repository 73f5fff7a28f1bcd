import { h } from '../dom.js';

/** A page whose routes this server does not serve (an older Cordon). */
export const unavailable = (routes) =>
  h(
    'p',
    { class: 'unavailable', role: 'status' },
    'This server does not offer ',
    routes.map((route, index) => [index ? ', ' : '', h('code', {}, route)]),
    ' (not in its /openapi.json), so this page cannot run here.',
  );
