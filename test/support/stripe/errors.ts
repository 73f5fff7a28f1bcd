/**
 * Stripe's error body: `{ error: { type, code?, message, param?, doc_url? } }` with a conventional
 * status (docs.stripe.com/api/errors: 400 bad request, 401 no valid key, 402 request failed, 404
 * missing). stripe-node turns 400/404 into StripeInvalidRequestError, 401 into
 * StripeAuthenticationError, 402 into StripeCardError (esm/Error.js `generateV1Error`).
 */
export type ErrorType = 'api_error' | 'card_error' | 'idempotency_error' | 'invalid_request_error';

export class StripeApiError extends Error {
  readonly status: number;
  readonly type: ErrorType;
  readonly code: string | undefined;
  readonly param: string | undefined;
  readonly declineCode: string | undefined;
  /**
   * Stripe saves an idempotent result only once the endpoint has begun executing: a request
   * refused in parameter validation may be retried under the same key (docs.stripe.com/idempotency).
   */
  readonly saved: boolean;

  constructor(
    status: number,
    type: ErrorType,
    message: string,
    options: { code?: string; param?: string; declineCode?: string; saved?: boolean } = {},
  ) {
    super(message);
    this.status = status;
    this.type = type;
    this.code = options.code;
    this.param = options.param;
    this.declineCode = options.declineCode;
    this.saved = options.saved ?? true;
  }

  body(requestId: string): { error: Record<string, string> } {
    const error: Record<string, string> = { type: this.type, message: this.message };
    if (this.code) {
      error.code = this.code;
      error.doc_url = `https://stripe.com/docs/error-codes/${this.code.replaceAll('_', '-')}`;
    }
    if (this.declineCode) error.decline_code = this.declineCode;
    if (this.param) error.param = this.param;
    error.request_log_url = `https://dashboard.stripe.com/test/logs/${requestId}`;
    return { error };
  }

  static missingParam(param: string): StripeApiError {
    return new StripeApiError(400, 'invalid_request_error', `Missing required param: ${param}.`, {
      code: 'parameter_missing',
      param,
      saved: false,
    });
  }

  static invalidParam(param: string, message: string, code = 'parameter_invalid_string'): StripeApiError {
    return new StripeApiError(400, 'invalid_request_error', message, { code, param, saved: false });
  }

  /**
   * `No such customer: 'cus_…'` — 404 with param `id` for the object in the path, 400 with the
   * referring param otherwise (as Stripe answers `customer` or `line_items[0][price]`).
   */
  static noSuch(kind: string, id: string, param = 'id'): StripeApiError {
    return new StripeApiError(param === 'id' ? 404 : 400, 'invalid_request_error', `No such ${kind}: '${id}'`, {
      code: 'resource_missing',
      param,
    });
  }

  /** A declined charge: 402, type card_error (docs.stripe.com/declines, docs.stripe.com/api/errors). */
  static cardDeclined(): StripeApiError {
    return new StripeApiError(402, 'card_error', 'Your card was declined.', {
      code: 'card_declined',
      declineCode: 'generic_decline',
    });
  }

  static invalidRequest(message: string, options: { code?: string; param?: string } = {}): StripeApiError {
    return new StripeApiError(400, 'invalid_request_error', message, options);
  }
}
