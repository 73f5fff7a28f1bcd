import { randomUUID } from 'node:crypto';
import { createHmac } from 'node:crypto';
import { exportSPKI, FlattenedSign, importJWK, type CryptoKey } from 'jose';
import type pg from 'pg';
import { pino } from 'pino';
import { keySetOptions } from '../src/app.ts';
import { Authenticator } from '../src/auth/authenticate.ts';
import { KeySets } from '../src/auth/key-sets.ts';
import { VerifiedTokenCache } from '../src/auth/token-cache.ts';
import { TokenVerifier } from '../src/auth/tokens.ts';
import { WorkspaceDirectory } from '../src/auth/workspace-directory.ts';
import { parseConfig } from '../src/config.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { ProblemError } from '../src/http/errors.ts';
import { ownerClient, startTestApp, uniqueSlug, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { assembleToken, createKey, TestIssuer } from './support/issuer.ts';

let cordon: TestApp;
let owner: pg.Client;
let clerk: TestIssuer;
let auth0: TestIssuer;
let oidc: TestIssuer;
const logLines: string[] = [];

const clerkOrg = `org_${randomUUID().slice(0, 8)}`;
const otherClerkOrg = `org_${randomUUID().slice(0, 8)}`;
const appOrigin = 'https://app.example.com';

let clerkWorkspace: string;
let siblingWorkspace: string; // trusts the same Clerk issuer, for another org
let auth0Workspace: string;
let oidcWorkspace: string;
let emptyWorkspace: string;

async function createWorkspace(): Promise<string> {
  const response = await cordon
    .admin()
    .post('/v1/workspaces')
    .send({ slug: uniqueSlug('byot'), name: 'BYOT' })
    .expect(201);
  return response.body.slug;
}

async function createProvider(workspace: string, body: Record<string, unknown>): Promise<{ id: string }> {
  const response = await cordon.admin().post(`/v1/workspaces/${workspace}/identity-providers`).send(body);
  expect(response.status).toBe(201);
  return response.body;
}

const clerkProvider = (issuer: TestIssuer, orgId: string, extra: Record<string, unknown> = {}) => ({
  name: `clerk-${orgId}`,
  type: 'clerk',
  issuer: issuer.url,
  jwksUri: issuer.jwksUri,
  orgId,
  authorizedParties: [appOrigin],
  ...extra,
});

const whoami = (workspace: string, token?: string) => {
  const request = cordon.http().get(`/v1/workspaces/${workspace}/whoami`);
  return token === undefined ? request : request.auth(token, { type: 'bearer' });
};

const clerkV1 = (overrides: Record<string, unknown> = {}) =>
  clerk.sign({
    sub: 'user_2alice',
    org_id: clerkOrg,
    org_role: 'org:admin',
    azp: appOrigin,
    sid: 'sess_1',
    ...overrides,
  });

const expectUnauthorized = (
  response: { status: number; body: { code: string }; headers: Record<string, string> },
  code: string,
) => {
  expect({ status: response.status, code: response.body.code }).toEqual({ status: 401, code });
  expect(response.headers['www-authenticate']).toMatch(
    /^Bearer realm="cordon", error="invalid_token", error_description="[^"]+"$/,
  );
};

beforeAll(async () => {
  cordon = await startTestApp({ logLines });
  owner = await ownerClient();
  [clerk, auth0, oidc] = await Promise.all([
    TestIssuer.start('RS256'),
    TestIssuer.start('ES256'),
    TestIssuer.start('EdDSA'),
  ]);

  clerkWorkspace = await createWorkspace();
  siblingWorkspace = await createWorkspace();
  auth0Workspace = await createWorkspace();
  oidcWorkspace = await createWorkspace();
  emptyWorkspace = await createWorkspace();

  await createProvider(clerkWorkspace, clerkProvider(clerk, clerkOrg));
  await createProvider(siblingWorkspace, clerkProvider(clerk, otherClerkOrg));
  await createProvider(auth0Workspace, {
    name: 'auth0',
    type: 'auth0',
    issuer: `${auth0.url}/`,
    jwksUri: auth0.jwksUri,
    audiences: ['https://api.example.com'],
    authorizedParties: ['client_abc'],
    orgId: 'org_9yb',
    claims: { roles: 'https://example.com/roles' },
    roleMap: { 'billing-admin': ['admin', 'auditor'] },
  });
  await createProvider(oidcWorkspace, {
    name: 'keycloak',
    type: 'oidc',
    issuer: oidc.url,
    jwks: oidc.jwks,
    orgId: 'tenant-42',
    claims: { subject: 'uid', orgId: 'tenant.id', roles: 'realm_access.roles', email: 'mail' },
  });
});

afterAll(async () => {
  await Promise.all([clerk.close(), auth0.close(), oidc.close()]);
  await owner.end();
  await cordon.close();
});

describe('Clerk tokens', () => {
  it('maps a v1 token (org_id, org_role "org:admin") to the principal', async () => {
    const response = await whoami(clerkWorkspace, await clerkV1()).expect(200);
    expect(response.body).toMatchObject({ id: 'user_2alice', roles: ['admin'], provider: `clerk-${clerkOrg}` });
    expect(response.body.workspaceId).toMatch(/^[0-9a-f-]{36}$/);
    expect(response.body.claims).toMatchObject({ org_id: clerkOrg, sid: 'sess_1' });
  });

  it('maps a v2 token (o.id, o.rol without prefix)', async () => {
    const token = await clerk.sign({
      v: 2,
      sub: 'user_2bob',
      azp: appOrigin,
      o: { id: clerkOrg, rol: 'member', slg: 'acme', per: 'read,write' },
    });
    const response = await whoami(clerkWorkspace, token).expect(200);
    expect(response.body).toMatchObject({ id: 'user_2bob', roles: ['member'] });
  });

  it('refuses an azp that is not an authorized party, and a missing azp', async () => {
    expectUnauthorized(
      await whoami(clerkWorkspace, await clerkV1({ azp: 'https://evil.example.com' })),
      'token_authorized_party',
    );
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ azp: undefined })), 'token_authorized_party');
  });

  it('refuses a pending session unless the provider allows them', async () => {
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ sts: 'pending' })), 'token_session_pending');
    await whoami(clerkWorkspace, await clerkV1({ sts: 'active' })).expect(200);
  });

  it('answers 403 org_mismatch for a valid token of another organization, with the same body whether or not that org is bound elsewhere', async () => {
    const boundElsewhere = await whoami(clerkWorkspace, await clerkV1({ org_id: otherClerkOrg })).expect(403);
    const boundNowhere = await whoami(clerkWorkspace, await clerkV1({ org_id: 'org_nobody' })).expect(403);
    const noOrg = await whoami(clerkWorkspace, await clerkV1({ org_id: undefined })).expect(403);
    for (const response of [boundElsewhere, boundNowhere, noOrg]) expect(response.body.code).toBe('org_mismatch');
    expect(boundElsewhere.body.detail).toBe(boundNowhere.body.detail);
  });

  it('refuses a token of workspace A sent to workspace B', async () => {
    const tokenOfA = await clerkV1();
    expect((await whoami(siblingWorkspace, tokenOfA).expect(403)).body.code).toBe('org_mismatch');
    expectUnauthorized(await whoami(auth0Workspace, tokenOfA), 'token_untrusted_issuer');
  });
});

describe('Auth0 tokens', () => {
  const auth0Token = (overrides: Record<string, unknown> = {}) =>
    auth0.sign({
      iss: `${auth0.url}/`,
      sub: 'auth0|64f1',
      aud: ['https://api.example.com', `${auth0.url}/userinfo`],
      azp: 'client_abc',
      org_id: 'org_9yb',
      'https://example.com/roles': ['member', 'billing-admin'],
      email: 'carol@example.com',
      ...overrides,
    });

  it('reads org_id and the namespaced roles claim, through the roleMap', async () => {
    const response = await whoami(auth0Workspace, await auth0Token()).expect(200);
    expect(response.body).toMatchObject({
      id: 'auth0|64f1',
      roles: ['member', 'admin', 'auditor'],
      email: 'carol@example.com',
      provider: 'auth0',
    });
  });

  it('leaves out an email the token marks as unverified: policies may match on principal.email', async () => {
    const unverified = (
      await whoami(auth0Workspace, await auth0Token({ email: 'ceo@victim.example', email_verified: false })).expect(200)
    ).body;
    expect(unverified).not.toHaveProperty('email');
    // Some claim mappers emit the flag as a string.
    expect(
      (await whoami(auth0Workspace, await auth0Token({ email_verified: 'false' })).expect(200)).body,
    ).not.toHaveProperty('email');
    const verified = (await whoami(auth0Workspace, await auth0Token({ email_verified: true })).expect(200)).body;
    expect(verified.email).toBe('carol@example.com');
  });

  it('refuses a wrong audience and a wrong client id (azp)', async () => {
    expectUnauthorized(
      await whoami(auth0Workspace, await auth0Token({ aud: 'https://other.example.com' })),
      'token_audience',
    );
    expectUnauthorized(
      await whoami(auth0Workspace, await auth0Token({ azp: 'client_evil' })),
      'token_authorized_party',
    );
  });
});

describe('any OIDC issuer', () => {
  it('uses the configured claim paths, including a custom subject', async () => {
    const token = await oidc.sign({
      uid: 'u-7',
      sub: 'ignored',
      tenant: { id: 'tenant-42' },
      realm_access: { roles: ['viewer'] },
      mail: 'dan@example.com',
    });
    const response = await whoami(oidcWorkspace, token).expect(200);
    expect(response.body).toMatchObject({
      id: 'u-7',
      roles: ['viewer'],
      email: 'dan@example.com',
      provider: 'keycloak',
    });
  });

  it('refuses a token without the configured subject claim', async () => {
    const token = await oidc.sign({ sub: 'only-sub', tenant: { id: 'tenant-42' } });
    expectUnauthorized(await whoami(oidcWorkspace, token), 'token_claims');
  });
});

describe('roles from the members table', () => {
  it('uses only member roles with roleSource "members" and the union with "both"', async () => {
    const workspace = await createWorkspace();
    const issuer = await TestIssuer.start();
    try {
      const provider = await createProvider(workspace, clerkProvider(issuer, 'org_members', { roleSource: 'members' }));
      const { body } = await cordon.admin().get(`/v1/workspaces/${workspace}`).expect(200);
      await owner.query(
        "insert into members (workspace_id, user_id, email, roles) values ($1, 'user_m', 'm@example.com', '{viewer}')",
        [body.id],
      );
      const token = await issuer.sign({ sub: 'user_m', org_id: 'org_members', org_role: 'org:admin', azp: appOrigin });

      const principal = (await whoami(workspace, token).expect(200)).body;
      expect(principal).toMatchObject({ roles: ['viewer'] });
      // An email comes from the token only: the member row's is editable and proves nothing.
      expect(principal).not.toHaveProperty('email');

      await cordon
        .admin()
        .put(`/v1/workspaces/${workspace}/identity-providers/${provider.id}`)
        .send(clerkProvider(issuer, 'org_members', { roleSource: 'both' }))
        .expect(200);
      expect((await whoami(workspace, token).expect(200)).body.roles.sort()).toEqual(['admin', 'viewer']);

      const stranger = await issuer.sign({
        sub: 'user_not_member',
        org_id: 'org_members',
        org_role: 'org:admin',
        azp: appOrigin,
      });
      await cordon
        .admin()
        .put(`/v1/workspaces/${workspace}/identity-providers/${provider.id}`)
        .send(clerkProvider(issuer, 'org_members', { roleSource: 'members' }))
        .expect(200);
      expect((await whoami(workspace, stranger).expect(200)).body.roles).toEqual([]);
    } finally {
      await issuer.close();
    }
  });
});

describe('the JWT attack catalogue (RFC 8725)', () => {
  it('refuses alg "none"', async () => {
    const token = assembleToken(
      { alg: 'none', typ: 'JWT' },
      { iss: clerk.url, sub: 'user_2alice', org_id: clerkOrg, azp: appOrigin, exp: Date.now() / 1000 + 60 },
    );
    expectUnauthorized(await whoami(clerkWorkspace, token), 'token_algorithm');
  });

  it('refuses HS256 signed with the RSA public key as the HMAC secret', async () => {
    const publicPem = await exportSPKI((await importJWK(clerk.keys[0]!.publicJwk, 'RS256')) as CryptoKey);
    const header = { alg: 'HS256', typ: 'JWT', kid: clerk.keys[0]!.kid };
    const payload = {
      iss: clerk.url,
      sub: 'user_2alice',
      org_id: clerkOrg,
      org_role: 'org:admin',
      azp: appOrigin,
      exp: Math.floor(Date.now() / 1000) + 60,
    };
    const unsigned = assembleToken(header, payload).slice(0, -1);
    const signature = createHmac('sha256', publicPem).update(unsigned).digest('base64url');
    expectUnauthorized(await whoami(clerkWorkspace, `${unsigned}.${signature}`), 'token_algorithm');
  });

  it('refuses a crit extension it does not implement as a malformed token, before any key is fetched', async () => {
    const requests = clerk.jwksRequests;
    const header = { alg: 'RS256', typ: 'JWT', kid: 'fresh-kid', crit: ['exp'], exp: 1 };
    const token = assembleToken(
      header,
      { iss: clerk.url, sub: 'user_2alice', org_id: clerkOrg, azp: appOrigin, exp: Math.floor(Date.now() / 1000) + 60 },
      'AAAA',
    );
    expectUnauthorized(await whoami(clerkWorkspace, token), 'token_malformed');
    expect(clerk.jwksRequests).toBe(requests);
  });

  it('refuses an RFC 7797 unencoded payload, even one the issuer signed', async () => {
    const key = clerk.keys[0]!;
    const claims = {
      iss: clerk.url,
      sub: 'user_2alice',
      org_id: clerkOrg,
      org_role: 'org:admin',
      azp: appOrigin,
      exp: Math.floor(Date.now() / 1000) + 60,
    };
    // The raw payload is itself base64url text, so the token reads like a normal JWT.
    const raw = Buffer.from(JSON.stringify(claims)).toString('base64url');
    const jws = await new FlattenedSign(new TextEncoder().encode(raw))
      .setProtectedHeader({ alg: key.alg, kid: key.kid, b64: false, crit: ['b64'] })
      .sign(key.privateKey);
    const token = `${jws.protected}.${raw}.${jws.signature}`;
    expectUnauthorized(await whoami(clerkWorkspace, token), 'token_malformed');
  });

  it.each([['../../../../etc/passwd'], ["' OR 1=1 --"], ['key-1"; drop table workspaces; --']])(
    'refuses a kid of %s',
    async (kid) => {
      const token = await clerk.sign({ sub: 'x', org_id: clerkOrg, azp: appOrigin }, { kid });
      expectUnauthorized(await whoami(clerkWorkspace, token), 'token_unknown_key');
    },
  );

  it.each(['jku', 'x5u', 'jwk'])('never follows an embedded %s header pointing at an attacker key', async (member) => {
    const attacker = await TestIssuer.start();
    try {
      const attackerKey = attacker.keys[0]!;
      const header = member === 'jwk' ? { jwk: attackerKey.publicJwk } : { [member]: attacker.jwksUri };
      const claims = { sub: 'user_2alice', org_id: clerkOrg, org_role: 'org:admin', azp: appOrigin };
      const withUnknownKid = await clerk.sign(claims, { key: attackerKey, header });
      const withKnownKid = await clerk.sign(claims, { key: attackerKey, kid: clerk.keys[0]!.kid, header });
      expectUnauthorized(await whoami(clerkWorkspace, withUnknownKid), 'token_unknown_key');
      expectUnauthorized(await whoami(clerkWorkspace, withKnownKid), 'token_signature');
      expect(attacker.jwksRequests).toBe(0);
    } finally {
      await attacker.close();
    }
  });

  it('refuses an expired token, one not valid yet, and one issued in the future', async () => {
    const now = Math.floor(Date.now() / 1000);
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ exp: now - 60 })), 'token_expired');
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ nbf: now + 120 })), 'token_not_yet_valid');
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ iat: now + 120 })), 'token_issued_in_future');
  });

  it('refuses time claims that are not numbers, as jose.jwtVerify does', async () => {
    const now = Math.floor(Date.now() / 1000);
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ exp: String(now + 60) })), 'token_claims');
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ nbf: '99999999999' })), 'token_claims');
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ iat: 'yesterday' })), 'token_claims');
    expectUnauthorized(await whoami(clerkWorkspace, await clerkV1({ nbf: null })), 'token_claims');
  });

  it('accepts clock skew within the provider tolerance (5 s by default)', async () => {
    const now = Math.floor(Date.now() / 1000);
    await whoami(clerkWorkspace, await clerkV1({ exp: now - 2 })).expect(200);
    await whoami(clerkWorkspace, await clerkV1({ nbf: now + 2, iat: now + 2 })).expect(200);
  });

  it('refuses a token without exp', async () => {
    const token = await clerk.sign({ sub: 'user_2alice', org_id: clerkOrg, azp: appOrigin, exp: undefined });
    expectUnauthorized(await whoami(clerkWorkspace, token), 'token_claims');
  });

  it('refuses a wrong issuer, a tampered payload and a garbled token', async () => {
    expectUnauthorized(
      await whoami(clerkWorkspace, await clerkV1({ iss: 'https://evil.example.com' })),
      'token_untrusted_issuer',
    );
    const [header, , signature] = (await clerkV1()).split('.');
    const tampered = `${header}.${Buffer.from(JSON.stringify({ iss: clerk.url, sub: 'user_2alice', org_id: clerkOrg, org_role: 'org:admin', azp: appOrigin, exp: 4_000_000_000 })).toString('base64url')}.${signature}`;
    expectUnauthorized(await whoami(clerkWorkspace, tampered), 'token_signature');
    expectUnauthorized(await whoami(clerkWorkspace, 'not.a.jwt'), 'token_malformed');
    expectUnauthorized(await whoami(clerkWorkspace, 'abc'), 'token_malformed');
  });
});

describe('errors that could enumerate tenants', () => {
  it('answers a missing token with a bare Bearer challenge', async () => {
    const response = await whoami(clerkWorkspace).expect(401);
    expect(response.body.code).toBe('token_missing');
    expect(response.headers['www-authenticate']).toBe('Bearer realm="cordon"');
  });

  it('treats an unknown workspace, one without providers and an untrusted issuer alike', async () => {
    const token = await clerkV1();
    const responses = [
      await whoami('no-such-workspace-anywhere', token),
      await whoami(randomUUID(), token),
      await whoami(randomUUID().toUpperCase(), token),
      // References that could name no workspace are answered without a lookup, and alike.
      await whoami('No_Such_Workspace', token),
      await whoami('x', token),
      await whoami(emptyWorkspace, token),
      await whoami(auth0Workspace, token),
    ];
    const shapes = responses.map((response) => ({
      status: response.status,
      code: response.body.code,
      detail: response.body.detail,
      challenge: response.headers['www-authenticate'],
    }));
    expect(new Set(shapes.map((shape) => JSON.stringify(shape))).size).toBe(1);
    expect(shapes[0]).toMatchObject({ status: 401, code: 'token_untrusted_issuer' });
  });

  it('never puts the token in a response or a log line', async () => {
    const token = await clerkV1({ exp: Math.floor(Date.now() / 1000) - 3600 });
    const signature = token.split('.')[2]!;
    const response = await whoami(clerkWorkspace, token).expect(401);
    expect(JSON.stringify(response.body) + JSON.stringify(response.headers)).not.toContain(signature);
    const ok = await clerkV1();
    await whoami(clerkWorkspace, ok).expect(200);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.join('\n')).not.toContain(signature);
    expect(logLines.join('\n')).not.toContain(ok.split('.')[2]!);
  });

  it('refuses tokens for a suspended workspace after authenticating them', async () => {
    const workspace = await createWorkspace();
    const issuer = await TestIssuer.start();
    try {
      await createProvider(workspace, clerkProvider(issuer, 'org_suspended'));
      const token = await issuer.sign({
        sub: 'user_s',
        org_id: 'org_suspended',
        org_role: 'org:admin',
        azp: appOrigin,
      });
      await whoami(workspace, token).expect(200);
      await cordon.admin().patch(`/v1/workspaces/${workspace}`).send({ status: 'suspended' }).expect(200);
      expect((await whoami(workspace, token).expect(403)).body.code).toBe('workspace_suspended');
    } finally {
      await issuer.close();
    }
  });
});

describe('keys and caches', () => {
  it('picks up a rotated key and refuses the old one once it leaves the set, even for a token it had verified', async () => {
    const workspace = await createWorkspace();
    const issuer = await TestIssuer.start();
    try {
      await createProvider(workspace, clerkProvider(issuer, 'org_rotation'));
      const claims = { sub: 'user_r', org_id: 'org_rotation', org_role: 'org:member', azp: appOrigin };
      const oldToken = await issuer.sign(claims);
      await whoami(workspace, oldToken).expect(200);

      const newKey = await createKey('RS256');
      issuer.keys = [newKey];
      const newToken = await issuer.sign(claims, { key: newKey });
      await whoami(workspace, newToken).expect(200);
      expectUnauthorized(await whoami(workspace, oldToken), 'token_unknown_key');
    } finally {
      await issuer.close();
    }
  });

  it('fetches the key set once for many requests and re-verifies a token after its provider changes', async () => {
    const workspace = await createWorkspace();
    const issuer = await TestIssuer.start();
    try {
      const provider = await createProvider(workspace, clerkProvider(issuer, 'org_cache'));
      const token = await issuer.sign({ sub: 'user_c', org_id: 'org_cache', org_role: 'org:member', azp: appOrigin });
      for (let attempt = 0; attempt < 5; attempt += 1) await whoami(workspace, token).expect(200);
      const other = await issuer.sign({ sub: 'user_d', org_id: 'org_cache', azp: appOrigin });
      await whoami(workspace, other).expect(200);
      expect(issuer.jwksRequests).toBe(1);

      await cordon
        .admin()
        .put(`/v1/workspaces/${workspace}/identity-providers/${provider.id}`)
        .send(clerkProvider(issuer, 'org_cache', { audiences: ['https://api.example.com'] }))
        .expect(200);
      expectUnauthorized(await whoami(workspace, token), 'token_audience');
    } finally {
      await issuer.close();
    }
  });

  it('waits out the cooldown before refetching for unknown kids', async () => {
    const slow = await startTestApp({ env: { JWKS_COOLDOWN_SECONDS: '30' } });
    const issuer = await TestIssuer.start();
    try {
      const workspace = (
        await slow
          .admin()
          .post('/v1/workspaces')
          .send({ slug: uniqueSlug('cool'), name: 'Cooldown' })
          .expect(201)
      ).body.slug;
      await slow
        .admin()
        .post(`/v1/workspaces/${workspace}/identity-providers`)
        .send(clerkProvider(issuer, 'org_cooldown'))
        .expect(201);
      const claims = { sub: 'user_k', org_id: 'org_cooldown', azp: appOrigin };
      await slow
        .http()
        .get(`/v1/workspaces/${workspace}/whoami`)
        .auth(await issuer.sign(claims), { type: 'bearer' })
        .expect(200);
      for (let attempt = 0; attempt < 5; attempt += 1) {
        const token = await issuer.sign(claims, { kid: `unknown-${attempt}` });
        const response = await slow.http().get(`/v1/workspaces/${workspace}/whoami`).auth(token, { type: 'bearer' });
        expect(response.body.code).toBe('token_unknown_key');
      }
      expect(issuer.jwksRequests).toBe(1);
    } finally {
      await issuer.close();
      await slow.close();
    }
  });

  it.each([
    ['a server error', 500, '{"error":"down"}'],
    ['a missing key set', 404, 'not found'],
    ['a body that is not JSON', 200, '<html>maintenance</html>'],
    ['JSON that is not a key set', 200, '{"keys":"none"}'],
  ])('answers 503, not a token error, for %s at the JWKS endpoint', async (_case, status, body) => {
    const issuer = await TestIssuer.start();
    try {
      const workspace = await createWorkspace();
      await createProvider(workspace, clerkProvider(issuer, `org_outage_${status}`));
      issuer.jwksFailure = { status, body };
      const response = await whoami(
        workspace,
        await issuer.sign({ sub: 'user_o', org_id: `org_outage_${status}`, azp: appOrigin }),
      ).expect(503);
      expect(response.body.code).toBe('identity_provider_unavailable');
      expect(response.headers['www-authenticate']).toBeUndefined();
      expect(issuer.jwksRequests).toBe(1);
    } finally {
      await issuer.close();
    }
  });

  /** What the front door answers, as a response would carry it. */
  interface Answer {
    status: number;
    body: { code: string };
    headers: Record<string, string>;
  }

  /**
   * A workspace trusting `issuer` (given two keys) for `orgId`, and a front door of its own whose
   * key sets have a 30 s cooldown and read the time from a clock the test moves. Only the key
   * sets' clock moves: the token's own time claims are checked against the real one.
   */
  async function withCooldown(
    orgId: string,
    test: (context: {
      issuer: TestIssuer;
      who: (token: string) => Promise<Answer>;
      claims: Record<string, unknown>;
      advance: (millis: number) => void;
    }) => Promise<void>,
  ): Promise<void> {
    let now = Date.now();
    const issuer = await TestIssuer.start();
    try {
      issuer.keys = [...issuer.keys, await createKey('RS256')];
      const workspace = await createWorkspace();
      await createProvider(workspace, clerkProvider(issuer, orgId));
      const keySets = new KeySets({
        ...keySetOptions(parseConfig({ NODE_ENV: 'test', JWKS_COOLDOWN_SECONDS: '30' })),
        now: () => now,
      });
      const frontDoor = new Authenticator(
        new WorkspaceDirectory(cordon.database, new ChangeBus(undefined, pino({ level: 'silent' }))),
        new TokenVerifier(keySets, new VerifiedTokenCache(1_000)),
        cordon.database,
      );
      await test({
        issuer,
        who: (token) =>
          frontDoor.authenticate(workspace, token).then(
            (): Answer => ({ status: 200, body: { code: '' }, headers: {} }),
            (error: unknown): Answer => {
              if (!(error instanceof ProblemError)) throw error;
              const headers = Object.entries(error.headers).map(([name, value]) => [name.toLowerCase(), value]);
              return { status: error.status, body: { code: error.code }, headers: Object.fromEntries(headers) };
            },
          ),
        claims: { sub: 'user_c', org_id: orgId, azp: appOrigin },
        advance: (millis) => (now += millis),
      });
    } finally {
      await issuer.close();
    }
  }

  it('does not fetch a failing key set again before the cooldown, and recovers after it', async () => {
    await withCooldown('org_outage', async ({ issuer, who, claims, advance }) => {
      const token = await issuer.sign(claims);
      issuer.jwksFailure = { status: 503, body: '' };
      for (let attempt = 0; attempt < 5; attempt += 1) {
        expect(await who(token)).toMatchObject({ status: 503, body: { code: 'identity_provider_unavailable' } });
      }
      expect(issuer.jwksRequests).toBe(1);
      issuer.jwksFailure = undefined;
      advance(29_000);
      expect((await who(token)).status).toBe(503);
      expect(issuer.jwksRequests).toBe(1);
      advance(2_000);
      expect((await who(token)).status).toBe(200);
      expect(issuer.jwksRequests).toBe(2);
    });
  });

  it('keeps accepting every key of the set it holds while a failed refetch cools down', async () => {
    await withCooldown('org_held', async ({ issuer, who, claims, advance }) => {
      expect((await who(await issuer.sign(claims, { key: issuer.keys[0] }))).status).toBe(200);
      expect(issuer.jwksRequests).toBe(1);
      // Past the cooldown, well within the cache age: an unknown kid makes the key set refetch,
      // and the identity provider is down.
      advance(31_000);
      issuer.jwksFailure = { status: 503, body: '' };
      expect(await who(await issuer.sign(claims, { key: issuer.keys[0], kid: 'no-such-kid' }))).toMatchObject({
        status: 503,
        body: { code: 'identity_provider_unavailable' },
      });
      expect(issuer.jwksRequests).toBe(2);
      // The second key was in the set already fetched: it works without a fetch, and another
      // unknown kid is refused as such, without a fetch either.
      expect((await who(await issuer.sign(claims, { key: issuer.keys[1] }))).status).toBe(200);
      expectUnauthorized(
        await who(await issuer.sign(claims, { key: issuer.keys[0], kid: 'another-kid' })),
        'token_unknown_key',
      );
      expect(issuer.jwksRequests).toBe(2);
    });
  });

  it('fetches a key set again once it is older than its maximum age', async () => {
    await withCooldown('org_aging', async ({ issuer, who, claims, advance }) => {
      // A token never seen before each time, so its key is looked up each time.
      const fresh = () => issuer.sign({ ...claims, jti: randomUUID() });
      expect((await who(await fresh())).status).toBe(200);
      advance(599_000);
      expect((await who(await fresh())).status).toBe(200);
      expect(issuer.jwksRequests).toBe(1);
      advance(2_000);
      expect((await who(await fresh())).status).toBe(200);
      expect(issuer.jwksRequests).toBe(2);
    });
  });

  it('refuses to fetch keys from a private address when outbound private networks are off', async () => {
    const strict = await startTestApp({ env: { OUTBOUND_ALLOW_PRIVATE: 'false' } });
    const issuer = await TestIssuer.start();
    try {
      const workspace = (
        await strict
          .admin()
          .post('/v1/workspaces')
          .send({ slug: uniqueSlug('ssrf'), name: 'SSRF' })
          .expect(201)
      ).body.slug;
      await strict
        .admin()
        .post(`/v1/workspaces/${workspace}/identity-providers`)
        .send(clerkProvider(issuer, 'org_ssrf'))
        .expect(201);
      const token = await issuer.sign({ sub: 'user_x', org_id: 'org_ssrf', azp: appOrigin });
      const response = await strict
        .http()
        .get(`/v1/workspaces/${workspace}/whoami`)
        .auth(token, { type: 'bearer' })
        .expect(503);
      expect(response.body.code).toBe('identity_provider_unavailable');
      expect(issuer.jwksRequests).toBe(0);
    } finally {
      await issuer.close();
      await strict.close();
    }
  });

  it('drops a deleted provider on another instance through LISTEN/NOTIFY', async () => {
    const first = await startTestApp({ listen: true });
    const second = await startTestApp({ listen: true });
    const issuer = await TestIssuer.start();
    try {
      const workspace = (
        await first
          .admin()
          .post('/v1/workspaces')
          .send({ slug: uniqueSlug('bus'), name: 'Bus' })
          .expect(201)
      ).body.slug;
      const provider = (
        await first
          .admin()
          .post(`/v1/workspaces/${workspace}/identity-providers`)
          .send(clerkProvider(issuer, 'org_bus'))
          .expect(201)
      ).body;
      const token = await issuer.sign({ sub: 'user_b', org_id: 'org_bus', azp: appOrigin });
      await first.http().get(`/v1/workspaces/${workspace}/whoami`).auth(token, { type: 'bearer' }).expect(200);

      await second.admin().delete(`/v1/workspaces/${workspace}/identity-providers/${provider.id}`).expect(204);
      let status = 200;
      await eventually(async () => {
        status = (await first.http().get(`/v1/workspaces/${workspace}/whoami`).auth(token, { type: 'bearer' })).status;
        return status !== 200;
      }, 1_000);
      expect(status).toBe(401);
    } finally {
      await issuer.close();
      await first.close();
      await second.close();
    }
  });
});
