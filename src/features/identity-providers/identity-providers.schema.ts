import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { z } from 'zod';
import { verifiableAlgorithms } from '../../auth/algorithms.ts';
import { devIssuerPath, isDevIssuerUrl } from '../../auth/dev-issuer.ts';
import { refusingProtoKey } from '../../json.ts';

const loopbackHosts = new Set(['127.0.0.1', 'localhost', '[::1]']);

/**
 * https everywhere; plain http only for loopback, and only outside production. In production a
 * development issuer (Cordon's own, for `npm run token`) is refused by name.
 */
const endpointUrl = (production: boolean) =>
  z
    .url()
    .refine(
      (value) => {
        // zod runs refinements even after z.url() failed: never let a non-URL reach `new URL`.
        if (!URL.canParse(value)) return false;
        const url = new URL(value);
        if (url.protocol === 'https:') return true;
        return !production && url.protocol === 'http:' && loopbackHosts.has(url.hostname);
      },
      production ? 'must be an https URL' : 'must be an https URL (http only for loopback outside production)',
    )
    .superRefine((value, context) => {
      if (production && isDevIssuerUrl(value))
        context.addIssue({
          code: 'custom',
          message: `names a development issuer (${devIssuerPath} on a loopback host), which production never trusts`,
          params: { problem: 'dev_issuer_in_production' },
        });
    });

/** A dotted path (`o.rol`) or a whole claim name containing dots or slashes (`https://x.com/roles`). */
const claimPath = z.string().min(1).max(200);

/** The smallest RSA key jose verifies with: a smaller one would refuse every token. */
const rsaMinimumBits = 2048;

const publicJwk = z
  .looseObject({ kty: z.enum(['RSA', 'EC', 'OKP']), kid: z.string().max(200).optional() })
  .refine((key) => !('d' in key) && !('p' in key) && !('k' in key), 'must be a public key (no private key material)')
  // A key that cannot be imported would be stored and then fail every token as a 503.
  .superRefine((key, context) => {
    let bits: number | undefined;
    try {
      bits = createPublicKey({ key: key as JsonWebKey, format: 'jwk' }).asymmetricKeyDetails?.modulusLength;
    } catch {
      context.addIssue({ code: 'custom', message: 'is not a usable public key', input: key });
      return;
    }
    // jose and WebCrypto honour these: a key not meant for verifying would refuse every token.
    if (key.use !== undefined && key.use !== 'sig')
      context.addIssue({ code: 'custom', path: ['use'], message: 'must be "sig" when given', input: key });
    const operations = key.key_ops;
    if (
      operations !== undefined &&
      !(Array.isArray(operations) && operations.includes('verify') && operations.every((op) => op === 'verify'))
    )
      context.addIssue({ code: 'custom', path: ['key_ops'], message: 'must be ["verify"] when given', input: key });
    if (key.kty === 'RSA' && (bits ?? 0) < rsaMinimumBits)
      context.addIssue({ code: 'custom', message: `an RSA key must have ${rsaMinimumBits} bits or more`, input: key });
  });

const algorithm = z.string().superRefine((value, context) => {
  if (value === 'none' || /^HS/i.test(value)) {
    context.addIssue({ code: 'custom', message: `${value} is refused: only asymmetric signatures are accepted` });
  } else if (!(verifiableAlgorithms as readonly string[]).includes(value)) {
    context.addIssue({ code: 'custom', message: `must be one of ${verifiableAlgorithms.join(', ')}` });
  }
});

/**
 * The rules `identityProviderBody` checks across fields, as JSON Schema for the OpenAPI document:
 * zod cannot describe a refinement, so a client generated from the document would not know them.
 * Kept beside the refinement that enforces them; test/openapi.test.ts checks that the document and
 * the validator agree on every combination of the fields involved.
 */
const crossFieldRules = [
  {
    description: 'Exactly one of jwksUri and jwks.',
    oneOf: [{ required: ['jwksUri'] }, { required: ['jwks'] }],
  },
  {
    description: 'Auth0 tokens are checked against an audience.',
    if: { properties: { type: { const: 'auth0' } } },
    then: { required: ['audiences'], properties: { audiences: { minItems: 1 } } },
  },
  {
    description: 'Auth0 and OIDC providers name the roles claim, unless roleSource is "members".',
    if: { properties: { type: { enum: ['auth0', 'oidc'] }, roleSource: { not: { const: 'members' } } } },
    then: { required: ['claims'], properties: { claims: { required: ['roles'] } } },
  },
  {
    description: 'OIDC providers name the organization claim.',
    if: { properties: { type: { const: 'oidc' } } },
    then: { required: ['claims'], properties: { claims: { required: ['orgId'] } } },
  },
  {
    description: 'Only Clerk has pending sessions.',
    if: { properties: { allowPendingSessions: { const: true } }, required: ['allowPendingSessions'] },
    then: { properties: { type: { const: 'clerk' } } },
  },
];

export function identityProviderBody(production: boolean) {
  return z
    .strictObject({
      name: z.string().trim().min(1).max(100),
      type: z.enum(['clerk', 'auth0', 'oidc']),
      issuer: endpointUrl(production),
      jwksUri: endpointUrl(production).optional(),
      jwks: z.strictObject({ keys: z.array(publicJwk).min(1).max(50) }).optional(),
      audiences: z.array(z.string().min(1).max(500)).max(20).default([]),
      authorizedParties: z.array(z.string().min(1).max(500)).max(50).default([]),
      algorithms: z.array(algorithm).min(1).default(['RS256', 'ES256', 'EdDSA']),
      clockToleranceSeconds: z.int().min(0).max(300).default(5),
      orgId: z.string().min(1).max(200),
      claims: z
        .strictObject({
          subject: claimPath.optional(),
          orgId: claimPath.optional(),
          roles: claimPath.optional(),
          email: claimPath.optional(),
        })
        .default({}),
      roleMap: refusingProtoKey(
        z.record(
          z.string().min(1).max(200),
          z.union([z.string().min(1).max(100), z.array(z.string().min(1).max(100))]),
        ),
        { message: 'this role name is reserved' },
      ).default({}),
      roleSource: z.enum(['claims', 'members', 'both']).default('claims'),
      allowPendingSessions: z.boolean().default(false),
      proofToken: z
        .string()
        .min(1)
        .max(16_384)
        .optional()
        .meta({
          description:
            'A current token of this organization, signed by this issuer (e.g. your own session token). Required ' +
            'unless the platform admin binds: it proves the binding is yours. Checked, never stored.',
        }),
    })
    .superRefine((provider, context) => {
      const issue = (path: string[], message: string) => context.addIssue({ code: 'custom', path, message });
      if (!provider.jwksUri === !provider.jwks) issue(['jwksUri'], 'give exactly one of jwksUri and jwks');
      const rolesFromClaims = provider.roleSource !== 'members';
      if (provider.type === 'auth0') {
        if (!provider.audiences.length) issue(['audiences'], 'Auth0 tokens must be checked against an audience');
        if (rolesFromClaims && !provider.claims.roles)
          issue(['claims', 'roles'], 'name the namespaced roles claim, e.g. https://example.com/roles');
      }
      if (provider.type === 'oidc') {
        if (!provider.claims.orgId) issue(['claims', 'orgId'], 'name the claim that carries the organization');
        if (rolesFromClaims && !provider.claims.roles)
          issue(['claims', 'roles'], 'name the claim that carries the roles');
      }
      if (provider.allowPendingSessions && provider.type !== 'clerk')
        issue(['allowPendingSessions'], 'only Clerk has pending sessions');
    })
    .meta({ allOf: crossFieldRules });
}

export type IdentityProviderInput = z.output<ReturnType<typeof identityProviderBody>>;

export const identityProviderParams = z.object({
  ws: z.string().min(1).max(100),
  id: z.string().min(1).max(100),
});

export const identityProviderResponse = z.object({
  id: z.uuid(),
  workspaceId: z.uuid(),
  name: z.string(),
  type: z.enum(['clerk', 'auth0', 'oidc']),
  issuer: z.string(),
  jwksUri: z.string().nullable(),
  jwks: z.object({ keys: z.array(z.record(z.string(), z.unknown())) }).nullable(),
  audiences: z.array(z.string()),
  authorizedParties: z.array(z.string()),
  algorithms: z.array(z.string()),
  clockToleranceSeconds: z.number().int(),
  orgId: z.string(),
  claims: z.object({
    subject: z.string().optional(),
    orgId: z.string().optional(),
    roles: z.string().optional(),
    email: z.string().optional(),
  }),
  roleMap: z.record(z.string(), z.union([z.string(), z.array(z.string())])),
  roleSource: z.enum(['claims', 'members', 'both']),
  allowPendingSessions: z.boolean(),
  version: z.number().int(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});

export type IdentityProviderResponse = z.output<typeof identityProviderResponse>;

export const identityProviderListResponse = z.object({
  data: z.array(identityProviderResponse),
  nextCursor: z.null(),
  count: z.number().int().optional(),
});
