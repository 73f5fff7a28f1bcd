import type { ErrorRequestHandler, Request, RequestHandler, Response } from 'express';
import { ClientGone } from './backpressure.ts';
import { ProblemError, errorCatalogue, problemTypeBase, type ErrorCode } from './errors.ts';

/** Constraint names whose violation is a client error with its own code. */
const uniqueConstraintCodes: Record<string, ErrorCode> = {
  workspaces_slug_key: 'slug_taken',
  identity_providers_issuer_org_key: 'identity_provider_taken',
  identity_providers_workspace_name_key: 'identity_provider_name_taken',
  policies_workspace_name_key: 'policy_name_taken',
  structures_pkey: 'structure_name_taken',
  members_pkey: 'member_exists',
  functions_pkey: 'function_name_taken',
  triggers_workspace_name_key: 'trigger_name_taken',
};

/** Body-parser signals its failures with a `type`; they are the client's fault, never a 500. */
const bodyParserCodes: Record<string, ErrorCode> = {
  'entity.parse.failed': 'invalid_json',
  'entity.too.large': 'payload_too_large',
  'encoding.unsupported': 'unsupported_media_type',
  'charset.unsupported': 'unsupported_media_type',
  'request.aborted': 'invalid_json',
  'request.size.invalid': 'invalid_json',
};

/**
 * Body-parser's other client errors carry no `type`: a compressed body that does not decompress
 * is zlib's error (an `errno`, and a code such as Z_DATA_ERROR) given status 400 and `expose`.
 * By status, then; an error not exposed to clients stays unknown (a 500).
 */
const bodyStatusCodes: Record<number, ErrorCode> = {
  400: 'invalid_json',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
};

function fromBodyParser(error: {
  type?: unknown;
  status?: unknown;
  expose?: unknown;
  errno?: unknown;
}): ProblemError | undefined {
  if (typeof error.type === 'string' && error.type in bodyParserCodes) {
    return new ProblemError(bodyParserCodes[error.type] as ErrorCode);
  }
  if (error.expose !== true || typeof error.status !== 'number' || !(error.status in bodyStatusCodes)) return undefined;
  return new ProblemError(
    bodyStatusCodes[error.status] as ErrorCode,
    typeof error.errno === 'number' ? 'The request body does not decompress as its Content-Encoding says' : undefined,
  );
}

/** Translates database errors in one place: SQLSTATE → catalogue code. */
function fromDatabase(error: { code?: unknown; sqlState?: unknown; constraint?: unknown }): ProblemError | undefined {
  const state = typeof error.sqlState === 'string' ? error.sqlState : error.code;
  if (typeof state !== 'string' || !/^[0-9A-Z]{5}$/.test(state)) return undefined;
  if (state === '23505') {
    const constraint = typeof error.constraint === 'string' ? error.constraint : '';
    return new ProblemError(uniqueConstraintCodes[constraint] ?? 'conflict');
  }
  if (state === '40001' || state === '40P01') {
    return new ProblemError('conflict', 'A concurrent change conflicted with this one; retry the request');
  }
  if (state.startsWith('22')) {
    // Data exceptions (a malformed or out-of-range value) are the client's input: inputs are
    // checked before they get here, and this keeps whatever slips past a 400, not a 500.
    return new ProblemError('validation_failed', 'A value in the request is malformed or out of range');
  }
  if (state.startsWith('08') || state === '57P01' || state === '57P03' || state === '53300') {
    return new ProblemError('database_unavailable');
  }
  return undefined;
}

const droppedConnectionMessages = new Set([
  'timeout exceeded when trying to connect',
  'Connection terminated unexpectedly',
  'Connection terminated',
]);

export function toProblem(error: unknown): ProblemError | undefined {
  if (error instanceof ProblemError) return error;
  // Express could not percent-decode a path parameter (`/members/%C3%28`): the client's input.
  if (error instanceof URIError && (error as URIError & { status?: unknown }).status === 400) {
    return new ProblemError('validation_failed', 'The request path is invalid', {
      errors: [{ pointer: '', in: 'params', detail: 'a path parameter is not valid percent-encoded UTF-8' }],
    });
  }
  if (typeof error !== 'object' || error === null) return undefined;
  const candidate = error as {
    type?: unknown;
    status?: unknown;
    expose?: unknown;
    errno?: unknown;
    code?: unknown;
    sqlState?: unknown;
    constraint?: unknown;
  };
  const fromBody = fromBodyParser(candidate);
  if (fromBody) return fromBody;
  // pg's pool gave up waiting for a free connection (connectionTimeoutMillis), or the server
  // closed the connection under a query without saying why.
  if (error instanceof Error && droppedConnectionMessages.has(error.message))
    return new ProblemError('database_unavailable');
  if (['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT'].includes(String(candidate.code))) {
    return new ProblemError('database_unavailable');
  }
  return fromDatabase(candidate);
}

export function sendProblem(request: Request, response: Response, problem: ProblemError): void {
  for (const [name, value] of Object.entries(problem.headers)) response.setHeader(name, value);
  response
    .status(problem.status)
    .type('application/problem+json')
    .send(
      JSON.stringify({
        ...problem.extensions,
        type: problemTypeBase + problem.code.replaceAll('_', '-'),
        title: errorCatalogue[problem.code].title,
        status: problem.status,
        detail: problem.message,
        code: problem.code,
        requestId: request.id,
        ...(problem.errors ? { errors: problem.errors } : {}),
      }),
    );
}

export const notFound: RequestHandler = (request) => {
  throw new ProblemError('route_not_found', `No route for ${request.method} ${request.path}`);
};

/** Renders every error as RFC 9457; anything unrecognised is a logged 500 with a generic body. */
export const problemHandler: ErrorRequestHandler = (error, request, response, next) => {
  // A stream whose client hung up: nobody is left to answer and nothing failed here (the request
  // log records the abort). Passed on, Express would print its stack outside the log.
  if (error instanceof ClientGone) return;
  if (response.headersSent) return next(error);
  const problem = toProblem(error);
  if (problem) {
    if (problem.status >= 500) request.log.error({ err: error }, 'request failed');
    return sendProblem(request, response, problem);
  }
  request.log.error({ err: error }, 'unhandled error');
  sendProblem(request, response, new ProblemError('internal', 'An unexpected error occurred; it has been logged'));
};
