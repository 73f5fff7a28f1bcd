import { createLocalJWKSet, errors, type JWTVerifyGetKey } from 'jose';
import type { SafeFetch } from './safe-fetch.ts';

export interface RemoteKeySetOptions {
  fetch: SafeFetch;
  timeoutMs: number;
  /** After a fetch, an unknown `kid` is refused without fetching again for this long. */
  cooldownMs: number;
  /** A fetched set is used for this long, then fetched again. */
  maxAgeMs: number;
  /** Epoch milliseconds: the cooldown and the age of the set are measured on this clock. */
  now: () => number;
  /** Hears each key set fetched, as text, once it proved usable. */
  fetched: (body: string) => void;
}

/**
 * A provider's key set fetched from its JWKS URI, the way jose's `createRemoteJWKSet` does it:
 * fetched when first needed and again once stale, refetched for an unknown `kid` unless a fetch
 * happened within the cooldown, one fetch at a time. Unlike jose's, it reads the time from
 * `now`, so tests move a clock instead of patching `Date.now`.
 */
export class RemoteKeySet {
  private readonly url: string;
  private readonly options: RemoteKeySetOptions;
  private local: ReturnType<typeof createLocalJWKSet> | undefined;
  private fetchedAt = Number.NEGATIVE_INFINITY;
  private pending: Promise<void> | undefined;

  constructor(url: string, options: RemoteKeySetOptions) {
    this.url = url;
    this.options = options;
  }

  /** Whether the set held is younger than its maximum age. */
  fresh(): boolean {
    return this.options.now() < this.fetchedAt + this.options.maxAgeMs;
  }

  /** A resolver over the set already held, which never fetches; undefined before the first fetch. */
  held(): JWTVerifyGetKey | undefined {
    return this.local;
  }

  readonly select: JWTVerifyGetKey = async (header, token) => {
    if (!this.local || !this.fresh()) await this.reload();
    try {
      return await this.local!(header, token);
    } catch (error) {
      const coolingDown = this.options.now() < this.fetchedAt + this.options.cooldownMs;
      if (!(error instanceof errors.JWKSNoMatchingKey) || coolingDown) throw error;
      await this.reload();
      return this.local!(header, token);
    }
  };

  private reload(): Promise<void> {
    this.pending ??= this.fetchSet().finally(() => {
      this.pending = undefined;
    });
    return this.pending;
  }

  private async fetchSet(): Promise<void> {
    const response = await this.options.fetch(this.url, {
      method: 'GET',
      signal: AbortSignal.timeout(this.options.timeoutMs),
      headers: { accept: 'application/json, application/jwk-set+json', 'user-agent': 'cordon' },
    });
    if (response.status !== 200) throw new errors.JOSEError('Expected 200 OK from the JSON Web Key Set HTTP response');
    const body = await response.text();
    // Throws for a body that is not JSON, or JSON that is not a key set.
    const local = createLocalJWKSet(JSON.parse(body) as Parameters<typeof createLocalJWKSet>[0]);
    this.options.fetched(body);
    this.local = local;
    this.fetchedAt = this.options.now();
  }
}
