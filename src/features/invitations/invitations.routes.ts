import { bearerToken } from '../../auth/admin.ts';
import type { Authenticator } from '../../auth/authenticate.ts';
import type { Api } from '../../http/api.ts';
import { actorOf, type AccessControl } from '../../policy/access.ts';
import type { DecisionEntry } from '../decisions/decision-log.ts';
import { grantorOf } from '../members/grants.ts';
import { pageQuery } from '../../http/cursor.ts';
import { memberResponse } from '../members/members.schema.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { WorkspacesService } from '../workspaces/workspaces.service.ts';
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

const acceptance = (userId: string, allowed: boolean, reason: string): DecisionEntry => ({
  action: 'create',
  operation: 'create',
  subject: 'Member',
  resourceId: userId,
  decision: { allowed, policyId: null, policyVersion: null, ruleIndex: null, reason },
});
const subject = 'Invitation';

export function invitationRoutes(
  api: Api,
  invitations: InvitationsService,
  workspaces: WorkspacesService,
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
    async ({ params, query }, request, response) => {
      response.json(await invitations.list(await workspaces.idOf(params.ws, request.workspace), query));
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
    async ({ params, body }, request, response) => {
      const invitation = await invitations.create(
        actorOf(request, access),
        await grantorOf(request, access),
        await workspaces.idOf(params.ws, request.workspace),
        body,
      );
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
    async ({ params }, request, response) => {
      response.json(await invitations.get(await workspaces.idOf(params.ws, request.workspace), params.id));
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
    async ({ params }, request, response) => {
      await invitations.revoke(
        actorOf(request, access),
        await workspaces.idOf(params.ws, request.workspace),
        params.id,
      );
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
      const member = await invitations.accept(
        params.token,
        async (invitationWorkspace) => {
          const { principal, tenant } = await authenticator.authenticate(
            invitationWorkspace,
            bearerToken(request.headers),
          );
          request.principal = principal;
          request.workspace = tenant.workspace;
          return principal;
        },
        {
          // Not a policy decision: the invitation is the grant, so no rule is named.
          accepted: (em, principal, invitationId) =>
            access.recordIn(em, request, [acceptance(principal.id, true, `invitation ${invitationId} accepted`)]),
          refused: (principal, reason) => access.recordNow(request, [acceptance(principal.id, false, reason)]),
        },
      );
      response.json(member);
    },
  );
}
