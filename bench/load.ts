import { createServer, type RequestListener } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Worker } from 'node:worker_threads';

export interface LoadResult {
  requestsPerSecond: number;
  /** Requests completed in the window: latency percentiles of a window with few say little. */
  completed: number;
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

/** Serves `app` (an Express app, or any request listener) on loopback for the duration of `work`. */
export async function serve<T>(app: RequestListener, work: (url: string) => Promise<T>): Promise<T> {
  const server = createServer(app).listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  try {
    return await work(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

let worker: Worker | undefined;
let queue: Promise<unknown> = Promise.resolve();

/**
 * A bounded autocannon window from the load thread (one for the whole process, referenced only
 * while a window runs). Windows run one at a time, in call order.
 */
export function load(options: {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  millis: number;
}): Promise<LoadResult> {
  const window = queue.then(async () => {
    worker ??= new Worker(new URL('./load-worker.ts', import.meta.url));
    const thread = worker;
    thread.ref();
    let settle: { onMessage: (reply: LoadResult | { failure: string }) => void; onError: (error: Error) => void };
    try {
      const reply = await new Promise<LoadResult | { failure: string }>((resolve, reject) => {
        settle = {
          onMessage: resolve,
          onError: (error) => {
            worker = undefined;
            reject(error);
          },
        };
        thread.once('message', settle.onMessage);
        thread.once('error', settle.onError);
        thread.postMessage({
          url: options.url,
          method: options.method ?? 'GET',
          headers: options.headers ?? {},
          ...(options.body ? { body: options.body } : {}),
          connections: options.connections,
          duration: options.millis / 1000,
        });
      });
      if ('failure' in reply) throw new Error(`load generator: ${reply.failure}`);
      return reply;
    } finally {
      thread.off('message', settle!.onMessage);
      thread.off('error', settle!.onError);
      thread.unref();
    }
  });
  queue = window.catch(() => undefined);
  return window;
}
