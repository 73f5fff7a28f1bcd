import { createServer, type IncomingHttpHeaders, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One request to the stand-in, with what the client sent and the response to script. */
export interface StreamConnection {
  index: number;
  url: URL;
  headers: IncomingHttpHeaders;
  response: ServerResponse;
  at: number;
  /** Resolves when the client (or the script) has closed the connection. */
  closed: Promise<void>;
}

type Script = (connection: StreamConnection) => void;

/**
 * A stand-in for Cordon's `GET /v1/workspaces/:ws/events` on 127.0.0.1 that speaks its wire
 * format (`: connected`, `id:`/`event:`/`data:` messages, problem+json refusals) as each test
 * scripts it, connection by connection.
 */
export class EventStreamServer {
  readonly connections: StreamConnection[] = [];
  /** What the n-th connection gets; past the end, an open stream that sends nothing more. */
  script: Script[] = [];
  private readonly server: Server;
  private readonly waiting: { count: number; resolve: () => void }[] = [];

  private constructor(server: Server) {
    this.server = server;
  }

  static async start(): Promise<EventStreamServer> {
    const started: { stand?: EventStreamServer } = {};
    const server = createServer((request, response) => started.stand!.accept(request.url!, request.headers, response));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    started.stand = new EventStreamServer(server);
    return started.stand;
  }

  get baseUrl(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** Resolves with the n-th connection (1-based) once it has arrived. */
  async connection(count: number): Promise<StreamConnection> {
    if (this.connections.length < count) await new Promise<void>((resolve) => this.waiting.push({ count, resolve }));
    return this.connections[count - 1]!;
  }

  reset(script: Script[]): void {
    this.connections.length = 0;
    this.script = script;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }

  private accept(path: string, headers: IncomingHttpHeaders, response: ServerResponse): void {
    const closed = new Promise<void>((resolve) => response.once('close', () => resolve()));
    const connection = { index: this.connections.length, url: new URL(path, this.baseUrl), headers, response, closed };
    this.connections.push({ ...connection, at: Date.now() });
    (this.script[connection.index] ?? open)(this.connections.at(-1)!);
    for (const waiter of this.waiting.filter((entry) => entry.count <= this.connections.length)) {
      this.waiting.splice(this.waiting.indexOf(waiter), 1);
      waiter.resolve();
    }
  }
}

export function open({ response }: StreamConnection): void {
  response.writeHead(200, {
    'content-type': 'text/event-stream',
    'cache-control': 'no-cache',
    'x-accel-buffering': 'no',
  });
  response.write(': connected\n\n');
}

export function send({ response }: StreamConnection, message: { id?: string; event: string; data: unknown }): void {
  response.write(
    `${message.id === undefined ? '' : `id: ${message.id}\n`}event: ${message.event}\ndata: ${JSON.stringify(message.data)}\n\n`,
  );
}

export function refuse(
  { response }: StreamConnection,
  status: number,
  code: string,
  headers: Record<string, string> = {},
): void {
  response.writeHead(status, { 'content-type': 'application/problem+json', ...headers });
  response.end(
    JSON.stringify({ type: 'about:blank', title: code, status, code, detail: `refused: ${code}`, requestId: 'r' }),
  );
}
