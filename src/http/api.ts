import type { Express, Request, RequestHandler, Response } from 'express';
import type { z } from 'zod';
import type { Requirement } from '../policy/access.ts';
import { ProblemError, type FieldError } from './errors.ts';
import { escapePointer } from './json.ts';
import { refuseUnstorableInput } from './storable.ts';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'delete';
/** `adminOrBearer`: the platform admin key, or a workspace user's token (then `authorize` applies). */
export type Security = 'admin' | 'bearer' | 'adminOrBearer' | 'none';

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
}

export interface Input<Params, Query, Body> {
  params: Params;
  query: Query;
  body: Body;
}

type Parsed<Schema> = Schema extends z.ZodType ? z.output<Schema> : undefined;

export type Handler<Params, Query, Body> = (
  input: Input<Params, Query, Body>,
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

function parse(schema: z.ZodType | undefined, value: unknown, location: FieldError['in']): unknown {
  if (!schema) return undefined;
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  throw new ProblemError('validation_failed', `The request ${location} is invalid`, {
    errors: fieldErrors(result.error.issues, location),
  });
}

/**
 * Declares routes once, with their schemas: Express gets the handler, the OpenAPI document gets
 * the description. Routes are mounted on the app with their full path, so the mounted stack and
 * the document can be compared.
 */
export class Api {
  readonly routes: RouteDefinition[] = [];
  private readonly app: Express;
  private readonly guards: Record<Security, RequestHandler[]>;
  private readonly authorizer: (authorization: Requirement, method: Method) => RequestHandler;

  constructor(
    app: Express,
    guards: Record<Security, RequestHandler[]>,
    authorizer: (authorization: Requirement, method: Method) => RequestHandler,
  ) {
    this.app = app;
    this.guards = guards;
    this.authorizer = authorizer;
  }

  route<Params extends z.ZodType | undefined, Query extends z.ZodType | undefined, Body extends z.ZodType | undefined>(
    definition: RouteDefinition & { params?: Params; query?: Query; body?: Body },
    handler: Handler<Parsed<Params>, Parsed<Query>, Parsed<Body>>,
  ): void {
    this.routes.push(definition);
    const run: RequestHandler = async (request, response) => {
      const input = {
        params: parse(definition.params, request.params, 'params'),
        query: parse(definition.query, request.query, 'query'),
        body: parse(definition.body, request.body ?? {}, 'body'),
      };
      await handler(input as Input<Parsed<Params>, Parsed<Query>, Parsed<Body>>, request, response);
    };
    const authorization = definition.authorize ? [this.authorizer(definition.authorize, definition.method)] : [];
    this.app[definition.method](
      definition.path,
      refuseUnstorableInput,
      ...this.guards[definition.security],
      ...authorization,
      run,
    );
  }
}
