import { randomUUID } from 'node:crypto';
import type { FlattenedJWSInput } from 'jose';
import { createKey, TestIssuer } from '../../test/support/issuer.ts';
import type { IdentityProvider } from './identity-provider.ts';
import { KeySets, type KeySetOptions } from './key-sets.ts';

const maxAgeMs = 60_000;

function keySets(options: Partial<KeySetOptions> = {}) {
  const clock = { now: Date.now() };
  const sets = new KeySets({
    allowPrivateNetworks: true,
    timeoutMs: 1_000,
    cooldownMs: 0,
    maxAgeMs,
    maxBytes: 65_536,
    now: () => clock.now,
    ...options,
  });
  return { sets, advance: (millis: number) => (clock.now += millis) };
}

/** A provider as the directory hands it out: a new object, with a new id, for each one created. */
const provider = (keys: Pick<IdentityProvider, 'jwksUri' | 'jwks'>): IdentityProvider => ({
  id: randomUUID(),
  workspaceId: randomUUID(),
  name: 'provider',
  type: 'oidc',
  issuer: 'https://issuer.example.com',
  audiences: [],
  authorizedParties: [],
  algorithms: ['ES256'],
  clockToleranceSeconds: 5,
  orgId: 'org',
  claims: {},
  roleMap: {},
  roleSource: 'claims',
  allowPendingSessions: false,
  version: 1,
  createdAt: new Date(),
  updatedAt: new Date(),
  ...keys,
});

/** Asks the provider's resolver for a key, as a verification does. */
const select = (sets: KeySets, of: IdentityProvider, kid: string, alg: string) =>
  sets.resolver(of)({ alg, kid }, { payload: '', signature: '' } as FlattenedJWSInput);

describe('KeySets', () => {
  it('holds one key set for a JWKS URI however many providers were created and deleted for it', async () => {
    const issuer = await TestIssuer.start('ES256');
    try {
      const { sets } = keySets();
      for (let created = 0; created < 20; created++) {
        await select(sets, provider({ jwksUri: issuer.jwksUri }), issuer.keys[0]!.kid, 'ES256');
      }
      expect(sets.size).toBe(1);
      expect(issuer.jwksRequests).toBe(1);
    } finally {
      await issuer.close();
    }
  });

  it('lets go of the key sets of providers no longer asked for, so deleted ones do not pile up', async () => {
    const key = await createKey('ES256');
    const { sets, advance } = keySets();
    for (let created = 0; created < 50; created++) {
      await select(sets, provider({ jwks: { keys: [key.publicJwk] } }), key.kid, 'ES256');
      // Deleted: no request asks for it again.
      advance(maxAgeMs + 1);
    }
    expect(sets.size).toBe(1);
  });

  it('holds no more key sets than its bound, even when all are in use', async () => {
    const key = await createKey('ES256');
    const { sets } = keySets({ maxSets: 3 });
    const providers = Array.from({ length: 10 }, () => provider({ jwks: { keys: [key.publicJwk] } }));
    for (const each of providers) await select(sets, each, key.kid, 'ES256');
    expect(sets.size).toBe(3);
    for (const each of providers) await select(sets, each, key.kid, 'ES256');
    expect(sets.size).toBe(3);
  });

  it('gives a key set built again a generation no token was verified under', async () => {
    const key = await createKey('ES256');
    const { sets, advance } = keySets();
    const kept = provider({ jwks: { keys: [key.publicJwk] } });
    const seen = new Set([sets.generation(kept)]);
    for (let rebuilt = 0; rebuilt < 5; rebuilt++) {
      advance(maxAgeMs + 1);
      sets.generation(provider({ jwks: { keys: [key.publicJwk] } }));
      const generation = sets.generation(kept);
      expect(seen.has(generation)).toBe(false);
      seen.add(generation);
    }
  });
});

describe('KeySets across workspaces', () => {
  // An import keeps provider ids: two workspaces may each hold a provider of the same id and
  // version, each with its own inline keys.
  it("never answers one workspace's provider with another's inline keys", async () => {
    const { sets } = keySets();
    const [mine, theirs] = [await createKey('ES256', 'shared-kid'), await createKey('ES256', 'shared-kid')];
    const victim = provider({ jwks: { keys: [mine.publicJwk] } });
    const copy = { ...provider({ jwks: { keys: [theirs.publicJwk] } }), id: victim.id, version: victim.version };
    const theirsFirst = await select(sets, copy, 'shared-kid', 'ES256');
    const mineThen = await select(sets, victim, 'shared-kid', 'ES256');
    expect(mineThen).not.toBe(theirsFirst);
    expect(await select(sets, { ...victim }, 'shared-kid', 'ES256')).toBe(mineThen);
    expect(sets.size).toBe(2);
  });
});
