import { z } from 'zod';
import type { Api } from '../../http/api.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';

const principalResponse = z.object({
  id: z.string(),
  workspaceId: z.uuid(),
  roles: z.array(z.string()),
  provider: z.string(),
  email: z.string().optional(),
  claims: z.record(z.string(), z.unknown()),
});

/** Lets app developers see how Cordon mapped their token: debugging claim mapping. */
export function whoamiRoutes(api: Api): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/whoami',
      summary: 'The principal Cordon resolved from your token',
      tag: 'Identity providers',
      security: 'bearer',
      params: workspaceParams,
      responses: { 200: { description: 'The principal', schema: principalResponse } },
    },
    (_input, request, response) => {
      response.json(request.principal);
    },
  );
}
