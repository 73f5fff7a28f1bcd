import { createServer, type Server } from 'node:http';
import { exportJWK, generateKeyPair, SignJWT, type JWK, type JWTPayload, type CryptoKey } from 'jose';

export type SigningAlgorithm = 'RS256' | 'ES256' | 'EdDSA';

interface IssuerKey {
  kid: string;
  alg: SigningAlgorithm;
  privateKey: CryptoKey;
  publicJwk: JWK;
}

export interface SignOptions {
  kid?: string;
  /** Extra protected-header members, e.g. `jku` or `jwk`, for attack tests. */
  header?: Record<string, unknown>;
  expiresInSeconds?: number;
  /** Sign with this key instead of one the issuer publishes. */
  key?: IssuerKey;
}

let keyCounter = 0;

export async function createKey(alg: SigningAlgorithm = 'RS256', kid = `key-${++keyCounter}`): Promise<IssuerKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, publicJwk };
}

/**
 * A real token issuer over HTTP on 127.0.0.1: keys made by jose, a JWKS endpoint, and a signer.
 * It counts JWKS requests so tests can see caching, cooldown and that `jku` is never followed.
 */
export class TestIssuer {
  readonly url: string;
  keys: IssuerKey[];
  jwksRequests = 0;
  /** When set, the JWKS endpoint answers this instead of the key set (outage tests). */
  jwksFailure: { status: number; body: string } | undefined;
  /** Whether it serves an OpenID discovery document. */
  discovery = true;
  private readonly server: Server;

  private constructor(server: Server, url: string, keys: IssuerKey[]) {
    this.server = server;
    this.url = url;
    this.keys = keys;
  }

  static async start(alg: SigningAlgorithm = 'RS256'): Promise<TestIssuer> {
    const keys = [await createKey(alg)];
    const started: { issuer?: TestIssuer } = {};
    const server = createServer((request, response) => {
      const issuer = started.issuer;
      if (request.url === '/.well-known/jwks.json' && issuer) {
        issuer.jwksRequests += 1;
        response.setHeader('content-type', 'application/json');
        if (issuer.jwksFailure) {
          response.statusCode = issuer.jwksFailure.status;
          response.end(issuer.jwksFailure.body);
          return;
        }
        response.end(JSON.stringify({ keys: issuer.keys.map((key) => key.publicJwk) }));
        return;
      }
      // OpenID Connect Discovery, as Clerk and Auth0 publish it (unless a test takes it away).
      if (request.url === '/.well-known/openid-configuration' && issuer?.discovery) {
        response.setHeader('content-type', 'application/json');
        response.end(JSON.stringify({ issuer: issuer.url, jwks_uri: issuer.jwksUri }));
        return;
      }
      response.statusCode = 404;
      response.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const address = server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    started.issuer = new TestIssuer(server, `http://127.0.0.1:${port}`, keys);
    return started.issuer;
  }

  get jwksUri(): string {
    return `${this.url}/.well-known/jwks.json`;
  }

  get jwks(): { keys: JWK[] } {
    return { keys: this.keys.map((key) => key.publicJwk) };
  }

  async sign(claims: JWTPayload, options: SignOptions = {}): Promise<string> {
    const key =
      options.key ?? this.keys.find((candidate) => !options.kid || candidate.kid === options.kid) ?? this.keys[0]!;
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ iss: this.url, iat: now, exp: now + (options.expiresInSeconds ?? 60), ...claims })
      .setProtectedHeader({ alg: key.alg, kid: options.kid ?? key.kid, typ: 'JWT', ...options.header })
      .sign(key.privateKey);
  }

  close(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** Builds an unsigned or hand-assembled token, for the `alg: none` and HS256 confusion attacks. */
export function assembleToken(header: Record<string, unknown>, payload: JWTPayload, signature = ''): string {
  const encode = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
  return `${encode(header)}.${encode(payload)}.${signature}`;
}
