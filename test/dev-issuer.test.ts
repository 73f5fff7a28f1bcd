import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { compactVerify, createLocalJWKSet, decodeJwt } from 'jose';
import { developmentIssuerKey, type DevIssuerKey } from '../src/auth/dev-issuer.ts';
import { devIdentityProvider, signDevToken } from '../src/features/dev-issuer/dev-token.ts';
import { startTestApp, testDatabase, uniqueSlug, type TestApp } from './support/app.ts';
import { repositoryRoot } from './support/process.ts';

/**
 * The development issuer end to end: `npm run token` against a listening Cordon in development,
 * the key set Cordon serves and resolves in-process, workspaces kept apart, and production, where
 * the issuer does not exist.
 */

let dataDir: string;
let key: DevIssuerKey;
let cordon: TestApp;
let server: Server;
let cordonUrl: string;
/** Counts requests to a key-set URL a provider names, which Cordon must never fetch. */
let decoy: Server;
let decoyUrl: string;
let decoyRequests = 0;

interface Workspace {
  slug: string;
  id: string;
}

async function boundWorkspace(prefix: string, url = cordonUrl): Promise<Workspace> {
  const workspace = (
    await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug: uniqueSlug(prefix), name: prefix })
      .expect(201)
  ).body as Workspace;
  await cordon
    .admin()
    .post(`/v1/workspaces/${workspace.slug}/identity-providers`)
    .send(devIdentityProvider(url, workspace.slug))
    .expect(201);
  await cordon
    .admin()
    .post(`/v1/workspaces/${workspace.slug}/structures`)
    .send({ name: 'Project', fields: { name: { type: 'text', required: true } } })
    .expect(201);
  return workspace;
}

/** `npm run token -- …` as a newcomer runs it, beside the service, on the same DATA_DIR. */
async function runToken(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return promisify(execFile)(process.execPath, ['src/features/dev-issuer/token.ts', ...args], {
    cwd: repositoryRoot,
    env: { PATH: process.env.PATH, DATA_DIR: dataDir, CORDON_URL: cordonUrl, ...env },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

async function token(args: string[], env: Record<string, string> = {}): Promise<string> {
  const { code, stdout, stderr } = await runToken(args, env);
  expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
  return stdout.trim();
}

/** Over real HTTP to the listening app, as curl in the README does. */
function call(method: string, route: string, bearer: string, body?: unknown) {
  return fetch(cordonUrl + route, {
    method,
    headers: { authorization: `Bearer ${bearer}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  }).then(async (response) => ({ status: response.status, body: (await response.json()) as Record<string, unknown> }));
}

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-dev-issuer-'));
  key = (await developmentIssuerKey(dataDir)).key;
  cordon = await startTestApp({ devIssuer: key });
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  cordonUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // Serves the very key set Cordon would need, so a fetch would make tokens pass: only the count
  // tells that Cordon never asked.
  decoy = createServer((_request, response) => {
    decoyRequests += 1;
    response.setHeader('content-type', 'application/json');
    response.end(JSON.stringify({ keys: [key.publicJwk] }));
  });
  decoy.listen(0, '127.0.0.1');
  await new Promise((resolve) => decoy.once('listening', resolve));
  decoyUrl = `http://127.0.0.1:${(decoy.address() as AddressInfo).port}`;
}, 60_000);

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await new Promise((resolve) => decoy.close(resolve));
  await cordon.close();
  await rm(dataDir, { recursive: true, force: true });
});

describe('in development', () => {
  it("creates and lists a record with the token script's token", async () => {
    const workspace = await boundWorkspace('dev');
    const bearer = await token(['--workspace', workspace.slug, '--user', 'user_ann', '--role', 'admin']);

    const created = await call('POST', `/v1/workspaces/${workspace.slug}/records/Project`, bearer, {
      data: { name: 'Apollo' },
    });
    expect(created).toMatchObject({ status: 201, body: { createdBy: 'user_ann', data: { name: 'Apollo' } } });
    const listed = await call('GET', `/v1/workspaces/${workspace.slug}/records/Project`, bearer);
    expect(listed).toMatchObject({ status: 200, body: { data: [{ id: created.body.id, createdBy: 'user_ann' }] } });

    const whoami = await call('GET', `/v1/workspaces/${workspace.slug}/whoami`, bearer);
    expect(whoami.body).toMatchObject({ id: 'user_ann', workspaceId: workspace.id, roles: ['admin'], provider: 'dev' });
  });

  it('maps several roles and the email through the ordinary OIDC claims', async () => {
    const workspace = await boundWorkspace('dev-roles');
    const bearer = await token([
      ...['--workspace', workspace.slug, '--user', 'user_bo', '--role', 'viewer', '--role', 'auditor'],
      ...['--email', 'bo@example.com'],
    ]);
    const whoami = await call('GET', `/v1/workspaces/${workspace.slug}/whoami`, bearer);
    expect(whoami.body).toMatchObject({ roles: ['viewer', 'auditor'], email: 'bo@example.com' });
    const created = await call('POST', `/v1/workspaces/${workspace.slug}/records/Project`, bearer, {
      data: { name: 'Denied' },
    });
    expect(created).toMatchObject({ status: 403, body: { code: 'forbidden' } });
  });

  it('issues tokens for an hour unless --ttl says otherwise, never longer than a day', async () => {
    const hour = decodeJwt(await token(['--workspace', 'acme', '--user', 'user_ann', '--role', 'admin']));
    expect(hour).toMatchObject({ iss: `${cordonUrl}/v1/dev`, sub: 'user_ann', org_id: 'acme', roles: ['admin'] });
    expect(hour.exp! - hour.iat!).toBe(3600);
    const quarter = decodeJwt(await token(['--workspace', 'acme', '--user', 'user_ann', '--ttl', '15m']));
    expect(quarter.exp! - quarter.iat!).toBe(900);

    for (const ttl of ['25h', '0s', 'forever']) {
      const refused = await runToken(['--workspace', 'acme', '--user', 'user_ann', '--ttl', ttl]);
      expect(refused).toMatchObject({ code: 2, stdout: '' });
      expect(refused.stderr).toContain('--ttl');
    }
    expect(await runToken(['--workspace', 'acme'])).toMatchObject({ code: 2, stdout: '' });
    expect(await runToken(['--workspace', 'Not A Slug', '--user', 'user_ann'])).toMatchObject({ code: 2 });
  });

  it('prints nothing without a key in DATA_DIR, or in production', async () => {
    const args = ['--workspace', 'acme', '--user', 'user_ann', '--role', 'admin'];
    const empty = await mkdtemp(path.join(tmpdir(), 'cordon-no-key-'));
    try {
      const missing = await runToken(args, { DATA_DIR: empty });
      expect(missing).toMatchObject({ code: 1, stdout: '' });
      expect(missing.stderr).toContain('npm start');
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
    expect(await runToken(args, { NODE_ENV: 'production' })).toMatchObject({ code: 1, stdout: '' });
  });

  it('serves the key set that verifies its tokens', async () => {
    const response = await fetch(`${cordonUrl}/v1/dev/jwks.json`);
    expect(response.status).toBe(200);
    const jwks = (await response.json()) as { keys: Record<string, unknown>[] };
    expect(jwks.keys).toEqual([
      expect.objectContaining({ kty: 'EC', crv: 'P-256', alg: 'ES256', kid: key.publicJwk.kid }),
    ]);
    expect(jwks.keys[0]).not.toHaveProperty('d');
    const bearer = await token(['--workspace', 'acme', '--user', 'user_ann']);
    const { protectedHeader } = await compactVerify(bearer, createLocalJWKSet(jwks as never));
    expect(protectedHeader).toMatchObject({ alg: 'ES256', kid: key.publicJwk.kid, typ: 'JWT' });
  });

  it('resolves the key in-process: the key-set URL a provider names is never fetched', async () => {
    const workspace = await boundWorkspace('dev-decoy', decoyUrl);
    const bearer = await token(['--workspace', workspace.slug, '--user', 'user_ann', '--role', 'admin'], {
      CORDON_URL: decoyUrl,
    });
    await cordon.http().get(`/v1/workspaces/${workspace.slug}/whoami`).auth(bearer, { type: 'bearer' }).expect(200);
    expect(decoyRequests).toBe(0);
  });

  it('refuses an expired development token', async () => {
    const workspace = await boundWorkspace('dev-expired');
    const expired = await signDevToken(key, {
      cordonUrl,
      workspace: workspace.slug,
      user: 'user_ann',
      roles: ['admin'],
      ttlSeconds: 3600,
      issuedAt: Math.floor(Date.now() / 1000) - 3600 - 60,
    });
    const response = await call('GET', `/v1/workspaces/${workspace.slug}/records/Project`, expired);
    expect(response).toMatchObject({ status: 401, body: { code: 'token_expired' } });
  });

  it("refuses a token signed by another key, though it names the development issuer's key id", async () => {
    const workspace = await boundWorkspace('dev-forged');
    const stranger = (await developmentIssuerKey(path.join(dataDir, 'stranger'))).key;
    const forged = await signDevToken(
      { privateKey: stranger.privateKey, publicJwk: key.publicJwk },
      { cordonUrl, workspace: workspace.slug, user: 'user_ann', roles: ['admin'], ttlSeconds: 600 },
    );
    const response = await call('GET', `/v1/workspaces/${workspace.slug}/records/Project`, forged);
    expect(response).toMatchObject({ status: 401, body: { code: 'token_signature' } });
  });

  it("keeps workspaces apart: a token of one workspace's binding is refused by another", async () => {
    const ours = await boundWorkspace('dev-ours');
    const theirs = await boundWorkspace('dev-theirs');
    const unbound = (
      await cordon
        .admin()
        .post('/v1/workspaces')
        .send({ slug: uniqueSlug('dev-unbound'), name: 'unbound' })
        .expect(201)
    ).body as Workspace;
    const theirToken = await token(['--workspace', theirs.slug, '--user', 'user_eve', '--role', 'admin']);

    const crossed = await call('POST', `/v1/workspaces/${ours.slug}/records/Project`, theirToken, {
      data: { name: 'Intruder' },
    });
    expect(crossed).toMatchObject({ status: 403, body: { code: 'org_mismatch' } });
    expect(await call('GET', `/v1/workspaces/${unbound.slug}/whoami`, theirToken)).toMatchObject({
      status: 401,
      body: { code: 'token_untrusted_issuer' },
    });
    const ourToken = await token(['--workspace', ours.slug, '--user', 'user_ann', '--role', 'admin']);
    const listed = await call('GET', `/v1/workspaces/${ours.slug}/records/Project`, ourToken);
    expect(listed).toMatchObject({ status: 200, body: { data: [] } });
  });
});

describe('in production', () => {
  let production: TestApp;
  beforeAll(async () => {
    // Handed a key all the same, and allowed to reach loopback: neither may bring the issuer back.
    production = await startTestApp({
      devIssuer: key,
      env: {
        NODE_ENV: 'production',
        ADMIN_API_KEY: randomUUID() + randomUUID(),
        DATABASE_URL: testDatabase.ownerUrl(),
        INVITATION_ACCEPT_URL: 'https://app.example.com/join/{token}',
        OUTBOUND_ALLOW_PRIVATE: 'true',
      },
    });
  });
  afterAll(() => production.close());

  it('has no development key set', async () => {
    const response = await production.http().get('/v1/dev/jwks.json').expect(404);
    expect(response.body.code).toBe('route_not_found');
  });

  it('refuses an identity provider naming a development issuer or its key set', async () => {
    const workspace = (
      await production
        .admin()
        .post('/v1/workspaces')
        .send({ slug: uniqueSlug('prod-dev'), name: 'Prod' })
        .expect(201)
    ).body as Workspace;
    const path = `/v1/workspaces/${workspace.slug}/identity-providers`;
    const https = 'https://localhost:3000';
    for (const body of [
      devIdentityProvider('http://127.0.0.1:3000', workspace.slug),
      devIdentityProvider(https, workspace.slug),
      { ...devIdentityProvider(https, workspace.slug), issuer: 'https://issuer.example.com' },
      { ...devIdentityProvider(https, workspace.slug), jwksUri: 'https://issuer.example.com/jwks.json' },
    ]) {
      const response = await production.admin().post(path).send(body).expect(400);
      expect(response.body).toMatchObject({ code: 'dev_issuer_in_production', status: 400 });
      expect(response.body.errors).toEqual(
        expect.arrayContaining([expect.objectContaining({ detail: expect.stringContaining('development issuer') })]),
      );
    }
    expect((await production.admin().get(path).expect(200)).body.data).toEqual([]);
  });

  it('never fetches the key set of a development provider stored before, and refuses its tokens', async () => {
    // Bound in development on the same database, then met by a production instance.
    const workspace = await boundWorkspace('dev-then-prod', decoyUrl);
    const bearer = await signDevToken(key, {
      cordonUrl: decoyUrl,
      workspace: workspace.slug,
      user: 'user_ann',
      roles: ['admin'],
      ttlSeconds: 600,
    });
    await cordon.http().get(`/v1/workspaces/${workspace.slug}/whoami`).auth(bearer, { type: 'bearer' }).expect(200);

    const response = await production
      .http()
      .get(`/v1/workspaces/${workspace.slug}/whoami`)
      .auth(bearer, { type: 'bearer' })
      .expect(401);
    expect(response.body.code).toBe('token_unknown_key');
    expect(decoyRequests).toBe(0);
  });
});
