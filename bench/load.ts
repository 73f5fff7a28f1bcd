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

/** One request to the load thread, answered with its result; windows run one at a time, in call order. */
function onLoadThread<T>(message: Record<string, unknown>): Promise<T> {
  const window = queue.then(async () => {
    worker ??= new Worker(new URL('./load-worker.ts', import.meta.url));
    const thread = worker;
    thread.ref();
    let settle: { onMessage: (reply: T | { failure: string }) => void; onError: (error: Error) => void };
    try {
      const reply = await new Promise<T | { failure: string }>((resolve, reject) => {
        settle = {
          onMessage: resolve,
          onError: (error) => {
            worker = undefined;
            reject(error);
          },
        };
        thread.once('message', settle.onMessage);
        thread.once('error', settle.onError);
        thread.postMessage(message);
      });
      if (typeof reply === 'object' && reply !== null && 'failure' in reply) {
        throw new Error(`load generator: ${reply.failure}`);
      }
      return reply as T;
    } finally {
      thread.off('message', settle!.onMessage);
      thread.off('error', settle!.onError);
      thread.unref();
    }
  });
  queue = window.catch(() => undefined);
  return window;
}

/**
 * A bounded autocannon window (closed loop: each connection sends its next request when the last
 * is answered) from the load thread, one for the whole process, referenced only while a window runs.
 */
export function load(options: {
  url: string;
  method?: 'GET' | 'POST';
  headers?: Record<string, string>;
  body?: string;
  connections: number;
  millis: number;
}): Promise<LoadResult> {
  return onLoadThread<LoadResult>({
    kind: 'closed',
    url: options.url,
    method: options.method ?? 'GET',
    headers: options.headers ?? {},
    ...(options.body ? { body: options.body } : {}),
    connections: options.connections,
    duration: options.millis / 1000,
  });
}

export interface OpenLoadResult {
  /** Requests sent (on schedule) and answered in the window. */
  sent: number;
  completed: number;
  /** From each request's scheduled send time to its last response byte: queueing included. */
  p50: number;
  p99: number;
  errors: number;
  non2xx: number;
}

/**
 * An open-loop window: requests at a fixed offered `rate`, each on its schedule whether or not
 * earlier ones were answered (up to `connections` sockets; beyond, they wait in the agent's queue,
 * and that wait counts), so a slow server cannot slow the load and hide its latency.
 */
export function openLoad(options: {
  url: string;
  headers?: Record<string, string>;
  rate: number;
  connections: number;
  millis: number;
}): Promise<OpenLoadResult> {
  return onLoadThread<OpenLoadResult>({ kind: 'open', ...options, headers: options.headers ?? {} });
}
