import { Migration } from '@mikro-orm/migrations';

/** BYOT configurations: which issuers a workspace trusts and how their claims map. */
export class Migration20261125010000IdentityProviders extends Migration {
  override name = 'Migration20261125010000IdentityProviders';

  override up(): void {
    this.addSql(`
      create table identity_providers (
        id uuid primary key,
        workspace_id uuid not null references workspaces (id) on delete cascade,
        name text not null,
        type text not null check (type in ('clerk', 'auth0', 'oidc')),
        issuer text not null,
        jwks_uri text,
        jwks jsonb,
        audiences text[] not null default '{}',
        authorized_parties text[] not null default '{}',
        algorithms text[] not null,
        clock_tolerance_seconds integer not null check (clock_tolerance_seconds between 0 and 300),
        org_id text not null,
        claims jsonb not null default '{}',
        role_map jsonb not null default '{}',
        role_source text not null check (role_source in ('claims', 'members', 'both')),
        allow_pending_sessions boolean not null default false,
        version integer not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        check ((jwks_uri is null) <> (jwks is null)),
        constraint identity_providers_workspace_name_key unique (workspace_id, name),
        constraint identity_providers_issuer_org_key unique (issuer, org_id)
      )`);
    this.addSql('alter table identity_providers enable row level security');
    this.addSql(`
      create policy identity_providers_workspace_scope on identity_providers
        using (workspace_id = cordon_current_workspace())
        with check (workspace_id = cordon_current_workspace())`);
  }
}
