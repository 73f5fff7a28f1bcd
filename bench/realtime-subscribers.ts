import { Agent, request } from 'node:http';
import { parentPort } from 'node:worker_threads';

/** What the main thread asks of the subscribers' thread, one request at a time. */
export type SubscribersRequest =
  | { op: 'open'; url: string; tokens: string[] }
  | { op: 'reset' }
  | { op: 'sentinel'; number: number; timeoutMs: number }
  | { op: 'write'; url: string; token: string; records: object[]; perSecond: number }
  | { op: 'summary' }
  /** This thread's CPU seconds so far. */
  | { op: 'cpu' }
  | { op: 'close' };

export interface SubscribersSummary {
  /** Record events received since the last reset whose record carried a send time (`sentAt` > 0), by every subscriber together. */
  stamped: number;
  /** When the last of them arrived (timeOrigin + now, ms: comparable across threads). */
  lastAt: number;
  p50: number;
  p99: number;
}

const binsPerMs = 10;
const maxMs = 10_000;
const now = () => performance.timeOrigin + performance.now();

/**
 * Latencies in 0.1 ms bins up to 10 s (beyond goes in the last one): no allocation per event,
 * and quantiles without sorting a million numbers.
 */
class Histogram {
  private readonly bins = new Uint32Array(maxMs * binsPerMs + 1);
  count = 0;

  add(ms: number): void {
    this.bins[Math.min(this.bins.length - 1, Math.max(0, Math.round(ms * binsPerMs)))]! += 1;
    this.count += 1;
  }

  quantile(q: number): number {
    const rank = Math.min(this.count - 1, Math.floor(q * this.count));
    let seen = 0;
    for (let bin = 0; bin < this.bins.length; bin++) {
      seen += this.bins[bin]!;
      if (seen > rank) return bin / binsPerMs;
    }
    return maxMs;
  }
}

const newline = 0x0a;
const sentAtField = Buffer.from('"sentAt":');
const recordEvent = Buffer.from('event: record_');

/** The JSON number at `index`, read off the bytes (no string made). */
function numberAt(bytes: Buffer, index: number): number {
  const sign = bytes[index] === 0x2d ? -1 : 1;
  let value = 0;
  let scale = 0;
  for (let at = sign < 0 ? index + 1 : index; at < bytes.length; at++) {
    const byte = bytes[at]!;
    if (byte >= 0x30 && byte <= 0x39) {
      value = value * 10 + byte - 0x30;
      if (scale) scale *= 10;
    } else if (byte === 0x2e && !scale) scale = 1;
    else break;
  }
  return (sign * value) / (scale || 1);
}

/**
 * One subscriber's stream, read by a minimal SSE parser over the raw bytes: lines split on `\n`
 * (Cordon writes no `\r`), a blank line dispatches, and of a record event's data only the number
 * after `"sentAt":` is read — no string decoding, no JSON parsing, no line copied.
 */
class Subscriber {
  opened = false;
  /** The highest sentinel seen: a record with `sentAt` = −n is sentinel n. */
  sentinel = 0;
  private rest: Buffer | undefined;
  private record = false;
  private other: string | undefined;
  private sentAt = Number.NaN;
  private hasId = false;
  private readonly group: Subscribers;

  constructor(group: Subscribers) {
    this.group = group;
  }

  feed(chunk: Buffer): void {
    const at = now();
    const bytes = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let start = 0;
    for (let end = bytes.indexOf(newline); end >= 0; end = bytes.indexOf(newline, start)) {
      const first = bytes[start];
      if (end === start) this.dispatch(at);
      else if (first === 0x64 /* data */) {
        const field = bytes.indexOf(sentAtField, start);
        if (field >= 0 && field < end) this.sentAt = numberAt(bytes, field + sentAtField.length);
      } else if (first === 0x65 /* event */) {
        if (recordEvent.compare(bytes, start, start + recordEvent.length) === 0) this.record = true;
        else this.other = bytes.toString('utf8', start + 6, end).trim();
      } else if (first === 0x69 /* id */) this.hasId = true;
      start = end + 1;
    }
    this.rest = start === bytes.length ? undefined : bytes.subarray(start);
  }

  private dispatch(at: number): void {
    if (this.record) this.group.received(this, this.sentAt, at);
    else if (this.other !== undefined) this.group.failed(`a stream got "${this.other}"`);
    else if (this.hasId) this.opened = true;
    this.record = false;
    this.other = undefined;
    this.sentAt = Number.NaN;
    this.hasId = false;
  }
}

/** Every subscriber of the bench, on this thread: their counts, their latencies, the waits on them. */
class Subscribers {
  readonly all: Subscriber[] = [];
  private readonly requests: (() => void)[] = [];
  private histogram = new Histogram();
  private lastAt = 0;
  private failure: string | undefined;
  private waiting: { sentinel: number; reached: number; settle: (failure?: string) => void } | undefined;
  private closing = false;

  received(subscriber: Subscriber, sentAt: number, at: number): void {
    if (sentAt > 0) {
      this.histogram.add(at - sentAt);
      this.lastAt = at;
    } else if (sentAt < 0 && -sentAt > subscriber.sentinel) {
      subscriber.sentinel = -sentAt;
      const waiting = this.waiting;
      if (waiting && subscriber.sentinel >= waiting.sentinel && ++waiting.reached === this.all.length) {
        this.waiting = undefined;
        waiting.settle();
      }
    }
  }

  failed(reason: string): void {
    if (this.closing) return;
    this.failure ??= reason;
    this.waiting?.settle(reason);
    this.waiting = undefined;
  }

  /** Opens the streams a few at a time; resolves when each has its first `id:` (it is live). */
  async open(url: string, tokens: string[]): Promise<void> {
    let next = 0;
    const openOne = () =>
      new Promise<void>((resolve, reject) => {
        const token = tokens[next++]!;
        const subscriber = new Subscriber(this);
        this.all.push(subscriber);
        const outgoing = request(url, {
          agent: false,
          headers: { accept: 'text/event-stream', authorization: `Bearer ${token}` },
        });
        this.requests.push(() => outgoing.destroy());
        outgoing.on('error', (error) => (subscriber.opened ? this.failed(String(error)) : reject(error)));
        outgoing.on('response', (response) => {
          if (response.statusCode !== 200) {
            let body = '';
            response.on('data', (chunk: Buffer) => (body += chunk.toString()));
            response.on('end', () => reject(new Error(`stream refused: ${response.statusCode} ${body}`)));
            return;
          }
          response.on('data', (chunk: Buffer) => {
            const was = subscriber.opened;
            subscriber.feed(chunk);
            if (!was && subscriber.opened) resolve();
          });
          response.on('close', () => this.failed('a stream ended'));
        });
        outgoing.end();
      });
    const opener = async () => {
      while (next < tokens.length) await openOne();
    };
    await Promise.all(Array.from({ length: 25 }, opener));
  }

  reset(): void {
    if (this.failure) throw new Error(this.failure);
    this.histogram = new Histogram();
    this.lastAt = 0;
  }

  /** Until every subscriber has seen sentinel `number` (each sees its events in order: all before it too). */
  sentinel(number: number, timeoutMs: number): Promise<void> {
    if (this.failure) return Promise.reject(new Error(this.failure));
    const reached = this.all.filter((subscriber) => subscriber.sentinel >= number).length;
    if (reached === this.all.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => this.failed(`sentinel ${number} reached ${this.waiting?.reached} streams`),
        timeoutMs,
      );
      this.waiting = {
        sentinel: number,
        reached,
        settle: (failure) => {
          clearTimeout(timer);
          if (failure) reject(new Error(failure));
          else resolve();
        },
      };
    });
  }

  summary(): SubscribersSummary {
    if (this.failure) throw new Error(this.failure);
    return {
      stamped: this.histogram.count,
      lastAt: this.lastAt,
      p50: this.histogram.quantile(0.5),
      p99: this.histogram.quantile(0.99),
    };
  }

  close(): void {
    this.closing = true;
    for (const destroy of this.requests.splice(0)) destroy();
  }
}

/**
 * Creates `records` at a steady rate, each sent on its own schedule (not a fixed pause after the
 * last), with its send time as `sentAt`; resolves when every create has answered 201.
 */
async function write(url: string, token: string, records: object[], perSecond: number): Promise<void> {
  const agent = new Agent({ keepAlive: true });
  const send = (body: string, again = false): Promise<void> =>
    new Promise((resolve, reject) => {
      const outgoing = request(url, {
        agent,
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      });
      outgoing.on('error', (error: NodeJS.ErrnoException) =>
        // A kept-alive socket the server closed as this request went out: sent again once, as
        // Node's documentation advises (the record's send time stays the first one).
        !again && outgoing.reusedSocket && error.code === 'ECONNRESET' ? resolve(send(body, true)) : reject(error),
      );
      outgoing.on('response', (response) => {
        response.resume();
        response.on('end', () =>
          response.statusCode === 201 ? resolve() : reject(new Error(`create: ${response.statusCode}`)),
        );
      });
      outgoing.end(body);
    });
  const started = now();
  const answers: Promise<void>[] = [];
  let failure: unknown;
  try {
    for (const [index, record] of records.entries()) {
      if (failure) break;
      const due = started + (index * 1_000) / perSecond;
      if (due > now()) await new Promise((resolve) => setTimeout(resolve, due - now()));
      answers.push(send(JSON.stringify({ data: { ...record, sentAt: now() } })).catch((error) => (failure ??= error)));
    }
    await Promise.all(answers);
    if (failure) throw failure;
  } finally {
    agent.destroy();
  }
}

/**
 * The subscribers' thread: a thousand SSE connections read off the main thread, and the steady
 * creates sent from it, so that the bench's own client work never queues behind (or delays) the
 * server's on the main thread's event loop.
 */
const subscribers = new Subscribers();
parentPort!.on('message', async (message: SubscribersRequest) => {
  try {
    let reply: unknown = null;
    if (message.op === 'open') await subscribers.open(message.url, message.tokens);
    else if (message.op === 'reset') subscribers.reset();
    else if (message.op === 'sentinel') await subscribers.sentinel(message.number, message.timeoutMs);
    else if (message.op === 'write') await write(message.url, message.token, message.records, message.perSecond);
    else if (message.op === 'summary') reply = subscribers.summary();
    else if (message.op === 'cpu') {
      const usage = process.threadCpuUsage();
      reply = (usage.user + usage.system) / 1e6;
    } else subscribers.close();
    parentPort!.postMessage({ reply });
  } catch (error) {
    parentPort!.postMessage({ failure: String(error) });
  }
});
