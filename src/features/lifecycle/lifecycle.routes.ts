import type { Api } from '../../http/api.ts';
import { writeWithBackpressure } from '../../http/backpressure.ts';
import { ProblemError } from '../../http/errors.ts';
import type { AccessControl } from '../../policy/access.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import { importQuery, importResponse, templateListResponse } from './lifecycle.schema.ts';
import type { LifecycleService } from './lifecycle.service.ts';
import type { Templates } from './templates.ts';

const tag = 'Tenant lifecycle';

export function lifecycleRoutes(
  api: Api,
  lifecycle: LifecycleService,
  templates: Templates,
  access: AccessControl,
): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/export',
      summary:
        'Stream the workspace out as NDJSON: structures, policies, identity providers, members, functions, triggers, records',
      tag,
      security: 'admin',
      params: workspaceParams,
      responses: { 200: { description: 'One { kind, data } a line', contentType: 'application/x-ndjson' } },
    },
    async ({ params }, request, response) => {
      const caller = access.platformAdminIn(request, await lifecycle.workspaceId(params.ws));
      response.status(200).type('application/x-ndjson');
      response.setHeader('Content-Disposition', `attachment; filename="${params.ws}.ndjson"`);
      await lifecycle.export(caller, (chunk) => writeWithBackpressure(response, chunk));
      response.end();
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/import',
      summary: 'Restore an export (NDJSON body) into an empty workspace, all or nothing',
      tag,
      security: 'admin',
      params: workspaceParams,
      query: importQuery,
      responses: { 200: { description: 'What was imported', schema: importResponse } },
    },
    async ({ params, query }, request, response) => {
      if (!request.is('application/x-ndjson')) {
        throw new ProblemError('unsupported_media_type', 'Send the export as application/x-ndjson');
      }
      const caller = access.platformAdminIn(request, await lifecycle.workspaceId(params.ws));
      response.json(await lifecycle.import(caller, request, query.identityProviders));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/templates',
      summary: 'The workspace templates POST /v1/workspaces can start from',
      tag,
      security: 'none',
      responses: { 200: { description: 'The templates', schema: templateListResponse } },
    },
    (_input, _request, response) => {
      response.json({ data: templates.list() });
    },
  );
}
