import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { CordonError, errorOf, isTokenProblem } from './errors.ts';
import type { RealtimeEvent, RealtimeTuning, SubscribeOptions } from './realtime.ts';
import type { TokenSource } from './token.ts';

export interface StreamConnection {
  url: string;
  token: TokenSource;
  fetch: typeof globalThis.fetch;
  tuning: RealtimeTuning;
}

/** What to do after a connection ends: reconnect now (with a renewed token), after a backoff, or never. */
type Next = { then: 'now'; renewToken: boolean } | { then: 'backoff'; atLeastMs?: number } | { then: 'stop' };

const recordEvents = new Set(['record_created', 'record_updated', 'record_deleted']);
/** A stream open this long was healthy: the next failure starts the backoff afresh. */
const healthyAfterMs = 30_000;

/** Seconds or an HTTP date, as `Retry-After` allows. */
function retryAfterMs(response: Response): number | undefined {
  const value = response.headers.get('retry-after');
  if (!value) return undefined;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.max(0, ms) : undefined;
}

/** One subscription: connects, reads, reconnects with `Last-Event-ID` until stopped or refused for good. */
export class EventStream<Data extends object> {
  lastEventId: string | undefined;
  private readonly connection: StreamConnection;
  private readonly options: SubscribeOptions<Data>;
  private stopped = false;
  private attempt = 0;
  private serverDelayMs = 0;
  private current: AbortController | undefined;
  private wake: (() => void) | undefined;

  constructor(connection: StreamConnection, options: SubscribeOptions<Data>) {
    this.connection = connection;
    this.options = options;
    this.lastEventId = options.lastEventId;
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.current?.abort();
    this.wake?.();
  }

  private async run(): Promise<void> {
    let renewToken = false;
    while (!this.stopped) {
      const next = await this.connect(renewToken);
      if (this.stopped || next.then === 'stop') return;
      renewToken = next.then === 'now' && next.renewToken;
      if (next.then === 'backoff') await this.sleep(Math.max(this.backoffMs(), next.atLeastMs ?? 0));
    }
  }

  /** Exponential, capped, with jitter so that clients dropped together do not return together. */
  private backoffMs(): number {
    const { minDelayMs, maxDelayMs } = this.connection.tuning;
    const ceiling = Math.min(maxDelayMs, Math.max(minDelayMs, this.serverDelayMs) * 2 ** this.attempt);
    this.attempt += 1;
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(timer);
        resolve();
      };
    });
  }

  private report(error: unknown, retrying: boolean): void {
    if (this.stopped) return;
    try {
      this.options.onError?.(error instanceof Error ? error : new Error(String(error)), { retrying });
    } catch {
      // An exception in the app's error handler must not end the subscription.
    }
  }

  private async connect(renewToken: boolean): Promise<Next> {
    const controller = new AbortController();
    this.current = controller;
    let response: Response;
    try {
      const headers: Record<string, string> = {
        Accept: 'text/event-stream',
        ...(await this.connection.token.headers(renewToken)),
        ...(this.lastEventId !== undefined && { 'Last-Event-ID': this.lastEventId }),
      };
      if (this.stopped) return { then: 'stop' };
      response = await this.connection.fetch(this.connection.url, { headers, signal: controller.signal });
    } catch (error) {
      this.report(error, true);
      return { then: 'backoff' };
    }
    if (!response.ok) return this.refused(response, renewToken);
    const type = response.headers.get('content-type') ?? '';
    if (!response.body || !type.startsWith('text/event-stream')) {
      await response.body?.cancel();
      this.report(
        new CordonError({
          status: response.status,
          code: 'unexpected_response',
          title: 'Cordon answered without an event stream',
          detail: `content-type: ${type || 'none'}`,
        }),
        true,
      );
      return { then: 'backoff' };
    }
    return this.read(response, controller);
  }

  private async refused(response: Response, renewedToken: boolean): Promise<Next> {
    const error = await errorOf(response);
    if (isTokenProblem(error) && this.connection.token.renewable && !renewedToken) {
      return { then: 'now', renewToken: true };
    }
    const transient = response.status === 408 || response.status === 429 || response.status >= 500;
    this.report(error, transient);
    if (!transient) return { then: 'stop' };
    const atLeastMs = retryAfterMs(response);
    return { then: 'backoff', ...(atLeastMs !== undefined && { atLeastMs }) };
  }

  private async read(response: Response, controller: AbortController): Promise<Next> {
    const openedAt = Date.now();
    const { heartbeatTimeoutMs } = this.connection.tuning;
    let next: Next | undefined;
    let stalled = false;
    const parser = createParser({
      // Every id counts, also a message of an id alone (the stream's position when it starts):
      // a reconnection before any event then resumes from there. Nothing after a last event does.
      onId: (id) => {
        if (next === undefined) this.lastEventId = id;
      },
      onEvent: (message) => {
        next ??= this.dispatch(message, response);
      },
      onRetry: (ms) => {
        this.serverDelayMs = ms;
      },
    });
    const reader = response.body!.getReader();
    const decoder = new TextDecoder();
    let watchdog: ReturnType<typeof setTimeout> | undefined;
    const watch = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => {
        stalled = true;
        controller.abort();
      }, heartbeatTimeoutMs);
    };
    try {
      watch();
      while (next === undefined) {
        const { done, value } = await reader.read();
        if (done) break;
        watch();
        parser.feed(decoder.decode(value, { stream: true }));
      }
    } catch (error) {
      if (this.stopped) return { then: 'stop' };
      this.report(stalled ? new Error(`No data from the event stream for ${heartbeatTimeoutMs} ms`) : error, true);
      next = { then: 'backoff' };
    } finally {
      clearTimeout(watchdog);
      controller.abort();
    }
    if (Date.now() - openedAt >= healthyAfterMs) this.attempt = 0;
    return next ?? { then: 'backoff' };
  }

  /** One message; the Next it returns ends this connection. */
  private dispatch(message: EventSourceMessage, response: Response): Next | undefined {
    const type = message.event;
    if (type === 'token_expired') return { then: 'now', renewToken: true };
    // The instance is stopping: another one takes the stream from the last id.
    if (type === 'shutdown') return { then: 'now', renewToken: false };
    let data: Record<string, unknown>;
    try {
      data = JSON.parse(message.data) as Record<string, unknown>;
    } catch {
      this.report(new Error(`The event stream sent ${type ?? 'a message'} with data that is not JSON`), true);
      return undefined;
    }
    if (type === 'error') {
      const { code, detail } = data as { code?: unknown; detail?: unknown };
      this.report(
        new CordonError({
          // The stream had been accepted: the problem comes after its 200.
          status: response.status,
          code: typeof code === 'string' ? code : 'stream_error',
          title: 'Cordon ended the event stream',
          ...(typeof detail === 'string' && { detail }),
        }),
        true,
      );
      return { then: 'backoff' };
    }
    if (type !== 'reset' && !recordEvents.has(type ?? '')) return undefined;
    this.attempt = 0;
    this.deliver(type === 'reset' ? { event: 'reset', seq: String(data.seq ?? message.id) } : data);
    return undefined;
  }

  private deliver(event: unknown): void {
    if (this.stopped) return;
    try {
      this.options.onEvent(event as RealtimeEvent<Data>);
    } catch (error) {
      this.report(error, true);
    }
  }
}
