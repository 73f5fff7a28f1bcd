import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import ipaddr from 'ipaddr.js';
import { calculateJwkThumbprint, type JWK } from 'jose';

/**
 * The development issuer: outside production, Cordon keeps an ES256 key in `DATA_DIR` and serves
 * its public half at `/v1/dev/jwks.json`, so `npm run token` can sign tokens a workspace trusts
 * without Clerk or Auth0. Production has no such issuer: no key, no route, and an identity
 * provider naming one is refused.
 */
export const devIssuerPath = '/v1/dev';
export const devJwksPath = `${devIssuerPath}/jwks.json`;
export const devIssuerAlgorithm = 'ES256';
export const devIssuerKeyFile = 'dev-issuer-key.pem';

/** The issuer a development token carries, for Cordon at `cordonUrl` (e.g. `http://127.0.0.1:3000`). */
export const devIssuerUrl = (cordonUrl: string): string => cordonUrl.replace(/\/+$/, '') + devIssuerPath;
/** Where that issuer's key set is served. */
export const devJwksUrl = (cordonUrl: string): string => cordonUrl.replace(/\/+$/, '') + devJwksPath;

const isLoopback = (hostname: string): boolean => {
  if (hostname === 'localhost') return true;
  const address = hostname.replace(/^\[(.*)\]$/, '$1');
  return isIP(address) !== 0 && ipaddr.process(address).range() === 'loopback';
};

/**
 * Whether a URL names a development issuer or its key set: a loopback host (any port, http or
 * https) and a path under `/v1/dev`. Such a key set is never fetched: it is this instance's own.
 */
export function isDevIssuerUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  const underDev = url.pathname === devIssuerPath || url.pathname.startsWith(`${devIssuerPath}/`);
  return (url.protocol === 'http:' || url.protocol === 'https:') && underDev && isLoopback(url.hostname);
}

export interface DevIssuerKey {
  privateKey: KeyObject;
  /** The public key as the JWKS route serves it, named by its RFC 7638 thumbprint. */
  publicJwk: JWK & { kid: string };
}

async function fromPem(pem: string, file: string): Promise<DevIssuerKey> {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ec' || privateKey.asymmetricKeyDetails?.namedCurve !== 'prime256v1')
    throw new Error(`${file} is not a P-256 (ES256) private key`);
  const jwk = createPublicKey(privateKey).export({ format: 'jwk' }) as JWK;
  const kid = await calculateJwkThumbprint(jwk);
  return { privateKey, publicJwk: { ...jwk, kid, alg: devIssuerAlgorithm, use: 'sig' } };
}

const keyPath = (dataDir: string) => path.resolve(dataDir, devIssuerKeyFile);

/** The key in `<dataDir>/dev-issuer-key.pem`, for the token script: never creates one. */
export async function readDevIssuerKey(dataDir: string): Promise<{ key: DevIssuerKey; file: string } | undefined> {
  const file = keyPath(dataDir);
  const pem = await readFile(file, 'utf8').catch((error: unknown) => {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw error;
  });
  return pem === undefined ? undefined : { key: await fromPem(pem, file), file };
}

/**
 * Development only (main.ts never calls it in production): the key generated once into
 * `<dataDir>/dev-issuer-key.pem` (directory 0700 when created, file 0600), reused on later starts.
 */
export async function developmentIssuerKey(
  dataDir: string,
): Promise<{ key: DevIssuerKey; file: string; created: boolean }> {
  const existing = await readDevIssuerKey(dataDir);
  if (existing) return { ...existing, created: false };
  const file = keyPath(dataDir);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  try {
    await writeFile(file, pem, { mode: 0o600, flag: 'wx' });
  } catch (error) {
    // Another process (a second instance on the same DATA_DIR) wrote it first: use theirs.
    if ((error as { code?: string }).code !== 'EEXIST') throw error;
    return { ...(await readDevIssuerKey(dataDir))!, created: false };
  }
  return { key: await fromPem(pem, file), file, created: true };
}
