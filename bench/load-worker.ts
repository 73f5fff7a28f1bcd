import { parentPort } from 'node:worker_threads';
import autocannon from 'autocannon';

// Off the main thread autocannon leaves its histograms encoded, for the thread that would merge them.
const aggregate = (
  autocannon as unknown as { aggregateResult: (results: unknown[], options: unknown) => autocannon.Result }
).aggregateResult;

/**
 * The load generator's thread: it stays up for the whole bench and runs one autocannon window
 * per message, so a round costs no thread start-up and measures only its window.
 */
parentPort!.on('message', async (options: autocannon.Options) => {
  try {
    const result = aggregate([await autocannon({ ...options, sampleInt: 25 })], options);
    // Over the window's own clock (`requests.average` counts whole samples). The requests still
    // in flight when the window closes were half served on average: counting them as halves
    // keeps a short window from under-counting by up to one request per connection.
    const seconds = (result.finish.getTime() - result.start.getTime()) / 1000;
    const { total, sent } = result.requests as typeof result.requests & { sent: number };
    parentPort!.postMessage({
      requestsPerSecond: (total + sent) / 2 / seconds,
      completed: total,
      p50: result.latency.p50,
      p99: result.latency.p99,
      errors: result.errors,
      non2xx: result.non2xx,
    });
  } catch (error) {
    parentPort!.postMessage({ failure: String(error) });
  }
});
