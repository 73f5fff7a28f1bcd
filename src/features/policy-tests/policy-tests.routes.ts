import type { Api } from '../../http/api.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import { runBody, runResponse, storeBody, storedResponse } from './policy-tests.schema.ts';
import type { PolicyTestsService } from './policy-tests.service.ts';

const tag = 'Policies';
const subject = 'Policy';

export function policyTestRoutes(api: Api, tests: PolicyTestsService): void {
  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/policies/test',
      summary: 'Run a policy test suite against the stored policies or a draft set; results and coverage per rule',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: workspaceParams,
      body: runBody,
      responses: { 200: { description: 'Each test’s result, and coverage per rule', schema: runResponse } },
    },
    async ({ body, caller }, _request, response) => {
      response.json(await tests.run(caller, body.suite, body.policies));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/policy-tests',
      summary: "The workspace's stored policy test suite",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: workspaceParams,
      responses: { 200: { description: 'The stored suite', schema: storedResponse } },
    },
    async ({ caller }, _request, response) => {
      response.json(await tests.get(caller));
    },
  );

  api.route(
    {
      method: 'put',
      path: '/v1/workspaces/:ws/policy-tests',
      summary: 'Store the policy test suite every later policy change is checked against',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: workspaceParams,
      body: storeBody,
      responses: { 200: { description: 'The stored suite', schema: storedResponse } },
    },
    async ({ body, caller }, _request, response) => {
      response.json(await tests.put(caller, body.suite));
    },
  );
}
