import type { Api } from '../../http/api.ts';
import { wholeList, wholeListQuery } from '../../http/cursor.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { IdentityProvidersService } from './identity-providers.service.ts';
import {
  identityProviderBody,
  identityProviderListResponse,
  identityProviderParams,
  identityProviderResponse,
} from './identity-providers.schema.ts';

const tag = 'Identity providers';
const subject = 'IdentityProvider';

export function identityProviderRoutes(api: Api, providers: IdentityProvidersService, production: boolean): void {
  const body = identityProviderBody(production);

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/identity-providers',
      summary: "List the workspace's identity providers",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: workspaceParams,
      query: wholeListQuery,
      responses: { 200: { description: 'Providers', schema: identityProviderListResponse } },
    },
    async ({ query, caller }, _request, response) => {
      response.json(wholeList(await providers.list(caller), query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/identity-providers',
      summary: 'Trust an identity provider (BYOT)',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'create', subject, operation: 'admin' },
      params: workspaceParams,
      body,
      responses: { 201: { description: 'Created', schema: identityProviderResponse } },
    },
    async ({ params, body: input, caller }, request, response) => {
      const provider = await providers.create(caller, input);
      response.status(201).location(`/v1/workspaces/${params.ws}/identity-providers/${provider.id}`).json(provider);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/identity-providers/:id',
      summary: 'Get an identity provider',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'admin' },
      params: identityProviderParams,
      responses: { 200: { description: 'The provider', schema: identityProviderResponse } },
    },
    async ({ params, caller }, request, response) => {
      response.json(await providers.get(caller, params.id));
    },
  );

  api.route(
    {
      method: 'put',
      path: '/v1/workspaces/:ws/identity-providers/:id',
      summary: "Replace an identity provider's configuration",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'admin' },
      params: identityProviderParams,
      body,
      responses: { 200: { description: 'The provider', schema: identityProviderResponse } },
    },
    async ({ params, body: input, caller }, request, response) => {
      response.json(await providers.replace(caller, params.id, input));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/identity-providers/:id',
      summary: 'Stop trusting an identity provider',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'delete', subject, operation: 'admin' },
      params: identityProviderParams,
      responses: { 204: { description: 'Deleted' } },
    },
    async ({ params, caller }, request, response) => {
      await providers.remove(caller, params.id);
      response.status(204).end();
    },
  );
}
