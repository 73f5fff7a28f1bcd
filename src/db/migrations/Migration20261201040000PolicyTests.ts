import { Migration } from '@mikro-orm/migrations';

/**
 * A workspace's stored policy test suite: one per workspace, run inside every policy change's
 * transaction (under the lock policy changes already take), so a change that breaks a test is
 * refused before it commits.
 */
export class Migration20261201040000PolicyTests extends Migration {
  override name = 'Migration20261201040000PolicyTests';

  override up(): void {
    this.addSql(`
      create table policy_tests (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        suite jsonb not null check (jsonb_typeof(suite) = 'object'),
        updated_at timestamptz not null default now(),
        updated_by text not null,
        primary key (workspace_id)
      )`);
    this.addSql('alter table policy_tests enable row level security');
    this.addSql(`
      create policy policy_tests_workspace_scope on policy_tests
        using (workspace_id = cordon_current_workspace())
        with check (workspace_id = cordon_current_workspace())`);
  }
}
