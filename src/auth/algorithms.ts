/** Asymmetric JWS algorithms Cordon verifies. `none` and HMAC (HS*) are never accepted. */
export const verifiableAlgorithms = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
