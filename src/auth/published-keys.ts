import { ProblemError } from '../http/errors.ts';
import { isPlainObject } from '../json.ts';
import type { SafeFetch } from './safe-fetch.ts';

/** What is needed to tell where an issuer publishes its keys. */
export interface PublishedKeysQuestion {
  issuer: string;
  jwksUri?: string | null | undefined;
}

const originOf = (url: string): string | undefined => {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
};

const unpublished = (why: string) =>
  new ProblemError('binding_proof_invalid', `the issuer's published keys could not be found: ${why}`);

/**
 * The JWKS URI an issuer publishes itself: the configuration's `jwksUri` when it is exactly
 * `<issuer>/.well-known/jwks.json` and the issuer is a whole origin (Clerk's `https://clerk.…`,
 * Auth0's `https://….auth0.com/`); otherwise the `jwks_uri` of the issuer's OpenID discovery
 * document (`<issuer>/.well-known/openid-configuration`, whose `issuer` must be this one, as
 * OpenID Connect Discovery 1.0 §4.3 requires). Anything else on the issuer's origin may be
 * someone else's: an issuer with a path shares its origin with other tenants (Entra ID's
 * `login.microsoftonline.com/<tenant>`, a Keycloak's `/realms/<realm>`), and an issuer that is a
 * whole origin may serve its users' files (gitlab.com's raw repository files). Only keys the
 * issuer publishes prove who holds a session of its organizations: keys a configuration names
 * inline, or elsewhere, are whoever wrote the configuration's. Fetched through the SSRF-safe
 * fetch; a fetch that fails is `unavailable` (a 503, as for a key set), a document that says
 * nothing usable is a refused proof.
 */
export async function publishedKeysUri(
  provider: PublishedKeysQuestion,
  fetch: SafeFetch,
  timeoutMs: number,
  unavailable: (cause: unknown) => Error,
): Promise<string> {
  const origin = originOf(provider.issuer);
  if (!origin || origin === 'null') throw unpublished('the issuer is not a URL');
  const wellKnown = `${origin}/.well-known/jwks.json`;
  if (provider.issuer.replace(/\/$/, '') === origin && provider.jwksUri === wellKnown) return wellKnown;
  const discovery = `${provider.issuer.replace(/\/+$/, '')}/.well-known/openid-configuration`;
  let document: unknown;
  try {
    const response = await fetch(discovery, {
      method: 'GET',
      signal: AbortSignal.timeout(timeoutMs),
      headers: { accept: 'application/json', 'user-agent': 'cordon' },
    });
    if (response.status !== 200) throw unpublished(`${discovery} answered ${response.status}`);
    document = JSON.parse(await response.text());
  } catch (error) {
    if (error instanceof ProblemError) throw error;
    if (error instanceof SyntaxError) throw unpublished(`${discovery} is not JSON`);
    throw unavailable(error);
  }
  if (!isPlainObject(document) || document.issuer !== provider.issuer)
    throw unpublished(`${discovery} does not name this issuer`);
  const published = document.jwks_uri;
  const protocol = typeof published === 'string' ? originOf(published) && new URL(published).protocol : undefined;
  // An https issuer's keys come over https too.
  if (!protocol || !(protocol === 'https:' || (protocol === 'http:' && origin.startsWith('http:'))))
    throw unpublished(`${discovery} names no usable jwks_uri`);
  return published as string;
}
