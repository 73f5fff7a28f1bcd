import { parentPort } from 'node:worker_threads';
import type { ToSandbox } from '../../src/features/functions/sandbox-protocol.ts';

/**
 * A sandbox thread that misbehaves on request, as a real one could only through a bug: code
 * naming HOST_HANG blocks the thread itself (outside QuickJS, so no deadline stops it), code
 * naming HOST_EXIT kills it. Anything else runs in the real sandbox, which listens after this.
 */
parentPort!.on('message', (message: ToSandbox) => {
  if (message.kind !== 'run') return;
  if (message.job.code.includes('HOST_HANG')) for (;;);
  if (message.job.code.includes('HOST_EXIT')) process.exit(7);
});
await import('../../src/features/functions/sandbox-thread.ts');
