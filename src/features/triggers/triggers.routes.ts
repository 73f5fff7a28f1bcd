import type { Api } from '../../http/api.ts';
import { wholeList, wholeListQuery } from '../../http/cursor.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { TriggersService } from './triggers.service.ts';
import {
  createdTriggerResponse,
  deliveriesQuery,
  deliveryListResponse,
  deliveryParams,
  deliveryResponse,
  rotatedSecretResponse,
  triggerBody,
  type WebhookUrlRules,
  triggerListResponse,
  triggerParams,
  triggerResponse,
} from './triggers.schema.ts';

const tag = 'Triggers';
const subject = 'Trigger';

export function triggerRoutes(api: Api, triggers: TriggersService, urls: WebhookUrlRules): void {
  const body = triggerBody(urls);

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/triggers',
      summary: "List the workspace's triggers",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: workspaceParams,
      query: wholeListQuery,
      responses: { 200: { description: 'Triggers', schema: triggerListResponse } },
    },
    async ({ query, caller }, _request, response) => {
      response.json(wholeList(await triggers.list(caller), query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/triggers',
      summary: "Create a trigger; a webhook's signing secret is in this answer only",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'create', subject, operation: 'admin' },
      params: workspaceParams,
      body,
      responses: { 201: { description: 'Created', schema: createdTriggerResponse } },
    },
    async ({ params, body: input, caller }, _request, response) => {
      const trigger = await triggers.create(caller, input);
      response.status(201).location(`/v1/workspaces/${params.ws}/triggers/${trigger.id}`).json(trigger);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/triggers/:id',
      summary: 'Get a trigger',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: triggerParams,
      responses: { 200: { description: 'The trigger', schema: triggerResponse } },
    },
    async ({ params, caller }, _request, response) => {
      response.json(await triggers.get(caller, params.id));
    },
  );

  api.route(
    {
      method: 'put',
      path: '/v1/workspaces/:ws/triggers/:id',
      summary: 'Replace a trigger (enabling it again clears why it was disabled)',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: triggerParams,
      body,
      responses: { 200: { description: 'The new version', schema: createdTriggerResponse } },
    },
    async ({ params, body: input, caller }, _request, response) => {
      response.json(await triggers.replace(caller, params.id, input));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/triggers/:id',
      summary: 'Delete a trigger with its secrets and delivery log',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'delete', subject, operation: 'admin' },
      params: triggerParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async ({ params, caller }, _request, response) => {
      await triggers.remove(caller, params.id);
      response.status(204).end();
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/triggers/:id/rotate-secret',
      summary: 'A new signing secret, shown once; the previous ones keep signing for 24 h',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: triggerParams,
      responses: { 200: { description: 'The new secret', schema: rotatedSecretResponse } },
    },
    async ({ params, caller }, _request, response) => {
      response.json(await triggers.rotateSecret(caller, params.id));
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/triggers/:id/deliveries',
      summary: "A trigger's delivery log, newest first, with every attempt",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: triggerParams,
      query: deliveriesQuery,
      responses: { 200: { description: 'Deliveries', schema: deliveryListResponse } },
    },
    async ({ params, query, caller }, _request, response) => {
      response.json(await triggers.deliveries(caller, params.id, query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/triggers/deliveries/:id/redeliver',
      summary: 'Queue a delivered, failed or discarded delivery again, with a fresh retry schedule',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: deliveryParams,
      responses: { 202: { description: 'Queued', schema: deliveryResponse } },
    },
    async ({ params, caller }, _request, response) => {
      response.status(202).json(await triggers.redeliver(caller, params.id));
    },
  );
}
