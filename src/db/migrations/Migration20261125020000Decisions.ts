import { Migration } from '@mikro-orm/migrations';

/**
 * Policy versions, the structures policies may name, and the tamper-evident decision log:
 * decisions are appended, a sealer links them per workspace into a hash chain (decision_seals)
 * and signs checkpoints. The serving role may only insert and read these three tables; a trigger
 * refuses UPDATE and DELETE for everyone, except the cascade of a workspace deletion.
 */
export class Migration20261125020000Decisions extends Migration {
  override name = 'Migration20261125020000Decisions';

  override up(): void {
    this.addSql('alter table workspaces add column policy_set_version bigint not null default 1');

    this.addSql(`
      create table policy_versions (
        policy_id uuid not null,
        workspace_id uuid not null references workspaces (id) on delete cascade,
        version integer not null,
        name text not null,
        description text not null,
        roles text[] not null,
        rules jsonb not null,
        updated_at timestamptz not null,
        updated_by text not null,
        deleted boolean not null default false,
        primary key (policy_id, version)
      )`);
    this.addSql('create index policy_versions_workspace_idx on policy_versions (workspace_id, policy_id)');

    this.addSql(`
      create table structures (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        name text not null check (name ~ '^[A-Z][A-Za-z0-9]{0,63}$'),
        fields jsonb not null default '{}',
        version integer not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (workspace_id, name)
      )`);

    this.addSql(`
      create table decisions (
        id uuid primary key,
        position bigserial not null,
        -- No foreign key: checking it would lock the workspace row on every append. RLS's WITH
        -- CHECK already pins each row to the scope's workspace; a workspace deletion purges its log.
        workspace_id uuid not null,
        at timestamptz not null,
        request_id text not null,
        principal_id text not null,
        principal_roles text[] not null,
        principal_provider text not null,
        action text not null,
        operation text not null check (operation in ('get', 'list', 'create', 'update', 'delete', 'check', 'admin')),
        subject text not null,
        resource_id text,
        fields text[],
        allowed boolean not null,
        policy_id uuid,
        policy_version integer,
        rule_index integer,
        reason text not null,
        latency_micros integer not null,
        ip text,
        user_agent text
      )`);
    this.addSql('create index decisions_workspace_position_idx on decisions (workspace_id, position)');
    // Appends are the hot path: time filters get a BRIN index (nearly free to maintain, rows
    // arrive in time order) instead of another b-tree.
    this.addSql('create index decisions_at_brin on decisions using brin (at)');

    this.addSql(`
      create table decision_seals (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        seq bigint not null check (seq > 0),
        decision_id uuid not null unique,
        decision_position bigint not null,
        prev_hash text not null,
        hash text not null,
        primary key (workspace_id, seq)
      )`);
    this.addSql('create index decision_seals_position_idx on decision_seals (workspace_id, decision_position)');

    this.addSql(`
      create table decision_checkpoints (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        seq bigint not null,
        hash text not null,
        at timestamptz not null,
        key_id text not null,
        signature text not null,
        primary key (workspace_id, seq)
      )`);

    this.addSql(`
      create function cordon_append_only() returns trigger language plpgsql as $$
      begin
        -- Only the log of a workspace that no longer exists may go (its deletion purges it).
        if tg_op = 'DELETE' and not exists (select 1 from workspaces w where w.id = old.workspace_id) then
          return old;
        end if;
        raise exception 'the decision log is append-only: % on % refused', tg_op, tg_table_name
          using errcode = 'insufficient_privilege';
      end $$`);

    for (const table of ['decisions', 'decision_seals', 'decision_checkpoints', 'policy_versions', 'structures']) {
      this.addSql(`alter table ${table} enable row level security`);
      this.addSql(`
        create policy ${table}_workspace_scope on ${table}
          using (workspace_id = cordon_current_workspace())
          with check (workspace_id = cordon_current_workspace())`);
    }
    for (const table of ['decisions', 'decision_seals', 'decision_checkpoints']) {
      this.addSql(`
        create trigger ${table}_append_only before update or delete on ${table}
          for each row execute function cordon_append_only()`);
      this.addSql(
        `create trigger ${table}_no_truncate before truncate on ${table} execute function cordon_append_only()`,
      );
    }

    // The sealer runs for every workspace; RLS rightly hides decisions outside a scope, so the
    // workspaces that have unsealed decisions come from a definer function that returns ids only.
    this.addSql(`
      create function cordon_workspaces_to_seal(recent_window bigint)
        returns table (workspace_id uuid)
        language sql stable security definer set search_path = public, pg_temp
        as $$
          select distinct d.workspace_id
          from decisions d
          where d.position > (select last_value from decisions_position_seq) - recent_window
            and not exists (select 1 from decision_seals s where s.decision_id = d.id)
        $$`);
    this.addSql('revoke all on function cordon_workspaces_to_seal(bigint) from public');

    // Called in the transaction that deleted the workspace; refuses while the workspace exists.
    this.addSql(`
      create function cordon_purge_decision_log(deleted_workspace uuid) returns void
        language plpgsql security definer set search_path = public, pg_temp
        as $$
        begin
          if exists (select 1 from workspaces where id = deleted_workspace) then
            raise exception 'refusing to purge the decision log of an existing workspace';
          end if;
          delete from decisions where workspace_id = deleted_workspace;
        end $$`);
    this.addSql('revoke all on function cordon_purge_decision_log(uuid) from public');
  }
}
