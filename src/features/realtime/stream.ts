import type { Response } from 'express';
import type { PrincipalAbility } from '../../policy/ability.ts';

/** Why a stream ends on the server's side, as its last event's `code`. */
export type StreamEnd =
  | { event: 'token_expired' }
  /** The instance is stopping: reconnect (to another one) with `Last-Event-ID`. */
  | { event: 'shutdown' }
  | {
      event: 'error';
      code: 'too_slow' | 'evaluation_failed' | 'token_invalid' | 'workspace_suspended';
      detail: string;
    };

/** How long a dropped stream's last words may take to leave before its connection is cut. */
const lastWordsMs = 5_000;

/**
 * One subscriber's Server-Sent Events stream. Writes never wait: a consumer that reads too slowly
 * for its unsent output to stay under the bound is dropped with a final event, and the others
 * never notice.
 */
export class EventStream {
  readonly workspaceId: string;
  /** The workspace as the URL named it: the token is checked against it again on changes. */
  readonly workspaceReference: string;
  readonly principalId: string;
  readonly structures: ReadonlySet<string>;
  /** Kept in memory only, to authenticate again when policies, roles or providers change. */
  readonly token: string;
  ability: PrincipalAbility;
  /** Events that arrived while the stream was still reading its backlog, to send after it. */
  backlog: (() => void)[] | undefined;
  private readonly response: Response;
  private readonly maxBufferBytes: number;
  private readonly timers: NodeJS.Timeout[] = [];
  private ended = false;
  /** Bytes written in this turn of the event loop. */
  private burst = 0;
  private readonly onEnd: (stream: EventStream, reason: StreamEnd | undefined) => void;

  constructor(options: {
    response: Response;
    workspaceId: string;
    workspaceReference: string;
    principalId: string;
    structures: ReadonlySet<string>;
    token: string;
    ability: PrincipalAbility;
    maxBufferBytes: number;
    /** When the token expires (ms since the epoch), if it does. */
    expiresAt: number | undefined;
    /** Once, however the stream ended: `reason` when the server ended it with one. */
    onEnd: (stream: EventStream, reason: StreamEnd | undefined) => void;
  }) {
    this.response = options.response;
    this.workspaceId = options.workspaceId;
    this.workspaceReference = options.workspaceReference;
    this.principalId = options.principalId;
    this.structures = options.structures;
    this.token = options.token;
    this.ability = options.ability;
    this.maxBufferBytes = options.maxBufferBytes;
    this.onEnd = options.onEnd;
    this.response.on('close', () => this.finish(undefined));
    if (options.expiresAt !== undefined) {
      const delay = Math.max(0, Math.min(options.expiresAt - Date.now(), 2 ** 31 - 1));
      this.timers.push(setTimeout(() => this.end({ event: 'token_expired' }), delay).unref());
    }
  }

  get open(): boolean {
    return !this.ended;
  }

  /**
   * Starts the response: headers for proxies that would buffer, then a comment. The body is not
   * chunked: a stream ends only when its connection does, so HTTP/1.1's chunk framing would only
   * add its size line and a socket operation to every write to every subscriber.
   */
  begin(): void {
    // Node frames a body without chunks only when both headers were removed.
    this.response.removeHeader('Content-Length');
    this.response.removeHeader('Transfer-Encoding');
    this.response.writeHead(200, {
      'Content-Type': 'text/event-stream; charset=utf-8',
      'Cache-Control': 'no-cache, no-store',
      'X-Accel-Buffering': 'no',
      Connection: 'close',
    });
    this.write(': connected\n\n');
  }

  /**
   * An already formatted message (`formatEvent`), shared by every stream that sees the same thing.
   * Only output left from earlier turns of the event loop counts against the bound: what was
   * written in this turn (a burst of events, a page of backlog) has had no chance to leave yet.
   */
  write(text: string | Buffer): void {
    if (this.ended) return;
    if (this.response.writableLength - this.burst > this.maxBufferBytes) {
      this.end({
        event: 'error',
        code: 'too_slow',
        detail: `more than ${this.maxBufferBytes} bytes waited for this consumer; reconnect with Last-Event-ID`,
      });
      return;
    }
    if (!this.burst) setImmediate(() => (this.burst = 0));
    this.burst += typeof text === 'string' ? Buffer.byteLength(text) : text.length;
    this.response.write(text);
  }

  /** Resolves once the socket has taken what was written (a backlog page waits for it before the next). */
  waitForDrain(): Promise<void> {
    if (this.ended || !this.response.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.response.off('drain', done);
        this.response.off('close', done);
        resolve();
      };
      this.response.on('drain', done).on('close', done);
    });
  }

  /** Says why, ends the stream, and cuts the connection if the last words cannot leave. */
  end(reason?: StreamEnd): void {
    if (this.ended) return;
    if (reason) this.response.write(formatEvent(reason.event, reason));
    this.finish(reason);
    this.response.end();
    this.timers.push(setTimeout(() => this.response.destroy(), lastWordsMs).unref());
  }

  private finish(reason: StreamEnd | undefined): void {
    if (this.ended) return;
    this.ended = true;
    for (const timer of this.timers.splice(0)) clearTimeout(timer);
    this.onEnd(this, reason);
  }
}

/** One SSE message: `id` (the seq, when there is one), `event`, one line of JSON `data`. */
export function formatEvent(event: string, data: object, id?: bigint | string): string {
  return `${id === undefined ? '' : `id: ${id}\n`}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`;
}
