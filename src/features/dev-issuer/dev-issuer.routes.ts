import { z } from 'zod';
import { devJwksPath, type DevIssuerKey } from '../../auth/dev-issuer.ts';
import type { Api } from '../../http/api.ts';

const jwksResponse = z.object({ keys: z.array(z.record(z.string(), z.unknown())) });

/**
 * Outside production only (createApp mounts it when there is a development issuer; production
 * answers 404): the development issuer's public key, for anyone who wants to verify its tokens.
 * Cordon itself never fetches it: its own key sets resolve the key in-process.
 */
export function devIssuerRoutes(api: Api, key: DevIssuerKey): void {
  const jwks = { keys: [key.publicJwk] };
  api.route(
    {
      method: 'get',
      path: devJwksPath,
      summary: "The development issuer's key set (not in production)",
      tag: 'Development',
      security: 'none',
      responses: { 200: { description: 'A JSON Web Key Set', schema: jwksResponse } },
    },
    (_input, _request, response) => {
      response.json(jwks);
    },
  );
}
