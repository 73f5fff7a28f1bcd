import type { IncomingMessage, ServerResponse } from 'node:http';
import { StripeApiError } from './errors.ts';
import { parseForm, type Params } from './params.ts';
import { route } from './router.ts';
import { newId, type StripeState } from './state.ts';

/** One API request as the stand-in answered it, for tests to count (`the customer was created once`). */
export interface LoggedRequest {
  method: string;
  path: string;
  idempotencyKey: string | null;
  params: Params;
  status: number;
  /** Answered from the idempotency store, not executed. */
  replayed: boolean;
  requestId: string;
}

interface SavedResponse {
  fingerprint: string;
  status: number;
  body: string;
  requestId: string;
}

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string>;
}

/** Sorted keys, so two encodings of the same parameters compare equal. */
function canonical(value: unknown): string {
  if (typeof value !== 'object' || value === null) return JSON.stringify(value);
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const entries = Object.entries(value).sort(([a], [b]) => (a < b ? -1 : 1));
  return `{${entries.map(([key, inner]) => `${JSON.stringify(key)}:${canonical(inner)}`).join(',')}}`;
}

function masked(key: string): string {
  return `${key.slice(0, 8)}${'*'.repeat(Math.max(0, key.length - 12))}${key.slice(-4)}`;
}

/** The HTTP face of the stand-in: authentication, Stripe-Version, idempotency, the request log. */
export class ApiServer {
  readonly requests: LoggedRequest[] = [];
  /** Requests this matches are answered as Stripe's rare 500 (type api_error), before anything runs. */
  outage: ((method: string, path: string) => boolean) | undefined;
  private readonly saved = new Map<string, SavedResponse>();
  private readonly state: StripeState;
  private readonly secretKey: string;

  constructor(state: StripeState, secretKey: string) {
    this.state = state;
    this.secretKey = secretKey;
  }

  readonly handle = async (request: IncomingMessage, response: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    const url = new URL(request.url ?? '/', 'http://stand-in');
    const method = request.method ?? 'GET';
    if (method === 'GET' && /^\/(c\/pay|p\/session|i)\//.test(url.pathname)) {
      response.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
      response.end(`<!doctype html><title>Stripe stand-in</title><p>${url.pathname}</p>`);
      return;
    }
    const requestId = newId('req_', 14);
    const key = request.headers['idempotency-key'];
    const idempotencyKey = method === 'POST' && typeof key === 'string' ? key : null;
    const params = parseForm(method === 'POST' ? Buffer.concat(chunks).toString('utf8') : url.search.slice(1));
    const answer = this.answer(request, method, url.pathname, params, requestId, idempotencyKey);
    this.requests.push({
      method,
      path: url.pathname,
      idempotencyKey,
      params,
      status: answer.status,
      replayed: answer.headers['Idempotent-Replayed'] === 'true',
      requestId,
    });
    response.writeHead(answer.status, {
      'Content-Type': 'application/json',
      'Request-Id': requestId,
      'Stripe-Version': this.state.apiVersion,
      ...(idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {}),
      ...answer.headers,
    });
    response.end(answer.body);
  };

  private answer(
    request: IncomingMessage,
    method: string,
    path: string,
    params: Params,
    requestId: string,
    idempotencyKey: string | null,
  ): Answer {
    const failure = (error: StripeApiError): Answer => ({
      status: error.status,
      body: JSON.stringify(error.body(requestId), null, 2),
      headers: {},
    });
    const refused = this.authenticate(request) ?? this.checkVersion(request);
    if (refused) return failure(refused);
    if (this.outage?.(method, path)) {
      return failure(
        new StripeApiError(500, 'api_error', 'An unknown error occurred (stand-in outage).', { saved: false }),
      );
    }
    // Stripe honours Idempotency-Key on POST only; GET and DELETE are idempotent already
    // (docs.stripe.com/api/idempotent_requests).
    const fingerprint = `${method} ${path} ${canonical(params)}`;
    const previous = idempotencyKey ? this.saved.get(idempotencyKey) : undefined;
    if (previous && previous.fingerprint !== fingerprint) {
      // Wording as Stripe sends it (stripe-java's integration tests assert it verbatim).
      return failure(
        new StripeApiError(
          400,
          'idempotency_error',
          `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${idempotencyKey}' if you meant to execute a different request.`,
          { saved: false },
        ),
      );
    }
    if (previous) {
      // A replay repeats the saved status and body, marked `Idempotent-Replayed: true` with the
      // id of the request that ran (`Original-Request`).
      return {
        status: previous.status,
        body: previous.body,
        headers: { 'Idempotent-Replayed': 'true', 'Original-Request': previous.requestId },
      };
    }
    let answer: Answer;
    let save = true;
    try {
      const { handler, id } = route(method, path);
      const origin = { id: requestId, idempotency_key: idempotencyKey };
      // Every answer honours `expand[]`, on lists as `data.<field>`.
      const result = this.state.expand(handler({ state: this.state, params, id, origin }), params);
      answer = { status: 200, body: JSON.stringify(result, null, 2), headers: {} };
    } catch (error) {
      // A fault of the stand-in itself answers as Stripe's rare 500 does, with type api_error.
      const refusal =
        error instanceof StripeApiError
          ? error
          : new StripeApiError(500, 'api_error', `Stand-in fault: ${String(error)}`);
      answer = failure(refusal);
      save = refusal.saved;
    }
    if (idempotencyKey && save) {
      this.saved.set(idempotencyKey, { fingerprint, status: answer.status, body: answer.body, requestId });
    }
    return answer;
  }

  /** `Authorization: Bearer sk_test_…` (or HTTP Basic with the key as user name, as curl -u sends it). */
  private authenticate(request: IncomingMessage): StripeApiError | undefined {
    const header = request.headers.authorization ?? '';
    const [scheme, credentials = ''] = header.split(' ');
    let key = '';
    if (scheme === 'Bearer') key = credentials;
    if (scheme === 'Basic') key = Buffer.from(credentials, 'base64').toString('utf8').split(':')[0] ?? '';
    if (key === '') {
      return new StripeApiError(
        401,
        'invalid_request_error',
        "You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.",
        { saved: false },
      );
    }
    if (key !== this.secretKey) {
      return new StripeApiError(401, 'invalid_request_error', `Invalid API Key provided: ${masked(key)}`, {
        saved: false,
      });
    }
    return undefined;
  }

  /**
   * The stand-in renders one API version, the one stripe-node 23 pins. A request for another is
   * refused rather than answered in shapes it did not ask for (Stripe itself would render it).
   */
  private checkVersion(request: IncomingMessage): StripeApiError | undefined {
    const version = request.headers['stripe-version'];
    if (version === undefined || version === this.state.apiVersion) return undefined;
    return StripeApiError.invalidRequest(
      `The Stripe stand-in renders API version ${this.state.apiVersion} only, not ${String(version)}.`,
      { param: 'Stripe-Version' },
    );
  }
}
