import type { Api } from '../../http/api.ts';
import { actorOf, type AccessControl } from '../../policy/access.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
import type { WorkspacesService } from '../workspaces/workspaces.service.ts';
import { grantorOf } from './grants.ts';
import type { MembersService } from './members.service.ts';
import { pageQuery } from '../../http/cursor.ts';
import {
  createMemberBody,
  memberListResponse,
  memberParams,
  memberResponse,
  updateMemberBody,
} from './members.schema.ts';

const tag = 'Members';
const subject = 'Member';

export function memberRoutes(
  api: Api,
  members: MembersService,
  workspaces: WorkspacesService,
  access: AccessControl,
): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/members',
      summary: "List the workspace's members",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'list' },
      params: workspaceParams,
      query: pageQuery,
      responses: { 200: { description: 'Members, by join time', schema: memberListResponse } },
    },
    async ({ params, query }, request, response) => {
      response.json(await members.list(await workspaces.idOf(params.ws, request.workspace), query));
    },
  );

  api.route(
    {
      method: 'post',
      path: '/v1/workspaces/:ws/members',
      summary: 'Add a member with roles (only roles you hold, unless you manage members)',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'create', subject, operation: 'create' },
      params: workspaceParams,
      body: createMemberBody,
      responses: { 201: { description: 'Created', schema: memberResponse } },
    },
    async ({ params, body }, request, response) => {
      const member = await members.create(
        actorOf(request, access),
        await grantorOf(request, access, body.userId),
        await workspaces.idOf(params.ws, request.workspace),
        body,
      );
      response
        .status(201)
        .location(`/v1/workspaces/${params.ws}/members/${encodeURIComponent(member.userId)}`)
        .json(member);
    },
  );

  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/members/:userId',
      summary: 'Get a member',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'read', subject, operation: 'get' },
      params: memberParams,
      responses: { 200: { description: 'The member', schema: memberResponse } },
    },
    async ({ params }, request, response) => {
      response.json(await members.get(await workspaces.idOf(params.ws, request.workspace), params.userId));
    },
  );

  api.route(
    {
      method: 'patch',
      path: '/v1/workspaces/:ws/members/:userId',
      summary: "Change a member's roles or email; the last member who can manage members keeps that",
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'update', subject, operation: 'update' },
      params: memberParams,
      body: updateMemberBody,
      responses: { 200: { description: 'The member', schema: memberResponse } },
    },
    async ({ params, body }, request, response) => {
      response.json(
        await members.update(
          actorOf(request, access),
          await grantorOf(request, access, params.userId),
          await workspaces.idOf(params.ws, request.workspace),
          params.userId,
          body,
        ),
      );
    },
  );

  api.route(
    {
      method: 'delete',
      path: '/v1/workspaces/:ws/members/:userId',
      summary: 'Remove a member (never the last who can manage members)',
      tag,
      security: 'adminOrBearer',
      authorize: { action: 'delete', subject, operation: 'delete' },
      params: memberParams,
      responses: { 204: { description: 'Removed' } },
    },
    async ({ params }, request, response) => {
      await members.remove(
        actorOf(request, access),
        await grantorOf(request, access, params.userId),
        await workspaces.idOf(params.ws, request.workspace),
        params.userId,
      );
      response.status(204).end();
    },
  );
}
