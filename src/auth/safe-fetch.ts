import { lookup as resolve, type LookupAddress } from 'node:dns';
import type { IncomingMessage } from 'node:http';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';

export interface SafeFetchOptions {
  /** False in production: only globally routable unicast addresses may be contacted. */
  allowPrivateNetworks: boolean;
  /** Covers the whole exchange: resolution, connect, headers and body. */
  timeoutMs: number;
  maxBytes: number;
  /**
   * What a longer body gets: refused (`fail`: a key set must arrive whole) or cut to its first
   * `maxBytes` (`truncate`: a webhook receiver's answer is judged by its status, and only the
   * start of its body is kept for the delivery log). Either way no more than that is read.
   */
  oversized?: 'fail' | 'truncate';
}

export type OutboundFetchReason =
  'blocked_address' | 'redirect' | 'too_large' | 'timeout' | 'status' | 'network' | 'scheme';

export class OutboundFetchError extends Error {
  override readonly name = 'OutboundFetchError';
  readonly reason: OutboundFetchReason;

  constructor(reason: OutboundFetchReason, message: string, options?: ErrorOptions) {
    super(message, options);
    this.reason = reason;
  }
}

export interface SafeFetchInit {
  headers?: Headers | Record<string, string>;
  signal?: AbortSignal;
  method?: 'GET' | 'POST';
  /** POST only: sent whole with its Content-Length, so nothing is streamed or chunked. */
  body?: string | Buffer;
}

export type SafeFetch = (url: string, init?: SafeFetchInit) => Promise<Response>;

// ipaddr.js names the special-purpose ranges; everything it does not name is 'unicast'. IPv6
// outside 2000::/3 is unallocated or deprecated (e.g. IPv4-compatible ::a.b.c.d), so it must
// also be global unicast, not merely unnamed.
const globalUnicastIPv6 = ipaddr.IPv6.parseCIDR('2000::/3');

export function isPubliclyRoutable(address: string): boolean {
  // Only canonical literals: exotic spellings ('0x7f.1') are refused rather than interpreted.
  if (isIP(address) === 0) return false;
  const parsed = ipaddr.process(address); // unwraps ::ffff:a.b.c.d to the IPv4 it carries
  if (parsed.kind() === 'ipv4') return parsed.range() === 'unicast';
  return parsed.range() === 'unicast' && parsed.match(globalUnicastIPv6);
}

function blocked(host: string, address: string): OutboundFetchError {
  return new OutboundFetchError('blocked_address', `Refused to contact ${host}: ${address} is not a public address`);
}

// Node connects to exactly the addresses this returns, so the addresses checked here are the
// ones used: a second, rebinding DNS answer never comes into play.
const publicOnlyLookup: LookupFunction = (hostname, lookupOptions, callback) => {
  resolve(hostname, { ...lookupOptions, all: true }, (error, addresses: LookupAddress[]) => {
    if (error) return callback(error, []);
    const refused = addresses.find((entry) => !isPubliclyRoutable(entry.address));
    if (refused) return callback(blocked(hostname, refused.address), []);
    const [first] = addresses;
    if (lookupOptions.all) return callback(null, addresses);
    if (!first) return callback(new OutboundFetchError('network', `No address for ${hostname}`), []);
    callback(null, first.address, first.family);
  });
};

function responseHeaders(incoming: IncomingMessage): Headers {
  const headers = new Headers();
  for (const [name, values] of Object.entries(incoming.headersDistinct)) {
    for (const value of values ?? []) headers.append(name, value);
  }
  return headers;
}

// A Response cannot carry a body for these statuses, and throws if given one.
const bodilessStatuses = new Set([204, 205]);

export function createSafeFetch(options: SafeFetchOptions): SafeFetch {
  return async function safeFetch(url, init = {}) {
    let target: URL;
    try {
      target = new URL(url);
    } catch (cause) {
      throw new OutboundFetchError('scheme', 'Outbound URL is not a valid URL', { cause });
    }
    if (target.protocol !== 'http:' && target.protocol !== 'https:') {
      throw new OutboundFetchError('scheme', `Refused the ${target.protocol} scheme; only http and https are allowed`);
    }
    const host = target.hostname.replace(/^\[(.*)\]$/, '$1');
    // Node skips `lookup` for IP literals, so those are checked here, before any connection.
    if (!options.allowPrivateNetworks && isIP(host) !== 0 && !isPubliclyRoutable(host)) throw blocked(host, host);
    if (init.body !== undefined && init.method !== 'POST') throw new TypeError('Only a POST carries a body');
    init.signal?.throwIfAborted();
    return exchange(target, host, init, options);
  };
}

function exchange(target: URL, host: string, init: SafeFetchInit, options: SafeFetchOptions): Promise<Response> {
  return new Promise((settle, refuse) => {
    const transport = target.protocol === 'https:' ? https : http;
    let settled = false;
    const body = init.body === undefined ? undefined : Buffer.from(init.body);
    const headers = new Headers(init.headers);
    if (body) headers.set('content-length', String(body.length));
    const request = transport.request({
      host,
      port: target.port || undefined,
      path: target.pathname + target.search,
      method: init.method ?? 'GET',
      headers: Object.fromEntries(headers),
      // A fresh connection per request: a pooled socket could have been opened without our lookup.
      agent: false,
      lookup: options.allowPrivateNetworks ? undefined : publicOnlyLookup,
    });
    const timer = setTimeout(() => {
      fail(new OutboundFetchError('timeout', `${target.host} did not answer within ${options.timeoutMs} ms`));
    }, options.timeoutMs);
    // Like WHATWG fetch, an abort rejects with the signal's reason: jose maps a TimeoutError to JWKSTimeout.
    const onAbort = () => fail(init.signal?.reason);
    init.signal?.addEventListener('abort', onAbort, { once: true });

    function finish(): boolean {
      if (settled) return false;
      settled = true;
      clearTimeout(timer);
      init.signal?.removeEventListener('abort', onAbort);
      return true;
    }
    function fail(error: unknown): void {
      if (!finish()) return;
      request.destroy();
      refuse(error);
    }

    request.on('error', (error) => {
      fail(
        error instanceof OutboundFetchError
          ? error
          : new OutboundFetchError('network', `Request to ${target.host} failed: ${error.message}`, { cause: error }),
      );
    });
    request.on('response', (incoming) => {
      const status = incoming.statusCode ?? 0;
      if (status >= 300 && status < 400) {
        return fail(
          new OutboundFetchError('redirect', `${target.host} answered ${status}; redirects are not followed`),
        );
      }
      if (status < 200 || status > 599) {
        return fail(new OutboundFetchError('status', `${target.host} answered with unusable status ${status}`));
      }
      const truncate = options.oversized === 'truncate';
      const declared = Number(incoming.headers['content-length']);
      if (declared > options.maxBytes && !truncate) return fail(tooLarge(target, options));
      const chunks: Buffer[] = [];
      let received = 0;
      const respond = (truncated: boolean) => {
        let response: Response;
        try {
          const body = bodilessStatuses.has(status) ? null : Buffer.concat(chunks);
          response = new Response(body, {
            status,
            statusText: incoming.statusMessage,
            headers: responseHeaders(incoming),
          });
        } catch (cause) {
          return fail(
            new OutboundFetchError('network', `Response from ${target.host} is not representable`, { cause }),
          );
        }
        if (!finish()) return;
        // The rest of a cut body is never read: the connection goes (it is never pooled).
        if (truncated) request.destroy();
        settle(response);
      };
      incoming.on('data', (chunk: Buffer) => {
        if (settled) return;
        received += chunk.length;
        if (received <= options.maxBytes) return void chunks.push(chunk);
        if (!truncate) return fail(tooLarge(target, options));
        chunks.push(chunk.subarray(0, chunk.length - (received - options.maxBytes)));
        respond(true);
      });
      incoming.on('error', (error) =>
        fail(new OutboundFetchError('network', `Response from ${target.host} failed`, { cause: error })),
      );
      incoming.on('close', () => {
        if (!incoming.complete)
          fail(new OutboundFetchError('network', `${target.host} closed the connection mid-response`));
      });
      incoming.on('end', () => respond(false));
    });
    request.end(body);
  });
}

function tooLarge(target: URL, options: SafeFetchOptions): OutboundFetchError {
  return new OutboundFetchError('too_large', `Response from ${target.host} exceeds ${options.maxBytes} bytes`);
}
