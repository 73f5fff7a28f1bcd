import { SignJWT } from 'jose';
import { devIssuerAlgorithm, devIssuerUrl, devJwksUrl, type DevIssuerKey } from '../../auth/dev-issuer.ts';

/**
 * What a development token looks like, and the identity provider that trusts it: a generic OIDC
 * token whose `org_id` is the workspace's slug and whose `roles` are the roles asked for, so claim
 * mapping takes the ordinary `oidc` path. Kept side by side so the two always agree.
 */

export const maxTokenSeconds = 24 * 60 * 60;

/** The provider `npm run seed` binds: the issuer is Cordon's own URL, orgId the workspace's slug. */
export function devIdentityProvider(cordonUrl: string, workspace: string) {
  const issuer = devIssuerUrl(cordonUrl);
  return {
    name: 'dev',
    type: 'oidc' as const,
    issuer,
    jwksUri: devJwksUrl(cordonUrl),
    algorithms: [devIssuerAlgorithm],
    orgId: workspace,
    claims: { orgId: 'org_id', roles: 'roles' },
  };
}

export interface DevTokenRequest {
  /** Where Cordon is, as the seed was told (`CORDON_URL`, or `http://127.0.0.1:$PORT`): names the issuer. */
  cordonUrl: string;
  workspace: string;
  user: string;
  roles: string[];
  email?: string | undefined;
  ttlSeconds: number;
  /** Epoch seconds the token is issued at; now unless a test backdates it. */
  issuedAt?: number;
}

export function signDevToken(key: DevIssuerKey, request: DevTokenRequest): Promise<string> {
  const issuedAt = request.issuedAt ?? Math.floor(Date.now() / 1000);
  return new SignJWT({
    org_id: request.workspace,
    roles: request.roles,
    ...(request.email && { email: request.email }),
  })
    .setProtectedHeader({ alg: devIssuerAlgorithm, kid: key.publicJwk.kid, typ: 'JWT' })
    .setIssuer(devIssuerUrl(request.cordonUrl))
    .setSubject(request.user)
    .setIssuedAt(issuedAt)
    .setExpirationTime(issuedAt + request.ttlSeconds)
    .sign(key.privateKey);
}

const units = { s: 1, m: 60, h: 60 * 60 } as const;

/** `90s`, `15m`, `1h` (or plain seconds) → seconds, between 1 s and 24 h; undefined when it is neither. */
export function parseTtl(text: string): number | undefined {
  const match = /^(\d{1,6})([smh]?)$/.exec(text.trim());
  if (!match) return undefined;
  const seconds = Number(match[1]) * units[(match[2] || 's') as keyof typeof units];
  return seconds >= 1 && seconds <= maxTokenSeconds ? seconds : undefined;
}
