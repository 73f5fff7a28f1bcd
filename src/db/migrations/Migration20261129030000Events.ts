import { Migration } from '@mikro-orm/migrations';

/**
 * Record events, triggers and functions (issue #12).
 *
 * - `events`: written in the transaction of the change that caused it. `seq` comes from a
 *   sequence at insert, under the workspace's event gate (db/gate.ts), so a reader that reads only
 *   up to the gate's final position never later finds an event below one it has seen. Like the
 *   decision log it has no foreign key (checking one would lock the workspace row on every
 *   append); a workspace deletion purges it. Kept `EVENT_RETENTION_HOURS`.
 * - `event_progress`: how far a consumer (the trigger dispatcher) has read a workspace's events.
 * - `triggers`, `trigger_secrets` (sealed signing secrets, several during a rotation),
 *   `deliveries` (one per trigger and event: the delivery log, in `seq` order per stream) and
 *   `delivery_attempts` (one per attempt), kept `DELIVERY_RETENTION_DAYS`.
 * - `functions` and `function_runs`.
 * - `worker_heartbeats`: job-queue workers alive, so jobs locked by a killed one are released.
 * - `outbox_events` is folded into `events` (invitation.created) and dropped.
 */
export class Migration20261129030000Events extends Migration {
  override name = 'Migration20261129030000Events';

  override up(): void {
    this.addSql('create sequence events_seq cache 1');
    this.addSql(`
      create table events (
        workspace_id uuid not null,
        seq bigint not null default nextval('events_seq'),
        id uuid not null,
        type text not null check (type ~ '^[a-z][a-z_.]{1,62}$'),
        structure text,
        record_id uuid,
        data jsonb not null,
        actor jsonb not null,
        request_id text,
        at timestamptz not null default now(),
        -- How many function runs led to this event (0: a user's or the admin's change).
        depth smallint not null default 0,
        -- False for the writes of a function invoked by hand: they fire no trigger.
        fire_triggers boolean not null default true,
        primary key (workspace_id, seq)
      )`);
    this.addSql('alter sequence events_seq owned by events.seq');
    this.addSql('create index events_at_brin on events using brin (at)');

    this.addSql(`
      create table event_progress (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        consumer text not null,
        through_seq bigint not null,
        primary key (workspace_id, consumer)
      )`);

    this.addSql(`
      create table triggers (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        id uuid not null,
        name text not null,
        events text[] not null,
        structure text,
        condition jsonb,
        enabled boolean not null default true,
        action jsonb not null,
        disabled_reason text,
        version integer not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (workspace_id, id),
        constraint triggers_workspace_name_key unique (workspace_id, name)
      )`);

    this.addSql(`
      create table trigger_secrets (
        workspace_id uuid not null,
        trigger_id uuid not null,
        id uuid not null,
        secret text not null,
        created_at timestamptz not null default now(),
        expires_at timestamptz,
        primary key (workspace_id, id),
        foreign key (workspace_id, trigger_id) references triggers (workspace_id, id) on delete cascade
      )`);
    this.addSql('create index trigger_secrets_trigger_idx on trigger_secrets (workspace_id, trigger_id)');

    this.addSql(`
      create table deliveries (
        workspace_id uuid not null,
        id uuid not null,
        trigger_id uuid not null,
        event_seq bigint not null,
        event_type text not null,
        -- Deliveries of one stream (a record, or one event) go out one at a time, in seq order.
        stream text not null,
        status text not null default 'pending' check (status in ('pending', 'delivered', 'failed', 'discarded')),
        attempts integer not null default 0,
        next_attempt_at timestamptz,
        last_status_code integer,
        last_error text,
        created_at timestamptz not null default now(),
        finished_at timestamptz,
        primary key (workspace_id, id),
        foreign key (workspace_id, trigger_id) references triggers (workspace_id, id) on delete cascade
      )`);
    this.addSql(
      `create index deliveries_pending_idx on deliveries (workspace_id, trigger_id, stream, event_seq) where status = 'pending'`,
    );
    this.addSql('create index deliveries_trigger_idx on deliveries (workspace_id, trigger_id, created_at, id)');
    this.addSql('create index deliveries_created_brin on deliveries using brin (created_at)');

    this.addSql(`
      create table delivery_attempts (
        workspace_id uuid not null,
        delivery_id uuid not null,
        attempt integer not null,
        at timestamptz not null default now(),
        status_code integer,
        error text,
        response_body text,
        latency_ms integer not null,
        next_attempt_at timestamptz,
        primary key (workspace_id, delivery_id, attempt),
        foreign key (workspace_id, delivery_id) references deliveries (workspace_id, id) on delete cascade
      )`);

    this.addSql(`
      create table functions (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        name text not null check (name ~ '^[a-z][a-z0-9-]{0,62}$'),
        code text not null,
        roles text[] not null default '{}',
        timeout_ms integer not null,
        memory_mb integer not null,
        version integer not null default 1,
        created_at timestamptz not null default now(),
        updated_at timestamptz not null default now(),
        primary key (workspace_id, name)
      )`);

    this.addSql(`
      create table function_runs (
        workspace_id uuid not null references workspaces (id) on delete cascade,
        id uuid not null,
        function_name text not null,
        function_version integer not null,
        trigger_id uuid,
        delivery_id uuid,
        event_seq bigint,
        invoked boolean not null default false,
        status text not null check (status in ('succeeded', 'failed')),
        result jsonb,
        error text,
        logs jsonb not null default '[]',
        duration_ms integer not null,
        started_at timestamptz not null,
        primary key (workspace_id, id)
      )`);
    this.addSql(
      'create index function_runs_function_idx on function_runs (workspace_id, function_name, started_at, id)',
    );
    this.addSql('create index function_runs_started_brin on function_runs using brin (started_at)');

    for (const table of [
      'events',
      'event_progress',
      'triggers',
      'trigger_secrets',
      'deliveries',
      'delivery_attempts',
      'functions',
      'function_runs',
    ]) {
      this.addSql(`alter table ${table} enable row level security`);
      this.addSql(`
        create policy ${table}_workspace_scope on ${table}
          using (workspace_id = cordon_current_workspace())
          with check (workspace_id = cordon_current_workspace())`);
    }

    this.addSql(`
      create table worker_heartbeats (
        pool_id text primary key,
        seen_at timestamptz not null default now()
      )`);

    // invitation.created waited in outbox_events with nobody to deliver it: it becomes an event.
    this.addSql(`
      insert into events (workspace_id, id, type, data, actor, at)
      select workspace_id, id, topic, payload, jsonb_build_object('id', payload ->> 'invitedBy', 'kind', 'user'), created_at
      from outbox_events order by created_at, id`);
    this.addSql('drop table outbox_events');

    // The dispatcher's probe: workspaces with an event past what a consumer has read. One index
    // probe per workspace (the primary key), so its cost grows with tenants, not with the log.
    this.addSql(`
      create function cordon_workspaces_with_pending_events(consumer_name text)
        returns table (workspace_id uuid)
        language sql stable security definer set search_path = public, pg_temp
        as $$
          select w.id from workspaces w
          where exists (
            select 1 from events e
            where e.workspace_id = w.id
              and e.seq > coalesce((select p.through_seq from event_progress p
                                    where p.workspace_id = w.id and p.consumer = consumer_name), 0))
        $$`);
    this.addSql('revoke all on function cordon_workspaces_with_pending_events(text) from public');

    // Retention across every tenant, in batches; answers counts only.
    this.addSql(`
      create function cordon_purge_expired(events_before timestamptz, deliveries_before timestamptz, batch integer)
        returns table (events bigint, deliveries bigint, runs bigint)
        language plpgsql security definer set search_path = public, pg_temp
        as $$
        declare e bigint; d bigint; r bigint;
        begin
          delete from events where ctid in (select ctid from events where at < events_before limit batch);
          get diagnostics e = row_count;
          delete from deliveries where ctid in (
            select ctid from deliveries where created_at < deliveries_before and status <> 'pending' limit batch);
          get diagnostics d = row_count;
          delete from function_runs where ctid in (select ctid from function_runs where started_at < deliveries_before limit batch);
          get diagnostics r = row_count;
          return query select e, d, r;
        end $$`);
    this.addSql('revoke all on function cordon_purge_expired(timestamptz, timestamptz, integer) from public');

    // Called in the transaction that deleted the workspace; refuses while the workspace exists.
    this.addSql(`
      create function cordon_purge_events(deleted_workspace uuid) returns void
        language plpgsql security definer set search_path = public, pg_temp
        as $$
        begin
          if exists (select 1 from workspaces where id = deleted_workspace) then
            raise exception 'refusing to purge the events of an existing workspace';
          end if;
          delete from events where workspace_id = deleted_workspace;
        end $$`);
    this.addSql('revoke all on function cordon_purge_events(uuid) from public');
  }
}
