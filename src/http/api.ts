import type { Express, Request, RequestHandler, Response } from 'express';
import type { z } from 'zod';
import type { Caller, Requirement } from '../policy/access.ts';
import { errorCatalogue, ProblemError, type ErrorCode, type FieldError } from './errors.ts';
import { escapePointer } from '../json.ts';
import { refuseUnstorableInput } from './storable.ts';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
/**
 * `adminOrBearer`: the platform admin key, or a workspace user's token (then `authorize` applies).
 * `bearerOrQuery`: a workspace user's token as a Bearer token or the `access_token` query parameter.
 */
export type Security = 'admin' | 'bearer' | 'adminOrBearer' | 'bearerOrQuery' | 'none';

export interface ResponseDefinition {
  description: string;
  schema?: z.ZodType;
  contentType?: string;
}

export interface RouteDefinition<
  Params extends z.ZodType = z.ZodType,
  Query extends z.ZodType = z.ZodType,
  Body extends z.ZodType = z.ZodType,
> {
  method: Method;
  /** Express path, e.g. `/v1/workspaces/:ws`. */
  path: string;
  summary: string;
  tag: string;
  security: Security;
  params?: Params;
  query?: Query;
  body?: Body;
  responses: Record<number, ResponseDefinition>;
  /** The type-level check a principal must pass; decided and logged before the handler runs. */
  authorize?: Requirement;
  /**
   * Answered even when the workspace's monthly API calls are spent (and still counted): the way to
   * a bigger plan must stay open.
   */
  beyondQuota?: true;
}

export interface Input<Params, Query, Body, Authorized = undefined> {
  params: Params;
  query: Query;
  body: Body;
  /** On routes with `authorize`: who acts, and the route's allow still waiting for its outcome. */
  caller: Authorized;
}

type Parsed<Schema> = Schema extends z.ZodType ? z.output<Schema> : undefined;

export type Handler<Params, Query, Body, Authorized = undefined> = (
  input: Input<Params, Query, Body, Authorized>,
  request: Request,
  response: Response,
) => unknown;

export function fieldErrors(issues: z.core.$ZodIssue[], location: FieldError['in']): FieldError[] {
  return issues.map((issue) => ({
    pointer: issue.path.length ? '/' + issue.path.map(escapePointer).join('/') : '',
    in: location,
    detail: issue.message,
  }));
}

/**
 * A refinement may name a problem more telling than `validation_failed` with
 * `params: { problem: <code> }` (e.g. `dev_issuer_in_production`); the field errors are the same.
 */
function namedProblem(issues: z.core.$ZodIssue[]): { code: ErrorCode; detail: string } | undefined {
  for (const issue of issues) {
    const problem: unknown = issue.code === 'custom' ? issue.params?.problem : undefined;
    if (typeof problem === 'string' && Object.hasOwn(errorCatalogue, problem))
      return { code: problem as ErrorCode, detail: `${issue.path.join('.')} ${issue.message}`.trim() };
  }
  return undefined;
}

function parse(schema: z.ZodType | undefined, value: unknown, location: FieldError['in']): unknown {
  if (!schema) return undefined;
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const named = namedProblem(result.error.issues);
  throw new ProblemError(named?.code ?? 'validation_failed', named?.detail ?? `The request ${location} is invalid`, {
    errors: fieldErrors(result.error.issues, location),
  });
}

/** Marks a request of a route answered past the API quota (`beyondQuota`), for the usage meter. */
const beyondQuota: RequestHandler = (request, _response, next) => {
  request.beyondQuota = true;
  next();
};

declare module 'express-serve-static-core' {
  interface Request {
    /** The route is answered past the workspace's API quota (see `RouteDefinition.beyondQuota`). */
    beyondQuota?: true;
  }
}

/**
 * Runs an authorized route: the type-level check (a denial is logged, then 403), then `work` with
 * the caller, whose one decision is written whatever the outcome — parsing the input included.
 */
export type Authorizer = (
  request: Request,
  requirement: Requirement,
  work: (caller: Caller) => Promise<void>,
) => Promise<void>;

/**
 * Declares routes once, with their schemas: Express gets the handler, the OpenAPI document gets
 * the description. Routes are mounted on the app with their full path, so the mounted stack and
 * the document can be compared.
 */
export class Api {
  readonly routes: RouteDefinition[] = [];
  private readonly app: Express;
  private readonly guards: Record<Security, RequestHandler[]>;
  private readonly authorizer: Authorizer;

  constructor(app: Express, guards: Record<Security, RequestHandler[]>, authorizer: Authorizer) {
    this.app = app;
    this.guards = guards;
    this.authorizer = authorizer;
  }

  route<
    Params extends z.ZodType | undefined,
    Query extends z.ZodType | undefined,
    Body extends z.ZodType | undefined,
    Authorize extends Requirement | undefined = undefined,
  >(
    definition: RouteDefinition & { params?: Params; query?: Query; body?: Body; authorize?: Authorize },
    handler: Handler<Parsed<Params>, Parsed<Query>, Parsed<Body>, Authorize extends Requirement ? Caller : undefined>,
  ): void {
    this.routes.push(definition);
    type HandlerInput = Parameters<typeof handler>[0];
    const input = (request: Request, caller: Caller | undefined) =>
      ({
        params: parse(definition.params, request.params, 'params'),
        query: parse(definition.query, request.query, 'query'),
        body: parse(definition.body, request.body ?? {}, 'body'),
        caller,
      }) as HandlerInput;
    const requirement = definition.authorize;
    const run: RequestHandler = requirement
      ? (request, response) =>
          this.authorizer(request, requirement, async (caller) => {
            await handler(input(request, caller), request, response);
          })
      : async (request, response) => {
          await handler(input(request, undefined), request, response);
        };
    const quota = definition.beyondQuota ? [beyondQuota] : [];
    this.app[definition.method](
      definition.path,
      refuseUnstorableInput,
      ...quota,
      ...this.guards[definition.security],
      run,
    );
  }
}
