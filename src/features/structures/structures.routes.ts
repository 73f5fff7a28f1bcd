import type { Api } from '../../http/api.ts';
import { wholeList, wholeListQuery } from '../../http/cursor.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { StructuresService } from './structures.service.ts';
import {
  forceQuery,
  replaceStructureBody,
  structureBody,
  structureListResponse,
  structureParams,
  structureResponse,
} from './structures.schema.ts';

const tag = 'Structures';
const subject = 'Structure';

export function structureRoutes(api: Api, structures: StructuresService): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/structures',
      summary: "List the workspace's structures (record types)",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: workspaceParams,
      query: wholeListQuery,
      responses: { 200: { description: 'Structures', schema: structureListResponse } },
    },
    async ({ query, caller }, _request, response) => {
      response.json(wholeList(await structures.list(caller), query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/structures',
      summary: 'Create a structure',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'create', subject, operation: 'admin' },
      params: workspaceParams,
      body: structureBody,
      responses: { 201: { description: 'Created', schema: structureResponse } },
    },
    async ({ params, body, caller }, request, response) => {
      const structure = await structures.create(caller, body);
      response.status(201).location(`/v1/workspaces/${params.ws}/structures/${structure.name}`).json(structure);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/structures/:name',
      summary: 'Get a structure',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: structureParams,
      responses: { 200: { description: 'The structure', schema: structureResponse } },
    },
    async ({ params, caller }, request, response) => {
      response.json(await structures.get(caller, params.name));
    },
  );

  api.route(
    {
      method: 'put',
      path: '/v1/workspaces/:ws/structures/:name',
      summary: 'Replace the fields; refused with 409 if stored records would break, unless ?force=true',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: structureParams,
      query: forceQuery,
      body: replaceStructureBody,
      responses: { 200: { description: 'The new version', schema: structureResponse } },
    },
    async ({ params, query, body, caller }, request, response) => {
      response.json(await structures.replace(caller, params.name, body, query.force));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/structures/:name',
      summary: 'Delete a structure; with records only with ?force=true',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'delete', subject, operation: 'admin' },
      params: structureParams,
      query: forceQuery,
      responses: { 204: { description: 'Deleted' } },
    },
    async ({ params, query, caller }, _request, response) => {
      await structures.remove(caller, params.name, query.force);
      response.status(204).end();
    },
  );
}
