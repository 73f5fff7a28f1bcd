import type { Api } from '../../http/api.ts';
import { pageQuery, wholeList, wholeListQuery } from '../../http/cursor.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { FunctionsService } from './functions.service.ts';
import {
  functionBody,
  functionListResponse,
  functionParams,
  functionResponse,
  invokeBody,
  invokeResponse,
  replaceFunctionBody,
  runListResponse,
} from './functions.schema.ts';

const tag = 'Functions';
const subject = 'Function';

export function functionRoutes(api: Api, functions: FunctionsService): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/functions',
      summary: "List the workspace's functions",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: workspaceParams,
      query: wholeListQuery,
      responses: { 200: { description: 'Functions', schema: functionListResponse } },
    },
    async ({ query, caller }, _request, response) => {
      response.json(wholeList(await functions.list(caller), query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/functions',
      summary:
        'Create a function; its code is loaded in the sandbox and must define async function run(event, context)',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'create', subject, operation: 'admin' },
      params: workspaceParams,
      body: functionBody,
      responses: { 201: { description: 'Created', schema: functionResponse } },
    },
    async ({ params, body, caller }, _request, response) => {
      const created = await functions.create(caller, body);
      response.status(201).location(`/v1/workspaces/${params.ws}/functions/${created.name}`).json(created);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/functions/:name',
      summary: 'Get a function',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: functionParams,
      responses: { 200: { description: 'The function', schema: functionResponse } },
    },
    async ({ params, caller }, _request, response) => {
      response.json(await functions.get(caller, params.name));
    },
  );

  api.route(
    {
      method: 'put',
      path: '/v1/workspaces/:ws/functions/:name',
      summary: "Replace a function's code, roles and limits; the version goes up",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: functionParams,
      body: replaceFunctionBody,
      responses: { 200: { description: 'The new version', schema: functionResponse } },
    },
    async ({ params, body, caller }, _request, response) => {
      response.json(await functions.replace(caller, params.name, body));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/functions/:name',
      summary: 'Delete a function; its run log stays until retention',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'delete', subject, operation: 'admin' },
      params: functionParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async ({ params, caller }, _request, response) => {
      await functions.remove(caller, params.name);
      response.status(204).end();
    },
  );

  // Not the platform admin: it reads no tenant records, and a run's result is whatever the
  // function read.
  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/functions/:name/invoke',
      summary:
        'Run a function on the given event (its writes fire no trigger); a failed run answers 200 with its error',
      tag,
      security: 'bearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: functionParams,
      body: invokeBody,
      responses: { 200: { description: 'The run', schema: invokeResponse } },
    },
    async ({ params, body, caller }, request, response) => {
      response.json(await functions.invoke(caller, params.name, body, String(request.id)));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/functions/:name/runs',
      summary: "A function's runs, newest first",
      tag,
      // Not the platform admin: a run's result and logs are whatever the function read, and the
      // platform admin reads no tenant records (nor may it invoke).
      security: 'bearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: functionParams,
      query: pageQuery,
      responses: { 200: { description: 'A page of runs', schema: runListResponse } },
    },
    async ({ params, query, caller }, _request, response) => {
      response.json(await functions.runsOf(caller, params.name, query));
    },
  );
}
