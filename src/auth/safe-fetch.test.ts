import { createServer, type RequestListener, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRemoteJWKSet, customFetch, exportJWK, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import { createSafeFetch, isPubliclyRoutable, OutboundFetchError, type SafeFetchOptions } from './safe-fetch.ts';

interface CountingServer {
  server: Server;
  url: string;
  port: number;
  connections: number;
  requests: number;
}

async function startServer(handler: RequestListener): Promise<CountingServer> {
  const server = createServer();
  const counting: CountingServer = { server, url: '', port: 0, connections: 0, requests: 0 };
  server.on('connection', () => counting.connections++);
  server.on('request', (request, response) => {
    counting.requests++;
    handler(request, response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  counting.port = (server.address() as AddressInfo).port;
  counting.url = `http://127.0.0.1:${counting.port}/`;
  return counting;
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  return promise.then(
    () => {
      throw new Error('expected the fetch to be refused');
    },
    (error: unknown) => error,
  );
}

async function refusal(promise: Promise<unknown>): Promise<OutboundFetchError> {
  const error = await rejection(promise);
  expect(error).toBeInstanceOf(OutboundFetchError);
  return error as OutboundFetchError;
}

const keySet = { keys: [{ kty: 'oct', kid: 'placeholder' }] };
const lenient: SafeFetchOptions = { allowPrivateNetworks: true, timeoutMs: 5_000, maxBytes: 1024 };
const strict: SafeFetchOptions = { ...lenient, allowPrivateNetworks: false };

describe('isPubliclyRoutable', () => {
  it.each([
    '127.0.0.1',
    '10.1.2.3',
    '172.16.0.1',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '255.255.255.255',
    '224.0.0.1',
    '192.0.2.1',
    '240.0.0.1',
    '::1',
    '::',
    'fe80::1',
    'fc00::1',
    'fd12:3456::1',
    'ff02::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:169.254.169.254',
    '::127.0.0.1',
    '64:ff9b::a00:1',
    '2002:7f00:1::1',
    '2001:db8::1',
    '0x7f.1',
    'localhost',
    '',
  ])('refuses %s', (address) => {
    expect(isPubliclyRoutable(address)).toBe(false);
  });

  it.each(['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('accepts %s', (address) => {
    expect(isPubliclyRoutable(address)).toBe(true);
  });
});

describe('createSafeFetch', () => {
  const servers: CountingServer[] = [];
  let json: CountingServer;
  let redirectTarget: CountingServer;
  let redirecting: CountingServer;
  let silent: CountingServer;
  let declaredHuge: CountingServer;
  let chunkedHuge: CountingServer;
  let stalledBody: CountingServer;
  let exact: CountingServer;
  let missing: CountingServer;
  let echo: CountingServer;

  beforeAll(async () => {
    json = await startServer((_request, response) => {
      response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(keySet));
    });
    redirectTarget = await startServer((_request, response) => response.end(JSON.stringify(keySet)));
    redirecting = await startServer((_request, response) => {
      response.writeHead(302, { location: redirectTarget.url }).end();
    });
    silent = await startServer(() => undefined);
    // Declares far more than the cap and never finishes: only the Content-Length check can refuse in time.
    declaredHuge = await startServer((_request, response) => {
      response.writeHead(200, { 'content-length': '10000000' });
      response.write('x'.repeat(10));
    });
    // No Content-Length (chunked) and never finishes: only counting streamed bytes can refuse in time.
    chunkedHuge = await startServer((_request, response) => {
      response.writeHead(200);
      response.write('x'.repeat(600));
      response.write('x'.repeat(600));
    });
    stalledBody = await startServer((_request, response) => {
      response.writeHead(200);
      response.write('{"keys":');
    });
    exact = await startServer((_request, response) => response.end('x'.repeat(lenient.maxBytes)));
    missing = await startServer((_request, response) => response.writeHead(404).end('{"error":"missing"}'));
    echo = await startServer((request, response) => {
      const chunks: Buffer[] = [];
      request.on('data', (chunk: Buffer) => chunks.push(chunk));
      request.on('end', () => {
        const { method, headers } = request;
        response.writeHead(202, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ method, headers, body: Buffer.concat(chunks).toString() }));
      });
    });
    servers.push(
      json,
      redirectTarget,
      redirecting,
      silent,
      declaredHuge,
      chunkedHuge,
      stalledBody,
      exact,
      missing,
      echo,
    );
  });

  afterAll(async () => {
    for (const { server } of servers) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  describe('without private networks', () => {
    it.each([
      ['an IPv4 loopback literal', () => json.url],
      ['localhost', () => `http://localhost:${json.port}/`],
      ['an IPv6 loopback literal', () => `http://[::1]:${json.port}/`],
      ['an IPv4-mapped loopback literal', () => `http://[::ffff:127.0.0.1]:${json.port}/`],
    ])('refuses %s without the server seeing a connection', async (_name, url) => {
      const before = { connections: json.connections, requests: json.requests };
      const error = await refusal(createSafeFetch(strict)(url()));
      expect(error.reason).toBe('blocked_address');
      expect({ connections: json.connections, requests: json.requests }).toEqual(before);
    });
  });

  it('returns a Response whose body parses as JSON when private networks are allowed', async () => {
    const response = await createSafeFetch(lenient)(json.url, { headers: { accept: 'application/json' } });
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json');
    expect(await response.json()).toEqual(keySet);
  });

  it('returns a non-2xx, non-redirect response for the caller to judge', async () => {
    const response = await createSafeFetch(lenient)(missing.url);
    expect(response.status).toBe(404);
    expect(await response.json()).toEqual({ error: 'missing' });
  });

  it('refuses a redirect without following it', async () => {
    const error = await refusal(createSafeFetch(lenient)(redirecting.url));
    expect(error.reason).toBe('redirect');
    expect(redirecting.requests).toBeGreaterThan(0);
    expect(redirectTarget.connections).toBe(0);
  });

  it('accepts a body of exactly maxBytes', async () => {
    const response = await createSafeFetch(lenient)(exact.url);
    expect((await response.text()).length).toBe(lenient.maxBytes);
  });

  it('refuses a declared Content-Length above maxBytes before the body arrives', async () => {
    const error = await refusal(createSafeFetch(lenient)(declaredHuge.url));
    expect(error.reason).toBe('too_large');
  });

  it('refuses a chunked body as soon as it passes maxBytes', async () => {
    const error = await refusal(createSafeFetch(lenient)(chunkedHuge.url));
    expect(error.reason).toBe('too_large');
  });

  it.each([
    ['headers', () => silent.url],
    ['the body', () => stalledBody.url],
  ])('times out a server that never finishes %s', async (_stage, url) => {
    const timeoutMs = 300;
    const started = performance.now();
    const error = await refusal(createSafeFetch({ ...lenient, timeoutMs })(url()));
    const elapsed = performance.now() - started;
    expect(error.reason).toBe('timeout');
    expect(elapsed).toBeGreaterThanOrEqual(timeoutMs - 20);
    expect(elapsed).toBeLessThan(timeoutMs + 1_000);
  });

  it('rejects with the reason of an aborted signal, as fetch does', async () => {
    const error = await rejection(createSafeFetch(lenient)(silent.url, { signal: AbortSignal.timeout(100) }));
    expect(error).toBeInstanceOf(DOMException);
    expect((error as DOMException).name).toBe('TimeoutError');
  });

  it('does not connect when the signal is already aborted', async () => {
    const before = json.connections;
    const error = await rejection(createSafeFetch(lenient)(json.url, { signal: AbortSignal.abort() }));
    expect((error as DOMException).name).toBe('AbortError');
    expect(json.connections).toBe(before);
  });

  it.each(['file:///etc/passwd', 'ftp://example.com/keys.json', 'not a url'])('refuses %s as a scheme', async (url) => {
    const error = await refusal(createSafeFetch(lenient)(url));
    expect(error.reason).toBe('scheme');
  });

  describe('POST', () => {
    const big = { ...lenient, maxBytes: 64 * 1024 };

    it('sends the body whole, with its Content-Length and the given headers', async () => {
      const body = JSON.stringify({ hello: 'wörld' });
      const response = await createSafeFetch(big)(echo.url, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'webhook-id': 'msg_1' },
      });
      expect(response.status).toBe(202);
      const seen = (await response.json()) as { method: string; headers: Record<string, string>; body: string };
      expect(seen.method).toBe('POST');
      expect(seen.body).toBe(body);
      expect(seen.headers['content-length']).toBe(String(Buffer.byteLength(body)));
      expect(seen.headers['transfer-encoding']).toBeUndefined();
      expect(seen.headers['webhook-id']).toBe('msg_1');
    });

    it('refuses a private address before connecting, whatever the method', async () => {
      const before = { connections: echo.connections, requests: echo.requests };
      const error = await refusal(createSafeFetch(strict)(echo.url, { method: 'POST', body: '{}' }));
      expect(error.reason).toBe('blocked_address');
      const viaName = await refusal(
        createSafeFetch(strict)(`http://localhost:${echo.port}/`, { method: 'POST', body: '{}' }),
      );
      expect(viaName.reason).toBe('blocked_address');
      expect({ connections: echo.connections, requests: echo.requests }).toEqual(before);
    });

    it('refuses a body on a GET', async () => {
      await expect(createSafeFetch(lenient)(echo.url, { body: 'x' })).rejects.toThrow(TypeError);
    });
  });

  describe('with oversized bodies truncated', () => {
    const truncating: SafeFetchOptions = { ...lenient, oversized: 'truncate' };

    it.each([
      ['a declared Content-Length', () => declaredHuge.url, 5],
      ['a chunked body', () => chunkedHuge.url, 100],
    ])('answers at once with the status and the first maxBytes of %s', async (_name, url, maxBytes) => {
      // Neither server ever finishes its body: only cutting it at maxBytes answers before the timeout.
      const response = await createSafeFetch({ ...truncating, maxBytes, timeoutMs: 2_000 })(url());
      expect(response.status).toBe(200);
      expect(await response.text()).toBe('x'.repeat(maxBytes));
    });

    it('keeps a body of exactly maxBytes whole', async () => {
      const response = await createSafeFetch({ ...lenient, oversized: 'truncate' })(exact.url);
      expect((await response.text()).length).toBe(lenient.maxBytes);
    });
  });

  describe('as the customFetch of a jose remote key set', () => {
    async function signedToken(): Promise<{ token: string; jwks: CountingServer }> {
      const { privateKey, publicKey } = await generateKeyPair('ES256');
      const jwk = { ...(await exportJWK(publicKey)), kid: 'signing', alg: 'ES256' };
      const jwks = await startServer((_request, response) => response.end(JSON.stringify({ keys: [jwk] })));
      servers.push(jwks);
      const token = await new SignJWT({}).setProtectedHeader({ alg: 'ES256', kid: 'signing' }).sign(privateKey);
      return { token, jwks };
    }

    it('verifies a token with keys fetched through it', async () => {
      const { token, jwks } = await signedToken();
      const keys = createRemoteJWKSet(new URL(jwks.url), { [customFetch]: createSafeFetch(lenient) });
      const { protectedHeader } = await jwtVerify(token, keys);
      expect(protectedHeader.kid).toBe('signing');
      expect(jwks.requests).toBe(1);
    });

    it('surfaces a blocked address to the verifier', async () => {
      const { token, jwks } = await signedToken();
      const keys = createRemoteJWKSet(new URL(jwks.url), { [customFetch]: createSafeFetch(strict) });
      const error = await refusal(jwtVerify(token, keys));
      expect(error.reason).toBe('blocked_address');
      expect(jwks.connections).toBe(0);
    });
  });
});
