import {
  shouldInterruptAfterDeadline,
  type QuickJSContext,
  type QuickJSDeferredPromise,
  type QuickJSHandle,
  type QuickJSRuntime,
  type QuickJSWASMModule,
} from 'quickjs-emscripten-core';
import { failureOf, prelude } from './sandbox-guest.ts';
import {
  sandboxCaps,
  type HostCall,
  type HostError,
  type Limits,
  type LogLevel,
  type LogLine,
  type RunFailure,
  type RunOutcome,
  type SandboxJob,
} from './sandbox-protocol.ts';

/**
 * One function run in QuickJS (quickjs-emscripten's sync build), inside a worker thread: a fresh
 * runtime and context per run (≈0.2 ms), so nothing of one run survives into the next. The guest
 * sees no host object: `console` and `context.api` are built inside the sandbox on two host
 * functions, and values cross the boundary only as JSON strings.
 */

/** The sandbox itself failed (the host's own stack, a leak assertion): the module must not be reused. */
export class SandboxCrash extends Error {
  override name = 'SandboxCrash';
}

interface Sandbox {
  runtime: QuickJSRuntime;
  context: QuickJSContext;
  /** The prelude's `{ invoke, defines }`. */
  entry: QuickJSHandle;
  dispose: () => void;
}

/**
 * A fresh runtime and context with the limits in force, the prelude evaluated and the function's
 * code loaded (its top level runs here, under the same limits). Never throws a guest error: it
 * returns the failure, with everything disposed.
 */
function open(
  module: QuickJSWASMModule,
  code: string,
  limits: Limits,
  apiNames: readonly string[],
  hostCall: (context: QuickJSContext, name: string, argsJson: string) => QuickJSHandle,
  log: (level: LogLevel, message: string) => boolean,
): Sandbox | RunFailure {
  const deadline = Date.now() + limits.timeoutMs;
  const runtime = module.newRuntime();
  runtime.setMemoryLimit(limits.memoryMb * 1024 * 1024);
  runtime.setMaxStackSize(sandboxCaps.stackBytes);
  runtime.setInterruptHandler(shouldInterruptAfterDeadline(deadline));
  const context = runtime.newContext();
  const close = () => {
    context.dispose();
    runtime.dispose();
  };
  const hostFunctions = [
    context.newFunction('hostCall', (name, args) =>
      hostCall(context, context.getString(name), context.getString(args)),
    ),
    context.newFunction('hostLog', (level, message) =>
      log(context.getString(level) as LogLevel, context.getString(message)) ? context.true : context.false,
    ),
  ];
  const names = context.newArray();
  apiNames.forEach((name, index) => {
    const handle = context.newString(name);
    context.setProp(names, index, handle);
    handle.dispose();
  });
  const caps = [
    context.newNumber(sandboxCaps.resultBytes),
    context.newNumber(sandboxCaps.logBytes),
    context.newNumber(sandboxCaps.callsPerRun),
  ];
  const built = context.evalCode(prelude, 'prelude.js');
  let entry: QuickJSHandle | undefined;
  let failure: RunFailure | undefined;
  if (built.error) failure = failureOf(context, built.error, limits.timeoutMs);
  else {
    const called = context.callFunction(built.value, context.undefined, ...hostFunctions, names, ...caps);
    built.value.dispose();
    if (called.error) failure = failureOf(context, called.error, limits.timeoutMs);
    else entry = called.value;
  }
  for (const handle of [...hostFunctions, names, ...caps]) handle.dispose();
  if (!failure && entry) {
    // Script code: `run` is a global, and a static `import` is a syntax error.
    const loaded = context.evalCode(code, 'function.js', { type: 'global' });
    if (loaded.error) {
      failure = failureOf(context, loaded.error, limits.timeoutMs);
      if (failure.kind === 'error') failure = { kind: 'invalid', message: failure.message };
    } else loaded.value.dispose();
  }
  if (failure) {
    entry?.dispose();
    close();
    return failure;
  }
  return {
    runtime,
    context,
    entry: entry!,
    dispose: () => {
      entry!.dispose();
      close();
    },
  };
}

/**
 * Loads the code as a save would: it must compile, its top level must finish within the limits,
 * and it must define `async function run(event, context)`.
 */
export function inspect(module: QuickJSWASMModule, code: string, limits: Limits): RunFailure | null {
  // No api names: the prelude builds an empty `context.api`, so the host call is unreachable.
  const sandbox = open(
    module,
    code,
    limits,
    [],
    (context) => context.undefined,
    () => true,
  );
  if ('kind' in sandbox) return sandbox.kind === 'error' ? { kind: 'invalid', message: sandbox.message } : sandbox;
  const { context } = sandbox;
  try {
    const defines = context.getProp(sandbox.entry, 'defines');
    const answer = context.callFunction(defines, context.undefined);
    defines.dispose();
    if (answer.error) return failureOf(context, answer.error, limits.timeoutMs);
    const kind = context.getString(answer.value);
    answer.value.dispose();
    if (kind === 'async') return null;
    return {
      kind: 'invalid',
      message:
        kind === 'function'
          ? 'run must be an async function: async function run(event, context) { … }'
          : 'the code must define async function run(event, context)',
    };
  } finally {
    sandbox.dispose();
  }
}

/** Runs the job's code on its event; host calls go to `call`. Rejects only with a `SandboxCrash`. */
export function execute(module: QuickJSWASMModule, job: SandboxJob, call: HostCall): Promise<RunOutcome> {
  const started = performance.now();
  const logs: LogLine[] = [];
  let logBytes = 0;
  let logsTruncated = false;
  const log = (level: LogLevel, message: string): boolean => {
    if (logsTruncated) return false;
    const room = sandboxCaps.logBytes - logBytes;
    const size = Buffer.byteLength(message);
    if (logs.length >= sandboxCaps.logLines || size > room) {
      if (room > 0 && logs.length < sandboxCaps.logLines)
        logs.push({ level, message: Buffer.from(message).subarray(0, room).toString() });
      logsTruncated = true;
      return false;
    }
    logs.push({ level, message });
    logBytes += size;
    return true;
  };
  const outcome = (ended: { ok: true; result: unknown } | { ok: false; error: RunFailure }): RunOutcome => ({
    ...ended,
    logs,
    logsTruncated,
    durationMs: Number((performance.now() - started).toFixed(3)),
  });

  return new Promise((resolve, reject) => {
    const deferreds = new Set<QuickJSDeferredPromise>();
    let finished = false;
    let resultPromise: QuickJSHandle | undefined;
    let wallClock: NodeJS.Timeout | undefined;

    // Only the prelude calls this, and it refuses calls past `sandboxCaps.callsPerRun` itself.
    const hostCall = (context: QuickJSContext, name: string, argsJson: string): QuickJSHandle => {
      const deferred = context.newPromise();
      deferreds.add(deferred);
      Promise.resolve()
        .then(() => {
          // A run that ended (its deadline, its result) sends nothing more to the host: calls queued
          // by a loop that never awaited would otherwise act after its run was logged.
          if (finished) throw { name: 'ApiError', message: 'the run has ended' } satisfies HostError;
          if (argsJson.length > sandboxCaps.argumentBytes) {
            const message = `the arguments of api.${name} are larger than ${sandboxCaps.argumentBytes} bytes of JSON`;
            throw { name: 'ApiError', message, code: 'payload_too_large', status: 413 } satisfies HostError;
          }
          return call(name, JSON.parse(argsJson) as unknown[]);
        })
        .then(
          (value) => {
            if (finished) return;
            const handle = context.newString(JSON.stringify(value ?? null));
            deferred.resolve(handle);
            handle.dispose();
          },
          (error: HostError) => {
            if (finished) return;
            const handle = context.newError({ name: error.name, message: error.message });
            for (const [key, value] of [
              ['code', error.code],
              ['status', error.status],
              ['errors', error.errors === undefined ? undefined : JSON.stringify(error.errors)],
            ] as const) {
              if (value === undefined) continue;
              const property = typeof value === 'number' ? context.newNumber(value) : context.newString(value);
              context.setProp(handle, key, property);
              property.dispose();
            }
            deferred.reject(handle);
            handle.dispose();
          },
        )
        .finally(() => {
          deferreds.delete(deferred);
          pump();
        })
        .catch(crash);
      return deferred.handle;
    };

    const opened = (() => {
      try {
        return open(module, job.code, job, job.apiNames, hostCall, log);
      } catch (error) {
        return new SandboxCrash(String((error as Error)?.message ?? error));
      }
    })();
    if (opened instanceof SandboxCrash) return reject(opened);
    if ('kind' in opened) return resolve(outcome({ ok: false, error: opened }));
    const sandbox: Sandbox = opened;
    const { runtime, context } = sandbox;

    function finish(ended: { ok: true; result: unknown } | { ok: false; error: RunFailure }): void {
      if (finished) return;
      finished = true;
      clearTimeout(wallClock);
      try {
        for (const deferred of deferreds) deferred.dispose();
        resultPromise?.dispose();
        sandbox.dispose();
      } catch (error) {
        return reject(new SandboxCrash(String((error as Error)?.message ?? error)));
      }
      resolve(outcome(ended));
    }

    /**
     * What a guest error says, but past the deadline a timeout whatever it says: the interrupt can
     * land inside a builtin (seen in \`Promise.reject\`), which then fails with a \`TypeError\` of its
     * own instead of \`interrupted\`. Nothing else stops a guest that is running at its deadline.
     */
    function failed(handle: QuickJSHandle): RunFailure {
      const failure = failureOf(context, handle, job.timeoutMs);
      if (failure.kind !== 'error' || performance.now() - started < job.timeoutMs) return failure;
      return { kind: 'timeout', message: `exceeded ${job.timeoutMs} ms` };
    }

    /** The host itself threw inside WebAssembly: the runtime is not safe to touch again. */
    function crash(error: unknown): void {
      if (finished) return;
      finished = true;
      clearTimeout(wallClock);
      reject(new SandboxCrash(String((error as Error)?.message ?? error)));
    }

    /** Runs the guest's queued jobs, then looks at the run's promise: after every host settlement. */
    function pump(): void {
      if (finished) return;
      const jobs = runtime.executePendingJobs();
      if (jobs.error) return finish({ ok: false, error: failed(jobs.error) });
      const state = context.getPromiseState(resultPromise!);
      if (state.type === 'pending') {
        if (deferreds.size === 0)
          finish({ ok: false, error: { kind: 'stalled', message: 'run() awaits something that can never settle' } });
        return;
      }
      if (state.type === 'rejected') return finish({ ok: false, error: failed(state.error) });
      const json = context.getString(state.value);
      state.value.dispose();
      if (Buffer.byteLength(json) > sandboxCaps.resultBytes) {
        return finish({
          ok: false,
          error: { kind: 'result', message: `the result is larger than ${sandboxCaps.resultBytes} bytes of JSON` },
        });
      }
      finish({ ok: true, result: JSON.parse(json) });
    }

    try {
      // The interrupt handler stops the guest's own CPU at the deadline; this covers time spent
      // waiting for host calls.
      wallClock = setTimeout(
        () => finish({ ok: false, error: { kind: 'timeout', message: `exceeded ${job.timeoutMs} ms` } }),
        Math.max(0, started + job.timeoutMs - performance.now()),
      );
      const invoke = context.getProp(sandbox.entry, 'invoke');
      const event = context.newString(JSON.stringify(job.event ?? null));
      const called = context.callFunction(invoke, context.undefined, event);
      invoke.dispose();
      event.dispose();
      if (called.error) return finish({ ok: false, error: failed(called.error) });
      resultPromise = called.value;
      pump();
    } catch (error) {
      crash(error);
    }
  });
}
