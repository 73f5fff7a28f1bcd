import { Agent, request } from 'node:http';
import { parentPort } from 'node:worker_threads';
import autocannon from 'autocannon';

// Off the main thread autocannon leaves its histograms encoded, for the thread that would merge them.
const aggregate = (
  autocannon as unknown as { aggregateResult: (results: unknown[], options: unknown) => autocannon.Result }
).aggregateResult;

/** One autocannon window over the window's own clock. */
async function closedLoop(options: autocannon.Options) {
  const result = aggregate([await autocannon({ ...options, sampleInt: 25 })], options);
  // Over the window's own clock (`requests.average` counts whole samples). The requests still
  // in flight when the window closes were half served on average: counting them as halves
  // keeps a short window from under-counting by up to one request per connection.
  const seconds = (result.finish.getTime() - result.start.getTime()) / 1000;
  const { total, sent } = result.requests as typeof result.requests & { sent: number };
  return {
    requestsPerSecond: (total + sent) / 2 / seconds,
    completed: total,
    p50: result.latency.p50,
    p99: result.latency.p99,
    errors: result.errors,
    non2xx: result.non2xx,
  };
}

/** GETs at a fixed rate on their schedule; latency from the scheduled time (no coordinated omission). */
async function openLoop(options: {
  url: string;
  headers: Record<string, string>;
  rate: number;
  connections: number;
  millis: number;
}) {
  const agent = new Agent({ keepAlive: true, maxSockets: options.connections });
  const latencies: number[] = [];
  let errors = 0;
  let non2xx = 0;
  let sent = 0;
  const start = performance.now();
  const total = Math.round((options.rate * options.millis) / 1000);
  const answered: Promise<void>[] = [];
  const send = (scheduled: number) =>
    new Promise<void>((resolve) => {
      const outgoing = request(options.url, { agent, headers: options.headers }, (response) => {
        response.resume();
        response.on('end', () => {
          if (response.statusCode! >= 300) non2xx += 1;
          latencies.push(performance.now() - scheduled);
          resolve();
        });
      });
      outgoing.on('error', () => {
        errors += 1;
        resolve();
      });
      outgoing.end();
    });
  while (sent < total) {
    const now = performance.now();
    while (sent < total && start + (sent * 1000) / options.rate <= now) {
      answered.push(send(start + (sent * 1000) / options.rate));
      sent += 1;
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(answered);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const at = (q: number) => latencies[Math.min(latencies.length - 1, Math.floor(q * latencies.length))] ?? 0;
  return { sent, completed: latencies.length, p50: at(0.5), p99: at(0.99), errors, non2xx };
}

/**
 * The load generator's thread: it stays up for the whole bench and runs one window per message,
 * so a round costs no thread start-up and measures only its window.
 */
parentPort!.on('message', async ({ kind, ...options }: { kind: 'closed' | 'open' } & Record<string, unknown>) => {
  try {
    parentPort!.postMessage(
      kind === 'open'
        ? await openLoop(options as Parameters<typeof openLoop>[0])
        : await closedLoop(options as unknown as autocannon.Options),
    );
  } catch (error) {
    parentPort!.postMessage({ failure: String(error) });
  }
});
