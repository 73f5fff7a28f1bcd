/**
 * The one catalogue of errors. A `code` is part of the API: clients switch on it, so codes are
 * never renamed. `type` URIs are derived from the code.
 */
export const errorCatalogue = {
  // 400
  invalid_json: { status: 400, title: 'Request body is not valid JSON' },
  validation_failed: { status: 400, title: 'Request did not pass validation' },
  invalid_cursor: { status: 400, title: 'Cursor is malformed or was not issued for this query' },
  dev_issuer_in_production: { status: 400, title: 'A development issuer is never trusted in production' },
  import_malformed_line: { status: 400, title: 'An import line is not a JSON object { kind, data }' },
  import_unknown_kind: { status: 400, title: 'An import line names an unknown kind' },
  import_invalid_line: { status: 400, title: 'An import line does not pass validation' },
  template_not_found: { status: 400, title: 'No workspace template of that name' },
  webhook_signature_invalid: { status: 400, title: 'The webhook signature is invalid or too old' },
  // 401
  admin_key_missing: { status: 401, title: 'Platform admin key required' },
  admin_key_invalid: { status: 401, title: 'Platform admin key is invalid' },
  token_missing: { status: 401, title: 'Bearer token required' },
  token_malformed: { status: 401, title: 'Token is not a well-formed JWT' },
  token_untrusted_issuer: { status: 401, title: 'Token issuer is not trusted by this workspace' },
  token_algorithm: { status: 401, title: 'Token algorithm is not allowed' },
  token_unknown_key: { status: 401, title: 'Token was signed with an unknown key' },
  token_signature: { status: 401, title: 'Token signature is invalid' },
  token_expired: { status: 401, title: 'Token has expired' },
  token_not_yet_valid: { status: 401, title: 'Token is not valid yet' },
  token_issued_in_future: { status: 401, title: 'Token was issued in the future' },
  token_audience: { status: 401, title: 'Token audience is not accepted' },
  token_authorized_party: { status: 401, title: 'Token authorized party is not accepted' },
  token_session_pending: { status: 401, title: 'Token belongs to a pending session' },
  token_claims: { status: 401, title: 'Token lacks a required claim' },
  // 402
  plan_limit_reached: { status: 402, title: "The workspace's plan limit is reached" },
  subscription_inactive: { status: 402, title: 'The subscription is inactive: the workspace is read-only' },
  // 403
  forbidden: { status: 403, title: 'Forbidden' },
  org_mismatch: { status: 403, title: 'Token organization is not bound to this workspace' },
  invitation_email_mismatch: { status: 403, title: "The token's verified email is not the invitation's" },
  workspace_suspended: { status: 403, title: 'Workspace is suspended' },
  // 404
  route_not_found: { status: 404, title: 'No such route' },
  workspace_not_found: { status: 404, title: 'Workspace not found' },
  identity_provider_not_found: { status: 404, title: 'Identity provider not found' },
  binding_proof_required: { status: 400, title: 'A token of the organization is required to bind it' },
  binding_proof_invalid: { status: 400, title: 'The token does not prove the organization' },
  policy_not_found: { status: 404, title: 'Policy not found' },
  policy_tests_not_found: { status: 404, title: 'No policy test suite is stored for this workspace' },
  structure_not_found: { status: 404, title: 'Structure not found' },
  record_not_found: { status: 404, title: 'Record not found' },
  member_not_found: { status: 404, title: 'Member not found' },
  invitation_not_found: { status: 404, title: 'Invitation not found' },
  function_not_found: { status: 404, title: 'Function not found' },
  trigger_not_found: { status: 404, title: 'Trigger not found' },
  delivery_not_found: { status: 404, title: 'Delivery not found' },
  // 409
  slug_taken: { status: 409, title: 'Workspace slug is already taken' },
  identity_provider_taken: { status: 409, title: 'This issuer is already trusted for this organization' },
  identity_provider_name_taken: {
    status: 409,
    title: 'This workspace already has an identity provider with that name',
  },
  conflict: { status: 409, title: 'Conflicting change' },
  policy_name_taken: { status: 409, title: 'This workspace already has a policy with that name' },
  policy_tests_failed: { status: 409, title: 'The change would make stored policy tests fail' },
  structure_name_taken: { status: 409, title: 'This workspace already has a structure with that name' },
  structure_change_breaks_records: { status: 409, title: 'The change would leave stored records invalid' },
  structure_has_records: { status: 409, title: 'The structure still has records' },
  structure_in_use: { status: 409, title: 'Other structures reference this structure' },
  import_target_not_empty: { status: 409, title: 'The workspace to import into is not empty' },
  import_conflict: { status: 409, title: 'An import line conflicts with data outside the workspace' },
  member_exists: { status: 409, title: 'This user is already a member of the workspace' },
  last_admin: { status: 409, title: 'The last member who can manage members cannot be removed or demoted' },
  invitation_used: { status: 409, title: 'The invitation has already been accepted' },
  invitation_revoked: { status: 409, title: 'The invitation was revoked' },
  invitation_not_pending: { status: 409, title: 'Only a pending invitation can be revoked' },
  subscription_exists: { status: 409, title: 'The workspace already has a subscription' },
  too_many_streams: { status: 429, title: 'Too many event streams are open' },
  api_quota_exceeded: { status: 429, title: "The plan's monthly API calls are spent" },
  invalid_last_event_id: { status: 400, title: 'Last-Event-ID is not an event id of this stream' },
  function_name_taken: { status: 409, title: 'This workspace already has a function with that name' },
  trigger_name_taken: { status: 409, title: 'This workspace already has a trigger with that name' },
  trigger_not_webhook: { status: 409, title: 'Only a webhook trigger has a signing secret' },
  trigger_disabled: { status: 409, title: 'The trigger is disabled' },
  delivery_pending: { status: 409, title: 'The delivery is still pending' },
  // 410
  invitation_expired: { status: 410, title: 'The invitation has expired' },
  // 412
  precondition_failed: { status: 412, title: 'The record has changed since the version named in If-Match' },
  // 413, 415
  payload_too_large: { status: 413, title: 'Request body is too large' },
  import_line_too_long: { status: 413, title: 'An import line is longer than an import line may be' },
  unsupported_media_type: { status: 415, title: 'Unsupported content type' },
  // 5xx
  internal: { status: 500, title: 'Internal server error' },
  database_unavailable: { status: 503, title: 'Database unavailable' },
  shutting_down: { status: 503, title: 'Shutting down' },
  sandbox_busy: { status: 503, title: 'No function sandbox is free; retry shortly' },
  identity_provider_unavailable: { status: 503, title: "Identity provider's keys could not be fetched" },
  billing_provider_error: { status: 502, title: 'Stripe refused or did not answer the request' },
  billing_not_configured: { status: 503, title: 'Billing through Stripe is not configured' },
} as const satisfies Record<string, { status: number; title: string }>;

export type ErrorCode = keyof typeof errorCatalogue;

export interface FieldError {
  /** JSON pointer into the request part named by `in`, e.g. `/slug`. */
  pointer: string;
  in: 'body' | 'query' | 'params' | 'header';
  detail: string;
}

export class ProblemError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly errors: FieldError[] | undefined;
  readonly headers: Record<string, string>;
  /** RFC 9457 extension members, beside the standard ones. */
  readonly extensions: Record<string, unknown>;

  constructor(
    code: ErrorCode,
    detail?: string,
    options: {
      errors?: FieldError[];
      headers?: Record<string, string>;
      extensions?: Record<string, unknown>;
      cause?: unknown;
    } = {},
  ) {
    // The cause is logged with a 5xx (pino serialises it), never sent.
    super(detail ?? errorCatalogue[code].title, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.errors = options.errors;
    this.headers = options.headers ?? {};
    this.extensions = options.extensions ?? {};
  }
}

export const problemTypeBase = 'https://cordon.dev/problems/';
