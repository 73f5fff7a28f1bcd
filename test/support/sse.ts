import { request as httpRequest, type IncomingMessage } from 'node:http';

/** One Server-Sent Event as a client receives it (comments are kept apart). */
export interface ReceivedEvent {
  id: string | undefined;
  event: string;
  data: Record<string, unknown>;
}

/**
 * An event stream read over real HTTP the way a client would: parsed as the SSE format says
 * (fields, blank-line dispatch, comments), with every event and comment kept in arrival order.
 */
export class SseClient {
  readonly events: ReceivedEvent[] = [];
  readonly comments: string[] = [];
  /** The last id seen, as an EventSource keeps it (an id-only message sets it too). */
  lastEventId: string | undefined;
  status = 0;
  headers: IncomingMessage['headers'] = {};
  /** The problem body, when the server refused the stream. */
  problem: Record<string, unknown> | undefined;
  ended = false;
  private response: IncomingMessage | undefined;
  private destroy: (() => void) | undefined;
  private buffer = '';
  private pending: { id?: string; event?: string; data: string[] } = { data: [] };

  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const client = new SseClient();
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(url, { headers: { accept: 'text/event-stream', ...headers } }, (response) => {
        client.response = response;
        client.status = response.statusCode ?? 0;
        client.headers = response.headers;
        response.setEncoding('utf8');
        if (client.status !== 200) {
          let body = '';
          response.on('data', (chunk: string) => (body += chunk));
          response.on('end', () => {
            client.problem = JSON.parse(body) as Record<string, unknown>;
            client.ended = true;
            resolve();
          });
          return;
        }
        response.on('data', (chunk: string) => client.feed(chunk));
        response.on('end', () => (client.ended = true));
        response.on('close', () => (client.ended = true));
        resolve();
      });
      req.on('error', reject);
      client.destroy = () => req.destroy();
      req.end();
    });
    return client;
  }

  /** Stops reading (the server's writes pile up in its buffers) or reads again. */
  pause(): void {
    this.response?.pause();
  }

  resume(): void {
    this.response?.resume();
  }

  close(): void {
    this.destroy?.();
    this.ended = true;
  }

  of(type: string): ReceivedEvent[] {
    return this.events.filter((event) => event.event === type);
  }

  async waitFor(check: (client: SseClient) => boolean, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check(this)) {
      if (Date.now() > deadline) {
        throw new Error(
          `stream condition not reached; got ${this.events.length} events: ${JSON.stringify(this.events.slice(-5))}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  waitForEvents(count: number, timeoutMs?: number): Promise<void> {
    return this.waitFor((client) => client.events.length >= count, timeoutMs);
  }

  private feed(chunk: string): void {
    this.buffer += chunk;
    let newline: number;
    while ((newline = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, newline).replace(/\r$/, '');
      this.buffer = this.buffer.slice(newline + 1);
      this.line(line);
    }
  }

  private line(line: string): void {
    if (line === '') {
      const { id, event, data } = this.pending;
      this.pending = { data: [] };
      if (id !== undefined) this.lastEventId = id;
      if (!data.length) return;
      this.events.push({ id, event: event ?? 'message', data: JSON.parse(data.join('\n')) as Record<string, unknown> });
      return;
    }
    if (line.startsWith(':')) {
      this.comments.push(line.slice(1).trim());
      return;
    }
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') this.pending.data.push(value);
    else if (field === 'event') this.pending.event = value;
    else if (field === 'id') this.pending.id = value;
  }
}
