import type { Api } from '../../http/api.ts';
import type { Plans } from '../../policy/plans.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { BillingService } from './billing.service.ts';
import { billingResponse, planListResponse } from './billing.schema.ts';

const tag = 'Billing';

export function billingRoutes(api: Api, billing: BillingService, plans: Plans): void {
  api.route(
    {
      method: 'get',
      path: '/v1/plans',
      summary: 'The plans, their prices and limits (null: unlimited)',
      tag,
      security: 'none',
      responses: { 200: { description: 'Every plan', schema: planListResponse } },
    },
    (_input, _request, response) => {
      response.json({ data: plans.all });
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/billing',
      summary: "The workspace's plan, subscription status, limits and usage",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject: 'Billing', operation: 'get' },
      params: workspaceParams,
      responses: { 200: { description: 'Plan, status, limits and usage', schema: billingResponse } },
    },
    async ({ caller }, _request, response) => {
      response.json(await billing.get(caller));
    },
  );
}
