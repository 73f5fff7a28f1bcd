import { generateKeyPairSync } from 'node:crypto';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { developmentIssuerKey, devIssuerUrl, devJwksUrl, isDevIssuerUrl, readDevIssuerKey } from './dev-issuer.ts';

describe('isDevIssuerUrl', () => {
  it.each([
    'http://127.0.0.1:3000/v1/dev',
    'http://127.0.0.1:3000/v1/dev/jwks.json',
    'http://localhost/v1/dev',
    'https://localhost:8443/v1/dev/jwks.json',
    'http://[::1]:3000/v1/dev',
    'http://127.0.0.2:3000/v1/dev',
  ])('names %s a development issuer', (url) => {
    expect(isDevIssuerUrl(url)).toBe(true);
  });

  it.each([
    'https://issuer.example.com/v1/dev',
    'http://10.0.0.1:3000/v1/dev',
    'http://127.0.0.1:3000/v1/developers',
    'http://127.0.0.1:3000/.well-known/jwks.json',
    'http://127.0.0.1:3000/v2/dev',
    'ftp://127.0.0.1/v1/dev',
    'not a url',
  ])('does not name %s one', (url) => {
    expect(isDevIssuerUrl(url)).toBe(false);
  });

  it('derives the issuer and its key set from where Cordon is', () => {
    expect(devIssuerUrl('http://127.0.0.1:3000/')).toBe('http://127.0.0.1:3000/v1/dev');
    expect(devJwksUrl('http://127.0.0.1:3000')).toBe('http://127.0.0.1:3000/v1/dev/jwks.json');
  });
});

describe('developmentIssuerKey', () => {
  let root: string;
  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'cordon-dev-key-'));
  });
  afterEach(() => rm(root, { recursive: true, force: true }));

  it('generates the key once, private to its owner, and reuses it', async () => {
    const dataDir = path.join(root, 'data');
    expect(await readDevIssuerKey(dataDir)).toBeUndefined();
    const first = await developmentIssuerKey(dataDir);
    expect(first.created).toBe(true);
    expect((await stat(dataDir)).mode & 0o777).toBe(0o700);
    expect((await stat(first.file)).mode & 0o777).toBe(0o600);
    expect(first.key.publicJwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' });
    expect(first.key.publicJwk).not.toHaveProperty('d');

    const again = await developmentIssuerKey(dataDir);
    expect(again.created).toBe(false);
    expect(again.key.publicJwk).toEqual(first.key.publicJwk);
    expect((await readDevIssuerKey(dataDir))?.key.publicJwk).toEqual(first.key.publicJwk);
  });

  it('refuses a key file that is not a P-256 key', async () => {
    const { privateKey } = generateKeyPairSync('ed25519');
    await writeFile(path.join(root, 'dev-issuer-key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    await expect(developmentIssuerKey(root)).rejects.toThrow('is not a P-256 (ES256) private key');
  });
});
