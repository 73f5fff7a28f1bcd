import { bearerToken } from '../../auth/admin.ts';
import type { Authenticator } from '../../auth/authenticate.ts';
import type { Api } from '../../http/api.ts';
import type { AccessControl } from '../../policy/access.ts';
import { pageQuery } from '../../http/cursor.ts';
import { memberResponse } from '../members/members.schema.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { InvitationsService } from './invitations.service.ts';
import {
  acceptParams,
  createInvitationBody,
  createdInvitationResponse,
  invitationListResponse,
  invitationParams,
  invitationResponse,
} from './invitations.schema.ts';

const tag = 'Invitations';

const subject = 'Invitation';

export function invitationRoutes(
  api: Api,
  invitations: InvitationsService,
  access: AccessControl,
  authenticator: Authenticator,
): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/invitations',
      summary: 'List invitations, newest first',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'list' },
      params: workspaceParams,
      query: pageQuery,
      responses: { 200: { description: 'Invitations', schema: invitationListResponse } },
    },
    async ({ query, caller }, _request, response) => {
      response.json(await invitations.list(caller, query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/invitations',
      summary: 'Invite an email with roles; replaces a pending invitation of that email; the token is shown once',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'create', subject, operation: 'create' },
      params: workspaceParams,
      body: createInvitationBody,
      responses: { 201: { description: 'Created, with its token', schema: createdInvitationResponse } },
    },
    async ({ params, body, caller }, request, response) => {
      const invitation = await invitations.create(caller, body);
      response.status(201).location(`/v1/workspaces/${params.ws}/invitations/${invitation.id}`).json(invitation);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/invitations/:id',
      summary: 'Get an invitation (never its token)',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'get' },
      params: invitationParams,
      responses: { 200: { description: 'The invitation', schema: invitationResponse } },
    },
    async ({ params, caller }, request, response) => {
      response.json(await invitations.get(caller, params.id));
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/invitations/:id',
      summary: 'Revoke a pending invitation',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'delete', subject, operation: 'delete' },
      params: invitationParams,
      responses: { 204: { description: 'Revoked' } },
    },
    async ({ params, caller }, request, response) => {
      await invitations.revoke(caller, params.id);
      response.status(204).end();
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/invitations/:token/accept',
      summary:
        "Accept an invitation with a token of the invitation's workspace whose verified email is the invited one",
      tag,
      security: 'none',
      params: acceptParams,
      responses: { 200: { description: 'The new (or updated) member', schema: memberResponse } },
    },
    async ({ params }, request, response) => {
      const member = await invitations.accept(params.token, async (invitationWorkspace) => {
        const { principal, tenant } = await authenticator.authenticate(
          invitationWorkspace,
          bearerToken(request.headers),
        );
        request.principal = principal;
        request.workspace = tenant.workspace;
        return access.principalOf(request);
      });
      response.json(member);
    },
  );
}
