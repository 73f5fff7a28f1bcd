import { parentPort } from 'node:worker_threads';
import { newQuickJSWASMModuleFromVariant } from 'quickjs-emscripten-core';
import type { FromSandbox, HostError, ToSandbox } from './sandbox-protocol.ts';
import { execute, inspect, SandboxCrash } from './sandbox.ts';

/**
 * A sandbox thread: one QuickJS module, one run at a time, host calls forwarded to the main
 * thread (where policies and the database live). If the sandbox itself breaks, the thread says
 * so and exits; the pool starts another.
 */
const port = parentPort!;
const module = await newQuickJSWASMModuleFromVariant(import('@jitl/quickjs-wasmfile-release-sync'));
const calls = new Map<number, { resolve: (value: unknown) => void; reject: (error: HostError) => void }>();
let nextCall = 0;

const send = (message: FromSandbox) => port.postMessage(message);

const hostCall = (name: string, args: unknown[]) =>
  new Promise<unknown>((resolve, reject) => {
    const callId = nextCall++;
    calls.set(callId, { resolve, reject });
    send({ kind: 'call', callId, name, args });
  });

port.on('message', (message: ToSandbox) => {
  if (message.kind === 'reply') {
    const call = calls.get(message.callId);
    calls.delete(message.callId);
    if (message.error) call?.reject(message.error);
    else call?.resolve(message.value);
    return;
  }
  if (message.kind === 'inspect') {
    try {
      send({ kind: 'inspected', failure: inspect(module, message.code, message.limits) });
    } catch (error) {
      send({ kind: 'inspected', failure: { kind: 'crashed', message: String((error as Error)?.message ?? error) } });
      process.exit(1);
    }
    return;
  }
  execute(module, message.job, hostCall).then(
    (outcome) => {
      calls.clear();
      send({ kind: 'ran', outcome });
    },
    (error: unknown) => {
      const message = error instanceof SandboxCrash ? error.message : String(error);
      send({
        kind: 'ran',
        outcome: { ok: false, error: { kind: 'crashed', message }, logs: [], logsTruncated: false, durationMs: 0 },
      });
      process.exit(1);
    },
  );
});

send({ kind: 'ready' });
