import { Migration } from '@mikro-orm/migrations';

/**
 * Every tenant table's keys include `workspace_id`, so the schema can be distributed by
 * `workspace_id` on Citus (docs/scaling.md): a distributed table's primary and unique keys must
 * contain its distribution column, and so must a foreign key between two distributed tables. The
 * tables whose keys did not are moved over here; ids stay unique in practice (UUIDv7 and random
 * UUIDs), and every lookup by id already names the workspace.
 *
 * - `invitations`, `decisions`: (id) → (workspace_id, id). (`policies`, `records`,
 *   `identity_providers` and `policy_versions` moved over in Migration20261201010000WorkspaceScopedIds.)
 * - `billing_events`: (event_id) → (workspace_id, event_id). A Stripe event belongs to one
 *   customer, so to one workspace: applied once per workspace is applied once.
 * - `decision_seals`: a decision's one seal, unique (decision_id) → (workspace_id, decision_id).
 * - `invitations`: the token hash is unique per workspace; the definer function that finds an
 *   invitation's workspace by hash (before any workspace is known) gets a plain index.
 *
 * Two platform-wide unique keys stay as they are, on tables that are reference tables on Citus
 * (test/citus-ready.test.ts lists them with their reasons): an (issuer, org) is bound to one
 * workspace only, and a Stripe customer pays for one workspace only.
 */
export class Migration20261201020000CitusReady extends Migration {
  override name = 'Migration20261201020000CitusReady';

  override up(): void {
    for (const table of ['invitations', 'decisions']) {
      this.addSql(
        `alter table ${table} drop constraint ${table}_pkey, add constraint ${table}_pkey primary key (workspace_id, id)`,
      );
    }

    this.addSql(`
      alter table billing_events drop constraint billing_events_pkey,
        add constraint billing_events_pkey primary key (workspace_id, event_id)`);
    this.addSql(`
      alter table decision_seals drop constraint decision_seals_decision_id_key,
        add constraint decision_seals_decision_id_key unique (workspace_id, decision_id)`);

    this.addSql(`
      alter table invitations drop constraint invitations_token_hash_key,
        add constraint invitations_token_hash_key unique (workspace_id, token_hash)`);
    this.addSql('create index invitations_token_hash_idx on invitations (token_hash)');
  }
}
