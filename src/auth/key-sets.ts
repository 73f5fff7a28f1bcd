import { createHash } from 'node:crypto';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, type JWTVerifyGetKey } from 'jose';
import type { IdentityProvider } from '../features/identity-providers/identity-provider.entity.ts';
import { createSafeFetch } from './safe-fetch.ts';

export interface KeySetOptions {
  timeoutMs: number;
  cooldownMs: number;
  maxAgeMs: number;
  maxBytes: number;
  allowPrivateNetworks: boolean;
}

interface KeySet {
  /** Provider id and version: a new configuration gets a new key set. */
  configuration: string;
  resolver: JWTVerifyGetKey;
  /** Bumped whenever a fetch returns a different key set, so cached tokens are re-verified. */
  generation: number;
  digest: string | undefined;
}

/**
 * One key resolver per provider, shared by every request. Remote sets are fetched through the
 * SSRF-safe fetch, cached by jose (cooldown on unknown `kid`, refetch on rotation) and never
 * taken from the token's own `jku`, `x5u` or `jwk` headers.
 */
export class KeySets {
  private readonly sets = new Map<string, KeySet>();
  private readonly options: KeySetOptions;
  private readonly fetch: ReturnType<typeof createSafeFetch>;

  constructor(options: KeySetOptions) {
    this.options = options;
    this.fetch = createSafeFetch({
      allowPrivateNetworks: options.allowPrivateNetworks,
      timeoutMs: options.timeoutMs,
      maxBytes: options.maxBytes,
    });
  }

  resolver(provider: IdentityProvider): JWTVerifyGetKey {
    return this.entry(provider).resolver;
  }

  generation(provider: IdentityProvider): number {
    return this.entry(provider).generation;
  }

  private entry(provider: IdentityProvider): KeySet {
    const configuration = `${provider.id}:${provider.version}`;
    const existing = this.sets.get(provider.id);
    if (existing?.configuration === configuration) return existing;
    const created: KeySet = { configuration, generation: (existing?.generation ?? 0) + 1, digest: undefined, resolver: undefined as never };
    created.resolver = provider.jwks
      ? createLocalJWKSet(provider.jwks as Parameters<typeof createLocalJWKSet>[0])
      : createRemoteJWKSet(new URL(provider.jwksUri ?? 'invalid:'), {
          timeoutDuration: this.options.timeoutMs,
          cooldownDuration: this.options.cooldownMs,
          cacheMaxAge: this.options.maxAgeMs,
          [customFetch]: async (url, init) => {
            const response = await this.fetch(url, init);
            const body = await response.text();
            const digest = createHash('sha256').update(body).digest('hex');
            if (created.digest !== undefined && created.digest !== digest) created.generation += 1;
            created.digest = digest;
            return new Response(body, { status: response.status, headers: response.headers });
          },
        });
    this.sets.set(provider.id, created);
    return created;
  }

  forget(providerIds: Iterable<string>): void {
    for (const id of providerIds) this.sets.delete(id);
  }
}
