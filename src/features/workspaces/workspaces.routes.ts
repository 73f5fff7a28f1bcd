import type { Api } from '../../http/api.ts';
import type { AccessControl } from '../../policy/access.ts';
import type { WorkspacesService } from './workspaces.service.ts';
import {
  createWorkspaceBody,
  listWorkspacesQuery,
  updateWorkspaceBody,
  workspaceListResponse,
  workspaceParams,
  workspaceResponse,
} from './workspaces.schema.ts';

const tag = 'Workspaces';

export function workspaceRoutes(api: Api, workspaces: WorkspacesService, access: AccessControl): void {
  api.route(
    {
      method: 'post',
      path: '/v1/workspaces',
      summary: 'Create a workspace with the default policies',
      tag,
      security: 'admin',
      body: createWorkspaceBody,
      responses: { 201: { description: 'Created', schema: workspaceResponse } },
    },
    async ({ body }, request, response) => {
      const workspace = await workspaces.create(body, (id) => access.platformAdminIn(request, id));
      response.status(201).location(`/v1/workspaces/${workspace.id}`).json(workspace);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces',
      summary: 'List workspaces with member and record counts',
      tag,
      security: 'admin',
      query: listWorkspacesQuery,
      responses: { 200: { description: 'A page of workspaces', schema: workspaceListResponse } },
    },
    async ({ query }, _request, response) => {
      response.json(await workspaces.list(query));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws',
      summary: 'Get a workspace by slug or id',
      tag,
      security: 'admin',
      params: workspaceParams,
      responses: { 200: { description: 'The workspace', schema: workspaceResponse } },
    },
    async ({ params }, _request, response) => {
      response.json(await workspaces.get(params.ws));
    },
  );

  api.route(
    {
      method: 'patch',
      path: '/v1/workspaces/:ws',
      summary: 'Rename, re-plan, suspend or re-slug a workspace',
      tag,
      security: 'admin',
      params: workspaceParams,
      body: updateWorkspaceBody,
      responses: { 200: { description: 'The updated workspace', schema: workspaceResponse } },
    },
    async ({ params, body }, request, response) => {
      response.json(await workspaces.update(params.ws, body, (id) => access.platformAdminIn(request, id)));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws',
      summary: 'Delete a workspace and every row it owns',
      tag,
      security: 'admin',
      params: workspaceParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async ({ params }, _request, response) => {
      await workspaces.remove(params.ws);
      response.status(204).end();
    },
  );
}
