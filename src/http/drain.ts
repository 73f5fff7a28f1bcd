import type { RequestHandler } from 'express';
import type { Server } from 'node:http';
import { Server as NetServer } from 'node:net';

/**
 * The HTTP side of a graceful stop. Once `begin()` is called, `/readyz` answers 503 and every
 * response asks its client to close the connection after it (`Connection: close`), so keep-alive
 * clients move to another instance one finished request at a time.
 */
export class Drain {
  private began = false;

  get draining(): boolean {
    return this.began;
  }

  begin(): void {
    this.began = true;
  }

  readonly middleware: RequestHandler = (_request, response, next) => {
    if (this.began) response.setHeader('Connection', 'close');
    next();
  };
}

/**
 * Stops accepting connections and resolves once every open one has ended, cutting those still open
 * after `graceMs`. Idle keep-alive connections are not closed at once, as `http.Server#close`
 * does: a client may be sending its next request on one at that very moment, and would get a
 * reset for a request the service never saw. Each gets its next response with `Connection: close`
 * (see `Drain`), or ends at the server's keep-alive timeout, which clients honour from the
 * `Keep-Alive` header. Resolves with the number of connections cut.
 */
export async function closeGracefully(server: Server, graceMs: number): Promise<{ cut: number }> {
  const closed = new Promise<void>((resolve) => NetServer.prototype.close.call(server, () => resolve()));
  let cut = 0;
  const timer = setTimeout(() => {
    server.getConnections((_error, count) => {
      cut = count ?? 0;
      server.closeAllConnections();
    });
  }, graceMs);
  await closed;
  clearTimeout(timer);
  return { cut };
}
