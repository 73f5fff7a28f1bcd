import { hash } from 'node:crypto';
import type { JWTPayload } from 'jose';
import { LRUCache } from 'lru-cache';

export interface VerifiedToken {
  workspaceId: string;
  providerId: string;
  /** Provider version and key-set generation at verification: a change invalidates the entry. */
  providerVersion: number;
  keyGeneration: number;
  payload: JWTPayload;
}

/**
 * Tokens whose signature was verified, keyed by the SHA-256 of the token (the token itself is
 * never kept as a key). Bounded: a flood of distinct tokens evicts the oldest entries, and only
 * tokens that verified get in at all. An entry never outlives the token's `exp`.
 */
export class VerifiedTokenCache {
  private readonly cache: LRUCache<string, VerifiedToken> | undefined;

  /** `maxEntries: 0` turns the cache off. */
  constructor(maxEntries: number) {
    this.cache = maxEntries > 0 ? new LRUCache({ max: maxEntries }) : undefined;
  }

  static key(token: string): string {
    return hash('sha256', token, 'base64url');
  }

  get(key: string): VerifiedToken | undefined {
    return this.cache?.get(key);
  }

  set(key: string, entry: VerifiedToken, nowSeconds: number): void {
    const exp = entry.payload.exp;
    if (!this.cache || typeof exp !== 'number' || exp <= nowSeconds) return;
    this.cache.set(key, entry, { ttl: (exp - nowSeconds) * 1000 });
  }

  delete(key: string): void {
    this.cache?.delete(key);
  }

  get size(): number {
    return this.cache?.size ?? 0;
  }
}
