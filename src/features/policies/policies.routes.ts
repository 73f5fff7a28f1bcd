import type { Api } from '../../http/api.ts';
import { wholeList, wholeListQuery } from '../../http/cursor.ts';
import { forceQuery } from '../policy-tests/policy-tests.schema.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { PoliciesService } from './policies.service.ts';
import {
  policyBody,
  policyListResponse,
  policyParams,
  policyResponse,
  policyVersionListResponse,
} from './policies.schema.ts';

const tag = 'Policies';
const subject = 'Policy';

export function policyRoutes(api: Api, policies: PoliciesService): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/policies',
      summary: "List the workspace's policies",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: workspaceParams,
      query: wholeListQuery,
      responses: { 200: { description: 'Policies', schema: policyListResponse } },
    },
    async ({ query, caller }, _request, response) => {
      response.json(wholeList(await policies.list(caller), query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/policies',
      summary: 'Create a policy (validated); refused with 409 if stored policy tests would fail, unless ?force=true',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'create', subject, operation: 'admin' },
      params: workspaceParams,
      query: forceQuery,
      body: policyBody,
      responses: { 201: { description: 'Created', schema: policyResponse } },
    },
    async ({ params, query, body, caller }, _request, response) => {
      const policy = await policies.create(caller, body, query.force);
      response.status(201).location(`/v1/workspaces/${params.ws}/policies/${policy.id}`).json(policy);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/policies/:id',
      summary: 'Get a policy',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: policyParams,
      responses: { 200: { description: 'The policy', schema: policyResponse } },
    },
    async ({ params, caller }, _request, response) => {
      response.json(await policies.get(caller, params.id));
    },
  );

  api.route(
    {
      method: 'put',
      path: '/v1/workspaces/:ws/policies/:id',
      summary: 'Replace a policy; the old version is kept; 409 if stored policy tests would fail, unless ?force=true',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: policyParams,
      query: forceQuery,
      body: policyBody,
      responses: { 200: { description: 'The new version', schema: policyResponse } },
    },
    async ({ params, query, body, caller }, _request, response) => {
      response.json(await policies.replace(caller, params.id, body, query.force));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/policies/:id',
      summary: 'Delete a policy; its versions are kept; 409 if stored policy tests would fail, unless ?force=true',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'delete', subject, operation: 'admin' },
      params: policyParams,
      query: forceQuery,
      responses: { 204: { description: 'Deleted' } },
    },
    async ({ params, query, caller }, _request, response) => {
      await policies.remove(caller, params.id, query.force);
      response.status(204).end();
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/policies/:id/versions',
      summary: 'Every version of a policy, oldest first',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: policyParams,
      query: wholeListQuery,
      responses: { 200: { description: 'Versions', schema: policyVersionListResponse } },
    },
    async ({ params, query, caller }, _request, response) => {
      response.json(wholeList(await policies.versions(caller, params.id), query));
    },
  );
}
