import { compactVerify, errors, type JWTPayload } from 'jose';
import type { IdentityProvider } from './identity-provider.ts';
import { ProblemError, type ErrorCode } from '../http/errors.ts';
import { isPlainObject } from '../json.ts';
import { mapClaims } from './claims.ts';
import { KeySetUnavailable, type KeySets } from './key-sets.ts';
import { VerifiedTokenCache } from './token-cache.ts';
import type { Tenant } from './workspace-directory.ts';

export interface VerifiedIdentity {
  tenant: Tenant;
  provider: IdentityProvider;
  payload: JWTPayload;
}

/** RFC 6750: a 401 names the error; the description never echoes the token. */
export function tokenProblem(code: ErrorCode, detail: string): ProblemError {
  const header =
    code === 'token_missing'
      ? 'Bearer realm="cordon"'
      : `Bearer realm="cordon", error="invalid_token", error_description="${detail.replaceAll('"', "'")}"`;
  return new ProblemError(code, detail, { headers: { 'WWW-Authenticate': header } });
}

/**
 * jose's errors, as answers. Only the key resolver speaks for the provider (`KeySetUnavailable`,
 * a 503); everything jose refuses about the token itself, including a `crit` extension it does
 * not implement, is the token's fault (a 401).
 */
function fromJose(error: unknown): ProblemError {
  if (error instanceof KeySetUnavailable)
    return new ProblemError('identity_provider_unavailable', error.message, { cause: error.cause });
  if (error instanceof errors.JOSEAlgNotAllowed)
    return tokenProblem('token_algorithm', 'The token algorithm is not allowed');
  if (error instanceof errors.JWSSignatureVerificationFailed)
    return tokenProblem('token_signature', 'The token signature is invalid');
  if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return tokenProblem('token_unknown_key', 'The token was not signed by a key of this identity provider');
  }
  // Not jose's refusal: the key it was given could not be used (e.g. an RSA modulus below 2048 bits).
  if (!(error instanceof errors.JOSEError)) {
    return new ProblemError('identity_provider_unavailable', "The identity provider's keys could not be used", {
      cause: error,
    });
  }
  return tokenProblem('token_malformed', 'The token could not be verified');
}

/**
 * `exp`, `nbf` and `iat` against the clock, with the provider's tolerance. Also used on cache hits.
 * Like jose's `jwtVerify`, a time claim that is present must be a number.
 */
export function checkTimes(payload: JWTPayload, toleranceSeconds: number, now: number): void {
  if (typeof payload.exp !== 'number') throw tokenProblem('token_claims', 'The token has no numeric exp claim');
  if (
    (payload.nbf !== undefined && typeof payload.nbf !== 'number') ||
    (payload.iat !== undefined && typeof payload.iat !== 'number')
  ) {
    throw tokenProblem('token_claims', "The token's nbf and iat claims must be numbers");
  }
  if (payload.exp <= now - toleranceSeconds) throw tokenProblem('token_expired', 'The token has expired');
  if (payload.nbf !== undefined && payload.nbf > now + toleranceSeconds)
    throw tokenProblem('token_not_yet_valid', 'The token is not valid yet');
  if (payload.iat !== undefined && payload.iat > now + toleranceSeconds)
    throw tokenProblem('token_issued_in_future', 'The token was issued in the future');
}

/**
 * The claims of a compact JWS, decoded (not yet trusted) to pick the provider. The header is
 * left to jose, which refuses an algorithm outside the allow-list before it asks for a key.
 */
function decodeClaims(token: string): JWTPayload {
  const first = token.indexOf('.');
  const second = token.indexOf('.', first + 1);
  if (first > 0 && second > first + 1 && token.indexOf('.', second + 1) === -1) {
    try {
      const payload: unknown = JSON.parse(Buffer.from(token.slice(first + 1, second), 'base64url').toString('utf8'));
      if (isPlainObject(payload)) return payload;
    } catch {
      // falls through to the same answer as any other malformed token
    }
  }
  throw tokenProblem('token_malformed', 'The bearer token is not a well-formed JWT');
}

function checkAudience(provider: IdentityProvider, payload: JWTPayload): void {
  if (!provider.audiences.length) return;
  const audiences = typeof payload.aud === 'string' ? [payload.aud] : Array.isArray(payload.aud) ? payload.aud : [];
  if (!audiences.some((audience) => provider.audiences.includes(audience))) {
    throw tokenProblem('token_audience', 'The token audience is not accepted');
  }
}

/** Checks jose does not know about: `azp` and Clerk's pending sessions. */
function checkProviderRules(provider: IdentityProvider, payload: JWTPayload): void {
  if (provider.authorizedParties.length) {
    const azp = payload.azp;
    if (typeof azp !== 'string' || !provider.authorizedParties.includes(azp)) {
      throw tokenProblem('token_authorized_party', 'The token authorized party (azp) is not accepted');
    }
  }
  if (provider.type === 'clerk' && payload.sts === 'pending' && !provider.allowPendingSessions) {
    throw tokenProblem('token_session_pending', 'The token belongs to a pending session');
  }
}

/** The issuer picks the provider; among providers of one issuer, the token's org picks. */
function chooseProvider(tenant: Tenant, payload: JWTPayload): IdentityProvider {
  let chosen: IdentityProvider | undefined;
  let several = false;
  for (const provider of tenant.providers) {
    if (provider.issuer !== payload.iss) continue;
    if (chosen) several = true;
    else chosen = provider;
  }
  if (!chosen) throw tokenProblem('token_untrusted_issuer', 'The token issuer is not trusted by this workspace');
  if (!several) return chosen;
  return (
    tenant.providers.find(
      (provider) => provider.issuer === payload.iss && mapClaims(provider, payload).orgId === provider.orgId,
    ) ?? chosen
  );
}

export class TokenVerifier {
  private readonly keySets: KeySets;
  private readonly cache: VerifiedTokenCache;
  private readonly clock: () => number;

  constructor(keySets: KeySets, cache: VerifiedTokenCache, clock: () => number = () => Math.floor(Date.now() / 1000)) {
    this.keySets = keySets;
    this.cache = cache;
    this.clock = clock;
  }

  /**
   * Verifies a bearer token for the workspace named in the URL. An unknown workspace, one with no
   * providers and an untrusted issuer fail alike, before any signature work.
   */
  async verify(tenant: Tenant | undefined, token: string): Promise<VerifiedIdentity> {
    const now = this.clock();
    const key = VerifiedTokenCache.key(token);
    const hit = this.cache.get(key);
    if (hit && tenant && hit.workspaceId === tenant.workspace.id) {
      const provider = tenant.providers.find((candidate) => candidate.id === hit.providerId);
      if (
        provider &&
        provider.version === hit.providerVersion &&
        this.keySets.generation(provider) === hit.keyGeneration
      ) {
        checkTimes(hit.payload, provider.clockToleranceSeconds, now);
        return { tenant, provider, payload: hit.payload };
      }
      this.cache.delete(key);
    }

    const payload = decodeClaims(token);
    if (!tenant) throw tokenProblem('token_untrusted_issuer', 'The token issuer is not trusted by this workspace');
    const provider = chooseProvider(tenant, payload);
    const keyGeneration = this.keySets.generation(provider);
    await this.check(provider, token, payload, now);
    this.cache.set(
      key,
      {
        workspaceId: tenant.workspace.id,
        providerId: provider.id,
        providerVersion: provider.version,
        keyGeneration,
        payload,
      },
      now,
    );
    return { tenant, provider, payload };
  }

  /**
   * A token of `provider`'s organization, checked against that configuration (one not stored yet,
   * or about to replace the stored one) exactly as requests will be, then its organization claim
   * against `orgId`: proof that whoever binds (issuer, orgId) holds a session of that org. Its
   * signature must also verify with the keys the issuer publishes itself: keys the configuration
   * names inline, or at another origin, are the binder's own and would prove nothing. Never
   * cached. Refusals are the same problems a request's token gets.
   */
  async proveOrganization(provider: IdentityProvider, token: string): Promise<void> {
    const payload = decodeClaims(token);
    if (payload.iss !== provider.issuer) {
      throw tokenProblem('token_untrusted_issuer', "The token's issuer is not this provider's");
    }
    const now = this.clock();
    await this.check(provider, token, payload, now);
    const published = await this.keySets.publishedBy(provider).catch((error: unknown) => {
      throw error instanceof ProblemError ? error : fromJose(error);
    });
    if (provider.jwks || published !== provider.jwksUri) {
      await this.check({ ...provider, jwks: null, jwksUri: published }, token, payload, now);
    }
    if (mapClaims(provider, payload).orgId !== provider.orgId) {
      throw new ProblemError('org_mismatch', "The token's organization is not this provider's orgId");
    }
  }

  /** Signature (jose), audience, times and the provider's own rules; `iss` already chose the provider. */
  private async check(provider: IdentityProvider, token: string, payload: JWTPayload, now: number): Promise<void> {
    try {
      // jose checks the header: `alg` against the provider's allow-list before any key is looked
      // up, `crit`, and the signature over exactly the segments decoded above. The claims are
      // checked below, so jose need not decode them again.
      const { protectedHeader } = await compactVerify(token, this.keySets.resolver(provider), {
        algorithms: provider.algorithms,
      });
      // RFC 7797 unencoded payloads are not JWTs (jose.jwtVerify refuses them the same way).
      if (protectedHeader.b64 === false) throw tokenProblem('token_malformed', 'The token uses an unencoded payload');
    } catch (error) {
      throw error instanceof ProblemError ? error : fromJose(error);
    }
    checkAudience(provider, payload);
    checkTimes(payload, provider.clockToleranceSeconds, now);
    checkProviderRules(provider, payload);
  }
}
