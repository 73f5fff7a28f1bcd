import { Migration } from '@mikro-orm/migrations';

/**
 * Workspaces and the first tenant tables. Every tenant table carries `workspace_id` and an RLS
 * policy keyed on the per-transaction setting `cordon.workspace_id`; the serving role owns no
 * table, so the policy always applies to it.
 */
export class Migration20261125000000Foundation extends Migration {
  override name = 'Migration20261125000000Foundation';

  override up(): void {
    this.addSql(`
      create or replace function cordon_current_workspace() returns uuid
        language sql stable parallel safe
        as $$ select nullif(current_setting('cordon.workspace_id', true), '')::uuid $$`);

    this.addSql(`
      create table workspaces (
        id uuid primary key,
        slug text not null constraint workspaces_slug_key unique
          check (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
        name text not null check (length(name) between 1 and 200),
        plan text not null default 'free',
        status text not null default 'active' check (status in ('active', 'suspended')),
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now()
      )`);

    this.addSql(`
      create table policies (
        id uuid primary key,
        workspace_id uuid not null references workspaces (id) on delete cascade,
        name text not null,
        description text not null default '',
        roles text[] not null default '{}',
        rules jsonb not null,
        version integer not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        updated_by text not null,
        constraint policies_workspace_name_key unique (workspace_id, name)
      )`);

    this.addSql(`
      create table members (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        user_id text not null,
        email text,
        roles text[] not null default '{}',
        invited_by text,
        joined_at timestamptz not null default now(),
        primary key (workspace_id, user_id)
      )`);

    this.addSql(`
      create table records (
        id uuid primary key,
        workspace_id uuid not null references workspaces (id) on delete cascade,
        structure text not null,
        data jsonb not null,
        created_by text not null,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        version integer not null default 1
      )`);
    this.addSql('create index records_workspace_idx on records (workspace_id, structure, created_at, id)');

    for (const table of ['policies', 'members', 'records']) {
      this.addSql(`alter table ${table} enable row level security`);
      this.addSql(`
        create policy ${table}_workspace_scope on ${table}
          using (workspace_id = cordon_current_workspace())
          with check (workspace_id = cordon_current_workspace())`);
    }

    // The platform admin's workspace list shows counts across tenants; RLS rightly hides those
    // rows from the serving role, so the counts come from a definer function that returns
    // numbers only.
    this.addSql(`
      create function cordon_workspace_counts(ids uuid[])
        returns table (workspace_id uuid, member_count bigint, record_count bigint)
        language sql stable security definer set search_path = public, pg_temp
        as $$
          select w.id,
                 (select count(*) from members m where m.workspace_id = w.id),
                 (select count(*) from records r where r.workspace_id = w.id)
          from unnest(ids) as w(id)
        $$`);
    this.addSql('revoke all on function cordon_workspace_counts(uuid[]) from public');
  }
}
