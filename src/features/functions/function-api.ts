import { sql } from 'kysely';
import { z } from 'zod';
import type { Principal } from '../../auth/principal.ts';
import { prepared, type Database } from '../../db/database.ts';
import { appendEvents, type EventLog } from '../../events/event-log.ts';
import { fieldErrors } from '../../http/api.ts';
import { ProblemError } from '../../http/errors.ts';
import { toProblem } from '../../http/problems.ts';
import { refusingProtoKey } from '../../json.ts';
import type { AccessControl, PrincipalCaller } from '../../policy/access.ts';
import { appendDecisions } from '../../policy/decision-log.ts';
import type { PolicyScope, PolicyStore } from '../../policy/policy-store.ts';
import { Ruling } from '../../policy/ruling.ts';
import type { RecordsService } from '../records/records.service.ts';
import type { HostError } from './sandbox-protocol.ts';

/** Who a function acts as during one run, and where its writes say they come from. */
export interface FunctionActor {
  name: string;
  roles: readonly string[];
  runId: string;
  /** The depth of the event it runs on: its own writes are one deeper. */
  depth: number;
  /** False when invoked by hand: its writes fire no trigger. */
  fireTriggers: boolean;
}

/**
 * The function's principal, `function:<name>` with the function's roles, under the workspace's
 * policies: every api call goes through the records path and the one door for decisions exactly
 * as a user's request does, with the run's id as the decisions' request id.
 */
export async function functionCaller(
  policies: PolicyStore,
  scope: PolicyScope,
  actor: FunctionActor,
): Promise<PrincipalCaller> {
  const principal: Principal = {
    id: `function:${actor.name}`,
    workspaceId: scope.workspaceId,
    roles: [...actor.roles],
    provider: 'function',
    claims: {},
  };
  return {
    principal,
    workspaceId: scope.workspaceId,
    ability: await policies.abilityFor(principal, scope),
    context: {
      workspaceId: scope.workspaceId,
      requestId: actor.runId,
      principal,
      ip: null,
      userAgent: null,
      startedAt: process.hrtime.bigint(),
      attributes: {
        plan: await policies.inputsPlan(scope),
        placeholders: { principal, workspaceId: scope.workspaceId },
      },
    },
    origin: {
      actor: { id: principal.id, kind: 'function' },
      requestId: actor.runId,
      depth: actor.depth + 1,
      fireTriggers: actor.fireTriggers,
    },
  };
}

const recordId = z.string().min(1).max(100);
const structure = z.string().min(1).max(100);
const data = refusingProtoKey(z.record(z.string(), z.unknown()));
const query = z
  .strictObject({
    filter: refusingProtoKey(z.record(z.string(), z.unknown())).nullish(),
    sort: z.string().max(300).nullish(),
    limit: z.number().int().min(1).max(200).nullish(),
    cursor: z.string().max(4_000).nullish(),
  })
  .nullish();
const notification = z
  .strictObject({
    type: z.string().min(1).max(50),
    to: z.string().min(1).max(320),
    template: z.string().min(1).max(200),
    data: refusingProtoKey(z.record(z.string(), z.json())).nullish(),
  })
  .refine((value) => JSON.stringify(value).length <= 16_384, 'a notification is at most 16 KB of JSON');

/** Each method's arguments, as the function's code passes them (JSON: `undefined` arrives as null). */
const signatures = {
  getRecord: z.tuple([recordId]),
  queryRecords: z.tuple([structure, query]),
  createRecord: z.tuple([structure, data]),
  updateRecord: z.tuple([structure, recordId, data]),
  deleteRecord: z.tuple([structure, recordId]),
  sendNotification: z.tuple([notification]),
};
export type ApiMethod = keyof typeof signatures;
export const apiMethods = Object.keys(signatures) as ApiMethod[];

/** What the function's code catches when a call fails: the problem the HTTP API would answer. */
export function hostErrorOf(error: unknown): HostError {
  const problem = toProblem(error);
  if (!problem) return { name: 'ApiError', message: 'internal error', code: 'internal', status: 500 };
  return {
    name: 'ApiError',
    message: problem.message,
    code: problem.code,
    status: problem.status,
    ...(problem.errors && { errors: problem.errors }),
  };
}

/** `context.api`: each method acts as the function's principal through the records path. */
export class FunctionApi {
  private readonly records: RecordsService;
  private readonly access: AccessControl;
  private readonly database: Database;
  private readonly events: EventLog;

  constructor(options: { records: RecordsService; access: AccessControl; database: Database; events: EventLog }) {
    this.records = options.records;
    this.access = options.access;
    this.database = options.database;
    this.events = options.events;
  }

  /** One call; its arguments are checked first, as a request body is, before any decision. */
  call(caller: PrincipalCaller, method: string, args: unknown[]): Promise<unknown> {
    if (!Object.hasOwn(signatures, method)) throw new ProblemError('route_not_found', `No api method "${method}"`);
    const parsed = signatures[method as ApiMethod].safeParse(args);
    if (!parsed.success) {
      throw new ProblemError('validation_failed', `The arguments of api.${method} are invalid`, {
        errors: fieldErrors(parsed.error.issues, 'body'),
      });
    }
    return this.dispatch(caller, method as ApiMethod, parsed.data as never);
  }

  private async dispatch(caller: PrincipalCaller, method: ApiMethod, args: unknown[]): Promise<unknown> {
    switch (method) {
      case 'getRecord': {
        const [id] = args as z.output<typeof signatures.getRecord>;
        return this.records.getById(caller, id);
      }
      case 'queryRecords': {
        const [name, options] = args as z.output<typeof signatures.queryRecords>;
        return this.records.list(caller, name, {
          limit: options?.limit ?? 50,
          count: false,
          ...(options?.filter && { filter: JSON.stringify(options.filter) }),
          ...(options?.sort && { sort: options.sort }),
          ...(options?.cursor && { cursor: options.cursor }),
        });
      }
      case 'createRecord': {
        const [name, input] = args as z.output<typeof signatures.createRecord>;
        return this.records.create(caller, name, input);
      }
      case 'updateRecord': {
        const [name, id, patch] = args as z.output<typeof signatures.updateRecord>;
        return this.records.update(caller, name, id, patch, undefined);
      }
      case 'deleteRecord': {
        const [name, id] = args as z.output<typeof signatures.deleteRecord>;
        await this.records.remove(caller, name, id, undefined);
        return null;
      }
      case 'sendNotification': {
        const [request] = args as z.output<typeof signatures.sendNotification>;
        await this.requestNotification(caller, { ...request, data: request.data ?? {} });
        return null;
      }
    }
  }

  /**
   * Cordon sends no mail: a notification is a `notification.requested` event, for the triggers
   * that subscribe to it (the app sends it). Asking is `create` on `Notification`, decided and
   * logged like any write: the event and its decision are one statement, as a record's create is.
   */
  private async requestNotification(caller: PrincipalCaller, request: Record<string, unknown>): Promise<void> {
    const decision = caller.ability.decide('create', 'Notification');
    const ruling = new Ruling({ action: 'create', operation: 'create', subject: 'Notification', decision });
    await this.access.decide(caller, ruling, async () => {
      ruling.require(decision);
      const event = appendEvents(caller.origin, [{ type: 'notification.requested', data: request }]);
      const logged = appendDecisions([{ context: caller.context, entries: [ruling.entry] }]);
      await this.database.inWorkspace(caller.workspaceId, (scope) =>
        prepared(
          'cordon_request_notification',
          sql`with ${scope}, logged as (${logged} returning 1), evented as (${event} returning 1)
            select (select count(*) from logged)::int as decisions, (select count(*) from evented)::int as events`,
        ),
      );
      ruling.written = true;
      this.events.committed(caller.workspaceId);
    });
  }
}
