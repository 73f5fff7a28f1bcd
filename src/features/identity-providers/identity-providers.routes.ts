import type { Api } from '../../http/api.ts';
import { actorOf, type AccessControl } from '../../policy/access.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { WorkspacesService } from '../workspaces/workspaces.service.ts';
import type { IdentityProvidersService } from './identity-providers.service.ts';
import {
  identityProviderBody,
  identityProviderListResponse,
  identityProviderParams,
  identityProviderResponse,
} from './identity-providers.schema.ts';

const tag = 'Identity providers';
const subject = 'IdentityProvider';

export function identityProviderRoutes(
  api: Api,
  providers: IdentityProvidersService,
  workspaces: WorkspacesService,
  access: AccessControl,
  production: boolean,
): void {
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
      responses: { 200: { description: 'Providers', schema: identityProviderListResponse } },
    },
    async ({ params }, request, response) => {
      response.json({
        data: await providers.list(await workspaces.idOf(params.ws, request.workspace)),
        nextCursor: null,
      });
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
    async ({ params, body: input }, request, response) => {
      const provider = await providers.create(
        actorOf(request, access),
        await workspaces.idOf(params.ws, request.workspace),
        input,
      );
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
    async ({ params }, request, response) => {
      response.json(await providers.get(await workspaces.idOf(params.ws, request.workspace), params.id));
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
    async ({ params, body: input }, request, response) => {
      response.json(
        await providers.replace(
          actorOf(request, access),
          await workspaces.idOf(params.ws, request.workspace),
          params.id,
          input,
        ),
      );
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
    async ({ params }, request, response) => {
      await providers.remove(actorOf(request, access), await workspaces.idOf(params.ws, request.workspace), params.id);
      response.status(204).end();
    },
  );
}
