import type { Api } from '../../http/api.ts';
import { workspaceParams } from '../workspaces/workspaces.schema.ts';
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

export function memberRoutes(api: Api, members: MembersService): void {
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
    async ({ query, caller }, _request, response) => {
      response.json(await members.list(caller, query));
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
    async ({ params, body, caller }, request, response) => {
      const member = await members.create(caller, body);
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
    async ({ params, caller }, request, response) => {
      response.json(await members.get(caller, params.userId));
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
    async ({ params, body, caller }, request, response) => {
      response.json(await members.update(caller, params.userId, body));
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
    async ({ params, caller }, request, response) => {
      await members.remove(caller, params.userId);
      response.status(204).end();
    },
  );
}
