import { request, type IncomingHttpHeaders, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib';
import { startTestApp, testDatabase, type TestApp } from './support/app.ts';
import { freePort } from './support/ports.ts';

let cordon: TestApp;
beforeAll(async () => {
  cordon = await startTestApp();
});
afterAll(() => cordon.close());

const expectProblem = (
  response: { headers: Record<string, string>; body: Record<string, unknown> },
  status: number,
  code: string,
) => {
  expect(response.headers['content-type']).toMatch(/^application\/problem\+json/);
  expect(response.body).toMatchObject({
    status,
    code,
    title: expect.any(String),
    type: expect.stringContaining('/problems/'),
  });
  expect(response.body.requestId).toEqual(response.headers['x-request-id']);
  expect(JSON.stringify(response.body)).not.toMatch(/\bat .+\.(ts|js):\d+/);
};

describe('bad input is a problem response, never a 500', () => {
  it('answers 404 route_not_found for an unknown route', async () => {
    const response = await cordon.http().get('/v1/nothing-here').expect(404);
    expectProblem(response, 404, 'route_not_found');
  });

  it('answers 400 invalid_json for malformed JSON', async () => {
    const response = await cordon
      .admin()
      .post('/v1/workspaces')
      .set('content-type', 'application/json')
      .send('{"slug": "acme",')
      .expect(400);
    expectProblem(response, 400, 'invalid_json');
  });

  it('answers 400 invalid_json for a JSON body that is not an object or array', async () => {
    const response = await cordon
      .admin()
      .post('/v1/workspaces')
      .set('content-type', 'application/json')
      .send('"just a string"')
      .expect(400);
    expectProblem(response, 400, 'invalid_json');
  });

  it('answers 400 validation_failed for a JSON array body', async () => {
    const response = await cordon.admin().post('/v1/workspaces').send([1, 2]).expect(400);
    expectProblem(response, 400, 'validation_failed');
  });

  it('answers 415 unsupported_media_type for a form body', async () => {
    const response = await cordon.admin().post('/v1/workspaces').type('form').send('slug=acme&name=Acme').expect(415);
    expectProblem(response, 415, 'unsupported_media_type');
  });

  it('answers 415 for text/plain even when the text is JSON', async () => {
    const response = await cordon
      .admin()
      .post('/v1/workspaces')
      .set('content-type', 'text/plain')
      .send('{"slug":"acme","name":"x"}')
      .expect(415);
    expectProblem(response, 415, 'unsupported_media_type');
  });

  it('answers 415 for an unsupported charset', async () => {
    const response = await cordon
      .admin()
      .post('/v1/workspaces')
      .set('content-type', 'application/json; charset=koi8-r')
      .send('{}')
      .expect(415);
    expectProblem(response, 415, 'unsupported_media_type');
  });

  it('answers 413 payload_too_large for a body over the limit', async () => {
    const response = await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug: 'big', name: 'x'.repeat(200_000) })
      .expect(413);
    expectProblem(response, 413, 'payload_too_large');
  });

  describe('a compressed body', () => {
    let server: Server;
    beforeAll(async () => {
      server = cordon.app.listen(0, '127.0.0.1');
      await new Promise((resolve) => server.once('listening', resolve));
    });
    afterAll(() => new Promise((resolve) => server.close(resolve)));

    // Raw node:http: the body leaves exactly as given, with the Content-Encoding it claims.
    const postEncoded = (encoding: string, body: Buffer) =>
      new Promise<{ status: number; headers: Record<string, string>; body: Record<string, unknown> }>(
        (resolve, reject) => {
          const call = request(
            {
              host: '127.0.0.1',
              port: (server.address() as AddressInfo).port,
              method: 'POST',
              path: '/v1/workspaces',
              headers: {
                authorization: `Bearer ${cordon.adminKey}`,
                'content-type': 'application/json',
                'content-encoding': encoding,
                'content-length': body.length,
              },
            },
            (response) => {
              let text = '';
              response.setEncoding('utf8');
              response.on('data', (chunk: string) => (text += chunk));
              response.on('end', () =>
                resolve({
                  status: response.statusCode ?? 0,
                  headers: response.headers as IncomingHttpHeaders & Record<string, string>,
                  body: JSON.parse(text) as Record<string, unknown>,
                }),
              );
            },
          );
          call.on('error', reject);
          call.end(body);
        },
      );

    const json = Buffer.from(JSON.stringify({ slug: 'A', name: 'compressed' }));

    it.each([
      ['gzip', Buffer.from('this is not gzip at all')],
      ['gzip', gzipSync(json).subarray(0, 12)],
      ['deflate', Buffer.from('this is not deflate at all')],
      ['br', Buffer.from('this is not brotli at all')],
    ])('answers 400 invalid_json, not 500, for a corrupt %s body', async (encoding, body) => {
      const response = await postEncoded(encoding, body);
      expect(response.status).toBe(400);
      expectProblem(response, 400, 'invalid_json');
      expect(response.body.detail).toMatch(/decompress/);
    });

    it.each([
      ['gzip', gzipSync(json)],
      ['deflate', deflateSync(json)],
      ['br', brotliCompressSync(json)],
    ])('reads a sound %s body', async (encoding, body) => {
      // The invalid slug shows the body got through to validation.
      const response = await postEncoded(encoding, body);
      expectProblem(response, 400, 'validation_failed');
    });
  });

  it('answers 400 with JSON pointers for every invalid field', async () => {
    const response = await cordon.admin().post('/v1/workspaces').send({ slug: 'A', name: '', plan: 7 }).expect(400);
    expectProblem(response, 400, 'validation_failed');
    const pointers = (response.body.errors as { pointer: string }[]).map((error) => error.pointer).sort();
    expect(pointers).toEqual(['/name', '/plan', '/slug']);
  });

  it('answers 400 for a PATCH with nothing to change', async () => {
    const response = await cordon.admin().patch('/v1/workspaces/whatever').send({}).expect(400);
    expectProblem(response, 400, 'validation_failed');
  });

  it('answers 400 for a query parameter given twice', async () => {
    const response = await cordon.admin().get('/v1/workspaces?limit=1&limit=2').expect(400);
    expectProblem(response, 400, 'validation_failed');
  });
});

describe('request ids', () => {
  it('echoes a sane X-Request-Id and replaces an unsafe one', async () => {
    const kept = await cordon.http().get('/healthz').set('x-request-id', 'abc-123').expect(200);
    expect(kept.headers['x-request-id']).toBe('abc-123');
    const replaced = await cordon.http().get('/healthz').set('x-request-id', 'bad id\twith spaces').expect(200);
    expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('operations endpoints', () => {
  it('reports liveness and readiness', async () => {
    await cordon.http().get('/healthz').expect(200, { status: 'ok' });
    await cordon.http().get('/readyz').expect(200, { status: 'ok' });
  });

  it('reports 503 database_unavailable from /readyz when the database is gone', async () => {
    const unreachable = new URL(testDatabase.appUrl());
    unreachable.port = String(await freePort());
    const broken = await startTestApp({ databaseUrl: unreachable.toString() });
    try {
      const response = await broken.http().get('/readyz').expect(503);
      expectProblem(response, 503, 'database_unavailable');
    } finally {
      await broken.close();
    }
  });

  it('serves Prometheus metrics to the platform admin, labelled by route template', async () => {
    await cordon.admin().get('/v1/workspaces/some-slug-that-is-missing').expect(404);
    await cordon.http().get('/metrics').expect(401);
    const response = await cordon.admin().get('/metrics').expect(200);
    expect(response.headers['content-type']).toMatch(/^text\/plain/);
    expect(response.text).toMatch(
      /cordon_http_requests_total\{method="GET",route="\/v1\/workspaces\/:ws",status="404"\} \d+/,
    );
    expect(response.text).toContain('cordon_http_request_duration_seconds_bucket');
    expect(response.text).not.toContain('some-slug-that-is-missing');
  });

  it('sets defensive headers and no X-Powered-By', async () => {
    const response = await cordon.http().get('/healthz');
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['x-powered-by']).toBeUndefined();
  });
});
