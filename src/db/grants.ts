/**
 * What the serving role may do, table by table. Applied after every migration run, so the
 * grants always match the code that is about to serve. Anything not listed is not granted.
 */
export const servingGrants: Record<string, readonly string[]> = {
  workspaces: ['select', 'insert', 'update', 'delete'],
  policies: ['select', 'insert', 'update', 'delete'],
  members: ['select', 'insert', 'update', 'delete'],
  records: ['select', 'insert', 'update', 'delete'],
  // Kept by triggers on records, in the transaction of the records they count.
  record_counts: ['select', 'insert', 'update'],
  identity_providers: ['select', 'insert', 'update', 'delete'],
  policy_versions: ['select', 'insert'],
  // One stored test suite per workspace, replaced in place; it goes with its workspace.
  policy_tests: ['select', 'insert', 'update'],
  structures: ['select', 'insert', 'update', 'delete'],
  invitations: ['select', 'insert', 'update'],
  // The event log is append-only for the serving role; retention deletes through a definer function.
  events: ['select', 'insert'],
  event_progress: ['select', 'insert', 'update'],
  triggers: ['select', 'insert', 'update', 'delete'],
  trigger_secrets: ['select', 'insert', 'update', 'delete'],
  // The delivery log: rows move from pending to delivered or failed; attempts are only appended.
  deliveries: ['select', 'insert', 'update'],
  delivery_attempts: ['select', 'insert'],
  functions: ['select', 'insert', 'update', 'delete'],
  // Plans are assigned (and, later, subscriptions applied) in place; the row goes with its workspace.
  workspace_billing: ['select', 'insert', 'update'],
  // API calls per month: each flush adds its delta to the month's row.
  api_usage: ['select', 'insert', 'update'],
  // Stripe webhook events applied, by id: written once with their effect, never changed.
  billing_events: ['select', 'insert'],
  function_runs: ['select', 'insert'],
  // Job-queue workers alive (platform, not tenant rows): a stale one's jobs are released.
  worker_heartbeats: ['select', 'insert', 'update', 'delete'],
  // The decision log is append-only: insert and read, never update or delete (a trigger too).
  decisions: ['select', 'insert'],
  decision_seals: ['select', 'insert'],
  decision_checkpoints: ['select', 'insert'],
  // How far the sealer has sealed each workspace: it moves forward, so it is updated in place.
  decision_seal_progress: ['select', 'insert', 'update'],
  // Each instance records the public half of its signing key at start; earlier keys are kept.
  decision_signing_keys: ['select', 'insert'],
};

// record_insert_positions: drawn by the records insert trigger, read by a create's limits check.
export const servingSequences: readonly string[] = ['decisions_position_seq', 'events_seq', 'record_insert_positions'];

export const servingFunctions: readonly string[] = [
  'cordon_current_workspace()',
  'cordon_workspace_counts(uuid[])',
  'cordon_workspaces_with_unsealed_decisions()',
  'cordon_purge_decision_log(uuid)',
  'cordon_invitation_workspace(bytea)',
  'cordon_workspaces_with_pending_events(text)',
  'cordon_purge_expired(timestamptz, timestamptz, integer)',
  'cordon_purge_events(uuid)',
  'cordon_workspace_plans(uuid[])',
  'cordon_records_under_limits(uuid, text, bigint, boolean, bigint, boolean)',
  'cordon_workspace_of_stripe_customer(text)',
  'cordon_stripe_customers()',
  'cordon_unreported_api_usage(date, date)',
  'cordon_billing_overview()',
  'cordon_platform_totals(timestamptz)',
  'cordon_records_containing(text, jsonb[])',
  'cordon_records_containing_rows(text, jsonb[], integer)',
  'cordon_purge_billing_events(timestamptz, integer)',
];
