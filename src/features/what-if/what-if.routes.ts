import type { Api } from '../../http/api.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { WhatIfService } from './what-if.service.ts';
import { whatIfBody, whatIfResponse } from './what-if.schema.ts';

export function whatIfRoutes(api: Api, whatIf: WhatIfService): void {
  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/policies/what-if',
      summary: 'Replay the logged decisions of a window against draft policies: what would flip',
      tag: 'Policies',
      security: 'adminOrBearer',
      authorize: { action: 'read', subject: 'Policy', operation: 'admin' },
      params: workspaceParams,
      body: whatIfBody,
      responses: {
        200: { description: 'Flips, counts, samples and what could not be replayed', schema: whatIfResponse },
      },
    },
    async ({ body, caller }, _request, response) => {
      response.json(await whatIf.run(caller, body));
    },
  );
}
