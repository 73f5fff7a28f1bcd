import { Migration } from '@mikro-orm/migrations';

/**
 * Members get an update time; invitations turn an email into a member (only the SHA-256 of the
 * token is kept, one pending invitation per email); the outbox holds events for delivery in the
 * transaction that caused them. The token's owner must read an invitation before it knows the
 * workspace, so a definer function answers that one question by hash, and nothing else.
 */
export class Migration20261125040000Members extends Migration {
  override name = 'Migration20261125040000Members';

  override up(): void {
    this.addSql('alter table members add column updated_at timestamptz not null default now()');
    this.addSql(`alter table members add constraint members_user_id_length check (length(user_id) between 1 and 500)`);

    this.addSql(`
      create table invitations (
        id uuid primary key,
        workspace_id uuid not null references workspaces (id) on delete cascade,
        email text not null check (length(email) between 3 and 320),
        roles text[] not null,
        invited_by text not null,
        token_hash bytea not null constraint invitations_token_hash_key unique,
        status text not null default 'pending' check (status in ('pending', 'accepted', 'revoked')),
        expires_at timestamptz not null,
        created_at timestamptz not null default now(),
        accepted_at timestamptz,
        accepted_by text,
        revoked_at timestamptz
      )`);
    this.addSql(
      `create unique index invitations_pending_email_key on invitations (workspace_id, lower(email)) where status = 'pending'`,
    );
    this.addSql('create index invitations_workspace_idx on invitations (workspace_id, created_at, id)');

    this.addSql(`
      create table outbox_events (
        id uuid primary key,
        workspace_id uuid not null references workspaces (id) on delete cascade,
        topic text not null,
        payload jsonb not null,
        created_at timestamptz not null default now(),
        delivered_at timestamptz
      )`);
    this.addSql('create index outbox_events_undelivered_idx on outbox_events (created_at) where delivered_at is null');

    for (const table of ['invitations', 'outbox_events']) {
      this.addSql(`alter table ${table} enable row level security`);
      this.addSql(`
        create policy ${table}_workspace_scope on ${table}
          using (workspace_id = cordon_current_workspace())
          with check (workspace_id = cordon_current_workspace())`);
    }

    this.addSql(`
      create function cordon_invitation_workspace(hash bytea) returns uuid
        language sql stable security definer set search_path = public, pg_temp
        as $$ select workspace_id from invitations where token_hash = hash $$`);
    this.addSql('revoke all on function cordon_invitation_workspace(bytea) from public');
  }
}
