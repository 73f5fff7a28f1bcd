import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** Whether a port can be bound on 127.0.0.1 right now. */
function bindable(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(undefined));
    server.listen(port, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
    });
  });
}

/** The lowest port the kernel hands out to outgoing connections (Linux's default: 32768). */
function ephemeralFloor(): number {
  try {
    return Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * A port that was free a moment ago, for a server the test starts itself. Taken below the
 * ephemeral range: a port the kernel chose (`listen(0)`) is one it may also give an outgoing
 * connection's local end before the server binds it, which once kept an embedded PostgreSQL
 * from starting ("could not create any TCP/IP sockets") while the suite ran.
 */
export async function freePort(): Promise<number> {
  const floor = Math.min(ephemeralFloor(), 32_768);
  for (let tries = 0; tries < 50; tries++) {
    const port = await bindable(10_000 + Math.floor(Math.random() * (floor - 10_000)));
    if (port !== undefined) return port;
  }
  const port = await bindable(0);
  if (port === undefined) throw new Error('no free port');
  return port;
}
