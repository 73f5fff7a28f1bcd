import type { QuickJSContext, QuickJSHandle } from 'quickjs-emscripten-core';
import type { RunFailure } from './sandbox-protocol.ts';

/** The guest's side of a sandbox: what runs before the function's code, and how its errors read. */

/**
 * Evaluated before the function's code, in the same context. It keeps the builtins it needs
 * before user code can replace them, never puts `hostCall`/`hostLog` on the global object, and
 * returns `invoke(eventJson)` and `defines()`.
 */
export const prelude = `(function (hostCall, hostLog, apiNames, resultChars, lineChars, callCap) {
  'use strict';
  const { parse, stringify } = JSON;
  const { freeze, getPrototypeOf } = Object;
  const asyncFunction = getPrototypeOf(async function () {});
  const text = (value) => {
    if (typeof value === 'string') return value;
    if (value instanceof Error) return value.name + ': ' + value.message;
    try { const json = stringify(value); return json === undefined ? String(value) : json; } catch { return String(value); }
  };
  let full = false;
  const logger = (level) => (...values) => {
    if (full) return;
    const line = values.map(text).join(' ');
    full = !hostLog(level, line.length > lineChars ? line.slice(0, lineChars) : line);
  };
  globalThis.console = freeze({
    log: logger('log'), info: logger('info'), warn: logger('warn'), error: logger('error'), debug: logger('log'),
  });
  const failed = (error) => {
    if (error && typeof error.errors === 'string') error.errors = parse(error.errors);
    throw error;
  };
  // Past the cap a call is refused here, in the guest: no host promise is made for it, and a loop
  // that never awaits fills only its own memory.
  let calls = 0;
  const tooMany = () => {
    const error = new Error('a run makes at most ' + callCap + ' api calls');
    error.name = 'ApiError';
    error.code = 'too_many_calls';
    return Promise.reject(error);
  };
  const api = {};
  for (const name of apiNames)
    api[name] = (...args) => (++calls > callCap ? tooMany() : hostCall(name, stringify(args)).then(parse, failed));
  const context = freeze({ api: freeze(api) });
  const resultError = (message) => { const error = new Error(message); error.name = 'ResultError'; return error; };
  return {
    defines: () => typeof run !== 'function' ? 'nothing' : getPrototypeOf(run) === asyncFunction ? 'async' : 'function',
    invoke: async (eventJson) => {
      if (typeof run !== 'function') throw new TypeError('the code must define async function run(event, context)');
      const result = await run(parse(eventJson), context);
      let json;
      try { json = stringify(result === undefined ? null : result); } catch (error) { throw resultError('the result is not JSON: ' + error.message); }
      if (json === undefined) return 'null';
      if (json.length > resultChars) throw resultError('the result is larger than ' + resultChars + ' bytes of JSON');
      return json;
    },
  };
})`;

/** What a guest error says, and which limit (if any) it was. */
export function failureOf(context: QuickJSContext, handle: QuickJSHandle, timeoutMs: number): RunFailure {
  let dumped: unknown;
  try {
    dumped = context.dump(handle);
  } catch {
    // Dumping needs memory of its own: an exhausted runtime may not manage it.
    dumped = { name: 'InternalError', message: 'out of memory' };
  } finally {
    handle.dispose();
  }
  const error = typeof dumped === 'object' && dumped !== null ? (dumped as Record<string, unknown>) : undefined;
  const name = typeof error?.name === 'string' ? error.name : 'Error';
  const message = error
    ? typeof error.message === 'string'
      ? error.message
      : JSON.stringify(dumped)
    : `${JSON.stringify(dumped) ?? String(dumped)}`;
  // The prelude's frames are ours, not the function's.
  const stack =
    typeof error?.stack === 'string'
      ? error.stack
          .split('\n')
          .map((line) => line.trim())
          .filter((line) => line && !line.includes('prelude.js'))
          .join('\n')
      : '';
  if (name === 'InternalError' && message === 'interrupted')
    return { kind: 'timeout', message: `exceeded ${timeoutMs} ms` };
  if (/out of memory|invalid (string|array) length|array buffer length/i.test(message))
    return { kind: 'memory', message: `${name}: ${message} (memory limit reached)` };
  if (/stack overflow/i.test(message)) return { kind: 'stack', message: `${name}: ${message}` };
  if (name === 'ResultError') return { kind: 'result', message };
  const thrown = error ? `${name}: ${message}` : `uncaught ${message}`;
  const full = stack ? `${thrown}\n${stack}` : thrown;
  return { kind: 'error', message: full.slice(0, 4_000) };
}
