import type { components } from './schema.ts';

/** An RFC 9457 problem as Cordon sends it; `type` and `requestId` are absent only when something else answered. */
export type Problem = Omit<components['schemas']['Problem'], 'type' | 'requestId'> &
  Partial<Pick<components['schemas']['Problem'], 'type' | 'requestId'>>;
export type FieldError = NonNullable<Problem['errors']>[number];

/** Every refusal and failure Cordon reports: switch on `code`, which is never renamed. */
export class CordonError extends Error {
  readonly status: number;
  readonly code: string;
  readonly title: string;
  readonly detail: string | undefined;
  readonly errors: FieldError[];
  readonly requestId: string | undefined;
  readonly problem: Problem;

  constructor(problem: Problem) {
    super(problem.detail ? `${problem.title}: ${problem.detail}` : problem.title);
    this.name = 'CordonError';
    this.problem = problem;
    this.status = problem.status;
    this.code = problem.code;
    this.title = problem.title;
    this.detail = problem.detail;
    this.errors = problem.errors ?? [];
    this.requestId = problem.requestId;
  }
}

const isProblem = (body: unknown): body is Problem =>
  typeof body === 'object' &&
  body !== null &&
  typeof (body as Problem).code === 'string' &&
  typeof (body as Problem).title === 'string';

/** The problem in a refusal's body, or one that describes an answer that was not a problem (a proxy's page). */
export function problemOf(response: Response, body: unknown): Problem {
  if (isProblem(body)) return { ...body, status: response.status };
  const text = typeof body === 'string' ? body.slice(0, 500) : undefined;
  return {
    status: response.status,
    code: 'unexpected_response',
    title: `Cordon answered ${response.status}${response.statusText ? ` ${response.statusText}` : ''}`,
    ...(text ? { detail: text } : {}),
    ...(response.headers.get('x-request-id') ? { requestId: response.headers.get('x-request-id')! } : {}),
  };
}

/** Reads a refused response's body (problem+json, or anything else) into a CordonError. */
export async function errorOf(response: Response): Promise<CordonError> {
  const text = await response.text().catch(() => '');
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Not JSON: kept as text for the detail.
  }
  return new CordonError(problemOf(response, body));
}

/** A 401 whose problem is the token (expired, unknown key, …): a fresh token may succeed. */
export const isTokenProblem = (error: CordonError) => error.status === 401 && error.code.startsWith('token_');
