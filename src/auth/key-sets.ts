import { createHash } from 'node:crypto';
import {
  createLocalJWKSet,
  errors,
  type CompactVerifyGetKey,
  type CryptoKey,
  type JSONWebKeySet,
  type JWTVerifyGetKey,
  type KeyObject,
} from 'jose';
import { LRUCache } from 'lru-cache';
import { isDevIssuerUrl } from './dev-issuer.ts';
import type { IdentityProvider } from './identity-provider.ts';
import { publishedKeysUri, type PublishedKeysQuestion } from './published-keys.ts';
import { RemoteKeySet } from './remote-key-set.ts';
import { createSafeFetch } from './safe-fetch.ts';

export interface KeySetOptions {
  timeoutMs: number;
  cooldownMs: number;
  maxAgeMs: number;
  maxBytes: number;
  allowPrivateNetworks: boolean;
  /** Epoch milliseconds, for cooldowns and the age of fetched sets; `Date.now` unless a test moves it. */
  now?: () => number;
  /** The most key sets held at once; 10,000 unless a test says otherwise. */
  maxSets?: number;
  /**
   * The development issuer's public keys (outside production only). A JWKS URI of a development
   * issuer (`isDevIssuerUrl`) is never fetched: it resolves to these in-process, or to no key at
   * all when there are none (production), so its tokens are refused as signed by an unknown key.
   */
  devIssuerKeys?: JSONWebKeySet;
}

type VerificationKey = CryptoKey | KeyObject | Uint8Array;

/**
 * The provider's keys could not be had: the key set could not be fetched (network, timeout, a
 * status other than 200) or used (not JSON, not a key set, keys jose cannot import). A 503, never
 * a token error: the token may be fine.
 */
export class KeySetUnavailable extends Error {
  override readonly name = 'KeySetUnavailable';
}

interface KeySet {
  /** Where the keys come from: a JWKS URI, or one version of a provider's inline set. */
  source: string;
  /** Selects by `kid` and `alg`; for a remote set also fetches, cools down, refreshes (RemoteKeySet). */
  select: JWTVerifyGetKey;
  /** Whether the fetched set is younger than its maximum age (always, for an inline set). */
  fresh: () => boolean;
  /** Keys jose already selected and imported, by `kid` and `alg`; emptied when the set changes. */
  selected: Map<string, VerificationKey>;
  /** The resolver handed to jose: a selected key while the set is fresh, else `select`. */
  resolve: CompactVerifyGetKey;
  /**
   * Until then (epoch ms) after a failure, the set is not fetched again (no fetch per request
   * during an outage): keys come from the copy already held, while it is fresh.
   */
  failedUntil: number;
  /** A resolver over the copy already held, never fetching; undefined when there is none. */
  held: () => JWTVerifyGetKey | undefined;
  /**
   * Changed whenever a fetch returns a different key set, so cached tokens are re-verified. Never
   * one handed out before: a set dropped and built again cannot match a token cached under the old.
   */
  generation: number;
  digest: string | undefined;
}

/**
 * One key resolver per source of keys, shared by every request and every provider naming it.
 * A development issuer's set is this instance's own, never fetched (`devIssuerKeys`). Other
 * remote sets are fetched through the SSRF-safe fetch, cached (cooldown on unknown `kid`, refetch
 * on rotation) and never taken from the token's own `jku`, `x5u` or `jwk` headers. While the set
 * is fresh, a key jose already selected is reused directly: selecting it again costs as much as a
 * quarter of an RS256 verification.
 *
 * Held sets are bounded, and a set no request asked for in longer than its maximum age (and its
 * cooldown) is let go: it would have been fetched again anyway, so the sets of deleted or changed
 * providers do not stay behind.
 */
export class KeySets {
  private readonly sets: LRUCache<string, KeySet>;
  private readonly byProvider = new WeakMap<IdentityProvider, KeySet>();
  private readonly options: KeySetOptions;
  private readonly fetch: ReturnType<typeof createSafeFetch>;
  private readonly now: () => number;
  private generations = 0;

  constructor(options: KeySetOptions) {
    this.options = options;
    this.now = options.now ?? Date.now;
    this.fetch = createSafeFetch({
      allowPrivateNetworks: options.allowPrivateNetworks,
      timeoutMs: options.timeoutMs,
      maxBytes: options.maxBytes,
    });
    this.sets = new LRUCache({
      // Counted by size, not `max`, which would allocate room for every set up front (2 ms).
      maxSize: options.maxSets ?? 10_000,
      sizeCalculation: () => 1,
      ttl: Math.max(options.maxAgeMs, options.cooldownMs),
      updateAgeOnGet: true,
      // A moved clock is read on every look, not once a millisecond.
      ...(options.now && { perf: { now: options.now }, ttlResolution: 0 }),
    });
  }

  resolver(provider: IdentityProvider): CompactVerifyGetKey {
    return this.entry(provider).resolve;
  }

  generation(provider: IdentityProvider): number {
    return this.entry(provider).generation;
  }

  /** The JWKS URI the provider's issuer publishes itself (see `publishedKeysUri`). */
  publishedBy(provider: PublishedKeysQuestion): Promise<string> {
    return publishedKeysUri(
      provider,
      this.fetch,
      this.options.timeoutMs,
      (cause) => new KeySetUnavailable("The issuer's OpenID discovery document could not be fetched", { cause }),
    );
  }

  /** How many key sets are held. */
  get size(): number {
    return this.sets.size;
  }

  private entry(provider: IdentityProvider): KeySet {
    // The same provider object asks on every request: answer it without building the key again.
    const known = this.byProvider.get(provider);
    if (known && this.sets.get(known.source) === known) return known;
    // Provider ids are unique only within a workspace (an import keeps them): an inline set is
    // named by the workspace too, or one workspace's provider could be verified with another's keys.
    const source = provider.jwks
      ? `inline ${provider.workspaceId} ${provider.id} ${provider.version}`
      : `jwks ${provider.jwksUri ?? 'invalid:'}`;
    const existing = this.sets.get(source);
    if (existing) {
      this.byProvider.set(provider, existing);
      return existing;
    }
    this.sets.purgeStale();
    const created: KeySet = {
      source,
      generation: ++this.generations,
      digest: undefined,
      selected: new Map(),
      select: undefined as never,
      fresh: () => true,
      failedUntil: 0,
      held: () => created.select,
      resolve: (header, token) => {
        const name = `${header.kid ?? ''}:${header.alg}`;
        const known = created.fresh() ? created.selected.get(name) : undefined;
        if (known) return known;
        let select = created.select;
        if (this.now() < created.failedUntil) {
          const held = created.fresh() ? created.held() : undefined;
          if (!held)
            return Promise.reject(
              new KeySetUnavailable("The identity provider's keys could not be fetched; retrying after a cooldown"),
            );
          select = held;
        }
        return Promise.resolve()
          .then(() => select(header, token as never))
          .then(
            (key) => {
              created.selected.set(name, key as VerificationKey);
              return key;
            },
            (error: unknown) => {
              if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys)
                throw error;
              created.failedUntil = this.now() + this.options.cooldownMs;
              throw new KeySetUnavailable("The identity provider's keys could not be fetched or used", {
                cause: error,
              });
            },
          );
      },
    };
    if (provider.jwks) {
      created.select = createLocalJWKSet(provider.jwks as Parameters<typeof createLocalJWKSet>[0]);
    } else if (provider.jwksUri && isDevIssuerUrl(provider.jwksUri)) {
      created.select = createLocalJWKSet(this.options.devIssuerKeys ?? { keys: [] });
    } else {
      const remote = new RemoteKeySet(provider.jwksUri ?? 'invalid:', {
        fetch: this.fetch,
        timeoutMs: this.options.timeoutMs,
        cooldownMs: this.options.cooldownMs,
        maxAgeMs: this.options.maxAgeMs,
        now: this.now,
        fetched: (body) => {
          const digest = createHash('sha256').update(body).digest('hex');
          if (created.digest !== undefined && created.digest !== digest) {
            created.generation = ++this.generations;
            created.selected.clear();
          }
          created.digest = digest;
        },
      });
      created.select = remote.select;
      created.fresh = () => remote.fresh();
      created.held = () => remote.held();
    }
    this.sets.set(source, created);
    this.byProvider.set(provider, created);
    return created;
  }
}
