import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

export interface SigningKey {
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** First 16 bytes of SHA-256 over the public key's SPKI DER, base64url: names the key in checkpoints. */
  keyId: string;
}

/** Derived from the key itself, so whoever holds a public key can name it without asking anyone. */
export const publicKeyId = (publicKey: KeyObject): string =>
  createHash('sha256')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest()
    .subarray(0, 16)
    .toString('base64url');

export function signingKeyFromPem(pem: string): SigningKey {
  const privateKey = createPrivateKey(pem);
  if (privateKey.asymmetricKeyType !== 'ed25519')
    throw new Error('DECISION_SIGNING_KEY must be an Ed25519 private key (PKCS#8 PEM)');
  const publicKey = createPublicKey(privateKey);
  return { privateKey, publicKey, keyId: publicKeyId(publicKey) };
}

/** How a public key is published: PEM for openssl, a JWK for JOSE libraries. */
export function publishedKey(publicKey: KeyObject) {
  const keyId = publicKeyId(publicKey);
  return {
    keyId,
    algorithm: 'Ed25519' as const,
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
    jwk: { ...publicKey.export({ format: 'jwk' }), kid: keyId, alg: 'EdDSA', use: 'sig' },
  };
}

export function generateSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync('ed25519');
  return signingKeyFromPem(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString());
}

/** Development: generated once into `<dataDir>/decision-signing-key.pem` (0600) and reused. */
export async function developmentSigningKey(
  dataDir: string,
): Promise<{ key: SigningKey; file: string; created: boolean }> {
  const file = path.resolve(dataDir, 'decision-signing-key.pem');
  if (existsSync(file)) return { key: signingKeyFromPem(await readFile(file, 'utf8')), file, created: false };
  await mkdir(path.dirname(file), { recursive: true });
  const { privateKey } = generateKeyPairSync('ed25519');
  await writeFile(file, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600, flag: 'wx' });
  return { key: signingKeyFromPem(await readFile(file, 'utf8')), file, created: true };
}
