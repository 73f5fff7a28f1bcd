import { bearerToken } from '../../auth/admin.ts';
import type { Api } from '../../http/api.ts';
import { ProblemError } from '../../http/errors.ts';
import type { AccessControl } from '../../policy/access.ts';
import { Ruling } from '../../policy/ruling.ts';
import type { StructureCatalog } from '../structures/structure-catalog.ts';
import type { RealtimeHub, StreamPlace } from './realtime-hub.ts';
import { streamParams, streamQuery, streamResponse } from './realtime.schema.ts';

const eventId = /^\d{1,19}$/;

/**
 * `GET /v1/workspaces/:ws/events`: a workspace principal's stream of the record events it may
 * read. The type-level read check on every structure named, logged as one decision each, before
 * the stream starts; then every event is checked in memory on the record it carries.
 */
export function realtimeRoutes(api: Api, hub: RealtimeHub, access: AccessControl, catalog: StructureCatalog): void {
  api.route(
    {
      method: 'get',
      path: '/v1/workspaces/:ws/events',
      tag: 'Realtime',
      security: 'bearerOrQuery',
      summary:
        'Stream the record events of some structures as Server-Sent Events, each as the principal may read it; resume with Last-Event-ID',
      params: streamParams,
      query: streamQuery,
      responses: { 200: { description: 'An event stream', schema: streamResponse, contentType: 'text/event-stream' } },
    },
    async ({ query }, request, response) => {
      const caller = await access.principalOf(request);
      const header = request.headers['last-event-id'];
      const resumeAt = typeof header === 'string' && header !== '' ? header : query.lastEventId;
      const rulings = query.structures.map(
        (subject) =>
          new Ruling({ action: 'read', operation: 'list', subject, decision: caller.ability.decide('read', subject) }),
      );
      let place: StreamPlace | undefined;
      try {
        for (const ruling of rulings) ruling.require(ruling.entry.decision);
        for (const name of query.structures) {
          if (!(await catalog.find(caller.workspaceId, name)))
            throw new ProblemError('structure_not_found', `No structure "${name}" in this workspace`);
        }
        if (resumeAt !== undefined && !eventId.test(resumeAt))
          throw new ProblemError('invalid_last_event_id', 'Last-Event-ID must be the id (seq) of an event');
        place = hub.admit(caller.workspaceId, caller.principal.id);
      } catch (error) {
        await access.decided(
          caller,
          rulings.map((ruling) => (ruling.entry.decision.allowed ? ruling.outcome(error) : ruling.entry)),
        );
        throw error;
      }
      await access
        .decided(
          caller,
          rulings.map((ruling) => ruling.entry),
        )
        .catch((error: unknown) => {
          place.release();
          throw error;
        });
      await hub.subscribe(
        {
          principal: caller.principal,
          workspaceId: caller.workspaceId,
          workspaceReference: String(request.params.ws),
          ability: caller.ability,
          token: bearerToken(request.headers) ?? String(query.access_token),
          structures: query.structures,
          lastEventId: resumeAt === undefined ? undefined : BigInt(resumeAt),
        },
        place,
        request,
        response,
      );
    },
  );
}
