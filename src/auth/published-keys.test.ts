import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ProblemError } from '../http/errors.ts';
import { freePort } from '../../test/support/ports.ts';
import { KeySets, KeySetUnavailable } from './key-sets.ts';

const keySets = new KeySets({
  allowPrivateNetworks: true,
  timeoutMs: 1_000,
  cooldownMs: 0,
  maxAgeMs: 60_000,
  maxBytes: 65_536,
});

/** An issuer whose discovery document is whatever the test says; it counts what it is asked. */
let server: Server;
let issuer: string;
let answer: { status: number; body: string };
let requests: string[] = [];

beforeAll(async () => {
  server = createServer((request, response) => {
    requests.push(request.url ?? '');
    response.statusCode = answer.status;
    response.end(answer.body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  issuer = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
beforeEach(() => {
  requests = [];
});
afterAll(() => new Promise((resolve) => server.close(resolve)));

const refusal = (promise: Promise<unknown>) =>
  promise.then(
    () => undefined,
    (error: unknown) => error,
  );

describe("where an issuer's keys are published", () => {
  it('takes the well-known JWKS URI of an issuer that is a whole origin as it is, without asking', async () => {
    const jwksUri = `${issuer}/.well-known/jwks.json`;
    expect(await keySets.publishedBy({ issuer, jwksUri })).toBe(jwksUri);
    expect(await keySets.publishedBy({ issuer: `${issuer}/`, jwksUri })).toBe(jwksUri);
    expect(requests).toEqual([]);
  });

  // A whole origin may serve its users' files too (gitlab.com's raw repository files): another
  // path on it proves nothing.
  it('asks the discovery document for any other JWKS URI on that origin', async () => {
    answer = { status: 200, body: JSON.stringify({ issuer, jwks_uri: `${issuer}/oauth/discovery/keys` }) };
    const uploaded = `${issuer}/mallory/repo/-/raw/main/jwks.json`;
    expect(await keySets.publishedBy({ issuer, jwksUri: uploaded })).toBe(`${issuer}/oauth/discovery/keys`);
    expect(requests).toEqual(['/.well-known/openid-configuration']);
  });

  // Tenants of one login host (Entra ID, a shared Keycloak) publish keys their own admins choose:
  // another tenant's key URL on the same origin proves nothing of this one.
  it('asks the discovery document of an issuer with a path, even for a JWKS URI on its origin', async () => {
    const tenant = `${issuer}/tenant-a`;
    answer = { status: 200, body: JSON.stringify({ issuer: tenant, jwks_uri: `${tenant}/keys` }) };
    expect(await keySets.publishedBy({ issuer: tenant, jwksUri: `${issuer}/tenant-b/keys` })).toBe(`${tenant}/keys`);
    expect(await keySets.publishedBy({ issuer: tenant, jwksUri: `${issuer}/.well-known/jwks.json` })).toBe(
      `${tenant}/keys`,
    );
    expect(requests).toEqual([
      '/tenant-a/.well-known/openid-configuration',
      '/tenant-a/.well-known/openid-configuration',
    ]);
  });

  it('asks the discovery document otherwise, which must name this issuer', async () => {
    answer = { status: 200, body: JSON.stringify({ issuer, jwks_uri: 'http://keys.example.com/certs' }) };
    for (const keys of [{ jwksUri: 'http://keys.example.com/certs' }, { jwksUri: null }])
      expect(await keySets.publishedBy({ issuer, ...keys })).toBe('http://keys.example.com/certs');
    expect(requests).toEqual(['/.well-known/openid-configuration', '/.well-known/openid-configuration']);

    for (const [body, why] of [
      [JSON.stringify({ issuer: `${issuer}/other`, jwks_uri: `${issuer}/keys` }), /does not name this issuer/],
      [JSON.stringify({ issuer, jwks_uri: 'ftp://keys.example.com/certs' }), /names no usable jwks_uri/],
      [JSON.stringify({ issuer, jwks_uri: 'not a url' }), /names no usable jwks_uri/],
      [JSON.stringify({ issuer }), /names no usable jwks_uri/],
      [JSON.stringify([issuer]), /does not name this issuer/],
      ['<html>', /is not JSON/],
    ] as const) {
      answer = { status: 200, body };
      const error = await refusal(keySets.publishedBy({ issuer, jwksUri: null }));
      expect(error).toBeInstanceOf(ProblemError);
      expect(error).toMatchObject({ code: 'binding_proof_invalid', message: expect.stringMatching(why) });
    }
    answer = { status: 404, body: '' };
    expect(await refusal(keySets.publishedBy({ issuer, jwksUri: null }))).toMatchObject({
      code: 'binding_proof_invalid',
      message: expect.stringMatching(/answered 404/),
    });
  });

  it('refuses an issuer that is not a URL, and cannot vouch for keys of an issuer that does not answer', async () => {
    expect(await refusal(keySets.publishedBy({ issuer: 'acme', jwksUri: null }))).toMatchObject({
      code: 'binding_proof_invalid',
    });
    const silent = `http://127.0.0.1:${await freePort()}`;
    expect(await refusal(keySets.publishedBy({ issuer: silent, jwksUri: null }))).toBeInstanceOf(KeySetUnavailable);
  });
});
