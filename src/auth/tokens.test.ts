import type { CompactVerifyGetKey } from 'jose';
import { createKey, TestIssuer } from '../../test/support/issuer.ts';
import type { IdentityProvider } from './identity-provider.ts';
import { KeySets } from './key-sets.ts';
import { VerifiedTokenCache } from './token-cache.ts';
import { TokenVerifier } from './tokens.ts';
import type { Tenant } from './workspace-directory.ts';

/** Counts signature verifications: every jose verification asks the resolver for a key. */
class CountingKeySets extends KeySets {
  lookups = 0;
  override resolver(provider: IdentityProvider): CompactVerifyGetKey {
    const resolve = super.resolver(provider);
    return (...args) => {
      this.lookups += 1;
      return resolve(...args);
    };
  }
}

const keySetOptions = {
  allowPrivateNetworks: true,
  timeoutMs: 1_000,
  cooldownMs: 0,
  maxAgeMs: 60_000,
  maxBytes: 65_536,
};
const issuerUrl = 'https://issuer.example.com';

async function setup(cacheSize = 100) {
  const key = await createKey('ES256');
  const provider = {
    id: '0192f3a4-0000-7000-8000-000000000001',
    workspaceId: '0192f3a4-0000-7000-8000-0000000000aa',
    name: 'inline',
    type: 'oidc',
    issuer: issuerUrl,
    jwksUri: null,
    jwks: { keys: [key.publicJwk] },
    audiences: [],
    authorizedParties: [],
    algorithms: ['ES256'],
    // Tokens are signed on the real clock while the verifier's clock starts at setup: a little
    // tolerance keeps a second boundary between the two from failing the test.
    clockToleranceSeconds: 2,
    orgId: 'org',
    claims: { orgId: 'org', roles: 'roles' },
    roleMap: {},
    roleSource: 'claims',
    allowPendingSessions: false,
    version: 1,
    createdAt: new Date(),
    updatedAt: new Date(),
  } as IdentityProvider;
  const tenant: Tenant = {
    workspace: {
      id: provider.workspaceId,
      slug: 'unit',
      status: 'active',
      plan: 'free',
      policySetVersion: 1,
      billing: { plan: 'free', status: 'none', currentPeriodEnd: null, graceEndsAt: null, updatedAt: new Date(0) },
    },
    providers: [provider],
  };
  const keySets = new CountingKeySets(keySetOptions);
  const cache = new VerifiedTokenCache(cacheSize);
  let now = Math.floor(Date.now() / 1000);
  const verifier = new TokenVerifier(keySets, cache, () => now);
  const issuer = {
    sign: (claims: Record<string, unknown>, expiresInSeconds = 60) =>
      TestIssuer.prototype.sign.call(
        { url: issuerUrl, keys: [key] },
        { sub: 'user', org: 'org', ...claims },
        { expiresInSeconds },
      ),
  };
  return { provider, tenant, keySets, cache, verifier, issuer, advance: (seconds: number) => (now += seconds) };
}

describe('the verified-token cache', () => {
  it('verifies the signature once and skips it for the same token again', async () => {
    const { tenant, keySets, verifier, issuer } = await setup();
    const token = await issuer.sign({});
    for (let attempt = 0; attempt < 3; attempt += 1) await verifier.verify(tenant, token);
    expect(keySets.lookups).toBe(1);
    await verifier.verify(tenant, await issuer.sign({ sub: 'someone-else' }));
    expect(keySets.lookups).toBe(2);
  });

  it('still checks exp against the clock on a hit, and never serves a token past exp', async () => {
    const { tenant, verifier, issuer, advance, cache } = await setup();
    const token = await issuer.sign({}, 30);
    await verifier.verify(tenant, token);
    advance(33);
    await expect(verifier.verify(tenant, token)).rejects.toMatchObject({ code: 'token_expired' });
    expect(cache.get(VerifiedTokenCache.key(token))).toBeDefined(); // the LRU ttl runs on the real clock; the check does not
  });

  it('re-verifies when the provider configuration changes', async () => {
    const { tenant, provider, keySets, verifier, issuer } = await setup();
    const token = await issuer.sign({});
    await verifier.verify(tenant, token);
    const changed: Tenant = {
      ...tenant,
      providers: [{ ...provider, version: 2, audiences: ['https://api'] } as IdentityProvider],
    };
    await expect(verifier.verify(changed, token)).rejects.toMatchObject({ code: 'token_audience' });
    expect(keySets.lookups).toBe(2);
  });

  it('does not serve a token verified for one workspace to another', async () => {
    const { tenant, keySets, verifier, issuer } = await setup();
    const token = await issuer.sign({});
    await verifier.verify(tenant, token);
    const other: Tenant = { ...tenant, workspace: { ...tenant.workspace, id: '0192f3a4-0000-7000-8000-0000000000bb' } };
    await verifier.verify(other, token);
    expect(keySets.lookups).toBe(2);
  });

  it('stays within its bound under a flood of distinct valid tokens', async () => {
    const { tenant, cache, verifier, issuer } = await setup(5);
    for (let index = 0; index < 40; index += 1)
      await verifier.verify(tenant, await issuer.sign({ sub: `user-${index}` }));
    expect(cache.size).toBe(5);
  });

  it('can be turned off with a size of 0, verifying every time', async () => {
    const { tenant, keySets, cache, verifier, issuer } = await setup(0);
    const token = await issuer.sign({});
    await verifier.verify(tenant, token);
    await verifier.verify(tenant, token);
    expect(keySets.lookups).toBe(2);
    expect(cache.size).toBe(0);
  });

  it('keeps nothing for tokens that fail verification', async () => {
    const { tenant, cache, verifier, issuer } = await setup();
    const token = await issuer.sign({});
    const [header, payload] = token.split('.');
    await expect(verifier.verify(tenant, `${header}.${payload}.AAAA`)).rejects.toMatchObject({
      code: 'token_signature',
    });
    await expect(verifier.verify(tenant, await issuer.sign({ exp: 1 }))).rejects.toMatchObject({
      code: 'token_expired',
    });
    expect(cache.size).toBe(0);
  });
});
