import { Migration } from '@mikro-orm/migrations';

/**
 * Records, policies (and their versions) and identity providers are keyed within their workspace,
 * as triggers, functions and structures already are: an export keeps their ids, so a workspace
 * restored beside its source (a copy of a tenant in the same database) holds the same ids. Every
 * statement on these tables already names the workspace, which leads the new keys.
 */
export class Migration20261201010000WorkspaceScopedIds extends Migration {
  override name = 'Migration20261201010000WorkspaceScopedIds';

  override up(): void {
    this.addSql(`
      alter table records drop constraint records_pkey,
        add constraint records_pkey primary key (workspace_id, id)`);
    this.addSql(`
      alter table policies drop constraint policies_pkey,
        add constraint policies_pkey primary key (workspace_id, id)`);
    this.addSql(`
      alter table policy_versions drop constraint policy_versions_pkey,
        add constraint policy_versions_pkey primary key (workspace_id, policy_id, version)`);
    // The new key leads with (workspace_id, policy_id): this index is its prefix.
    this.addSql('drop index policy_versions_workspace_idx');
    this.addSql(`
      alter table identity_providers drop constraint identity_providers_pkey,
        add constraint identity_providers_pkey primary key (workspace_id, id)`);
  }
}
