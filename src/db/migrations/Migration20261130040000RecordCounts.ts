import { Migration } from '@mikro-orm/migrations';

/** Counter rows per (workspace, structure): a transaction adds to the one its backend picks. */
const shards = 32;

/**
 * Record counts kept by the database, so a records limit reads a few counter rows instead of
 * counting up to the limit (which cost ~2 ms at 10,000 records and grew with the workspace).
 *
 * `record_counts` holds, per workspace and structure, `shards` rows whose sum is the number of
 * records. Statement-level triggers on `records` add each statement's inserts and deletes to the
 * row of the inserting backend (`pg_backend_pid() % shards`), so concurrent creates in one
 * workspace rarely wait on one another's counter row, and a bulk insert (an import) adds once per
 * structure. The counts change in the transaction of the rows they count: a committed sum is the
 * number of committed records, which is what `cordon_records_under_limits` compares under its
 * advisory lock (the locking that makes limits race-safe is unchanged). Deletes of records whose
 * structure is going too (a structure or workspace deleted) leave the counters alone: the rows
 * cascade away with the structure.
 */
export class Migration20261130040000RecordCounts extends Migration {
  override name = 'Migration20261130040000RecordCounts';

  override up(): void {
    this.addSql(`
      create table record_counts (
        workspace_id uuid not null,
        structure text not null,
        shard smallint not null check (shard >= 0 and shard < ${shards}),
        records bigint not null,
        primary key (workspace_id, structure, shard),
        foreign key (workspace_id, structure) references structures (workspace_id, name) on delete cascade
      )`);
    this.addSql('alter table record_counts enable row level security');
    this.addSql(`
      create policy record_counts_workspace_scope on record_counts
        using (workspace_id = cordon_current_workspace())
        with check (workspace_id = cordon_current_workspace())`);
    this.addSql(`
      insert into record_counts (workspace_id, structure, shard, records)
        select workspace_id, structure, 0, count(*) from records group by workspace_id, structure`);

    this.addSql(`
      create function cordon_count_inserted_records() returns trigger
        language plpgsql set search_path = public, pg_temp
        as $$
        begin
          insert into record_counts (workspace_id, structure, shard, records)
            select workspace_id, structure, pg_backend_pid() % ${shards}, count(*)
            from inserted_records group by workspace_id, structure
            on conflict (workspace_id, structure, shard) do update set records = record_counts.records + excluded.records;
          return null;
        end $$`);
    this.addSql(`
      create function cordon_count_deleted_records() returns trigger
        language plpgsql set search_path = public, pg_temp
        as $$
        begin
          insert into record_counts (workspace_id, structure, shard, records)
            select d.workspace_id, d.structure, pg_backend_pid() % ${shards}, -count(*)
            from deleted_records d
            where exists (select 1 from structures s where s.workspace_id = d.workspace_id and s.name = d.structure)
            group by d.workspace_id, d.structure
            on conflict (workspace_id, structure, shard) do update set records = record_counts.records + excluded.records;
          return null;
        end $$`);
    this.addSql(`
      create trigger records_counted_on_insert after insert on records
        referencing new table as inserted_records
        for each statement execute function cordon_count_inserted_records()`);
    this.addSql(`
      create trigger records_counted_on_delete after delete on records
        referencing old table as deleted_records
        for each statement execute function cordon_count_deleted_records()`);

    // One call for both limits (a create's structure, then "*"), with the same locking as before:
    // each limit's advisory lock in that order, then one read of the counters (a fresh snapshot,
    // this being VOLATILE). A null bound is no limit: no lock, and 0 for its count.
    this.addSql('drop function cordon_records_under_limit(uuid, text, bigint, boolean)');
    this.addSql(`
      create function cordon_records_under_limits(target_workspace uuid, target_structure text,
                                                  structure_bound bigint, structure_exclusive boolean,
                                                  overall_bound bigint, overall_exclusive boolean,
                                                  out structure_count bigint, out overall_count bigint)
        language plpgsql volatile set search_path = public, pg_temp
        as $$
        declare
          structure_key bigint := hashtextextended('cordon:records:' || target_workspace::text || ':' || target_structure, 0);
          overall_key bigint := hashtextextended('cordon:records:' || target_workspace::text || ':*', 0);
        begin
          if structure_bound is not null then
            if structure_exclusive then
              perform pg_advisory_xact_lock(structure_key);
            else
              perform pg_advisory_xact_lock_shared(structure_key);
            end if;
          end if;
          if overall_bound is not null then
            if overall_exclusive then
              perform pg_advisory_xact_lock(overall_key);
            else
              perform pg_advisory_xact_lock_shared(overall_key);
            end if;
          end if;
          select coalesce(sum(c.records) filter (where c.structure = target_structure), 0),
                 coalesce(sum(c.records), 0)
            into structure_count, overall_count
            from record_counts c where c.workspace_id = target_workspace;
          if structure_bound is null then
            structure_count := 0;
          end if;
          if overall_bound is null then
            overall_count := 0;
          end if;
        end $$`);
    this.addSql(
      'revoke all on function cordon_records_under_limits(uuid, text, bigint, boolean, bigint, boolean) from public',
    );

    this.addSql(`
      create or replace function cordon_workspace_counts(ids uuid[])
        returns table (workspace_id uuid, member_count bigint, record_count bigint)
        language sql stable security definer set search_path = public, pg_temp
        as $$
          select w.id,
                 (select count(*) from members m where m.workspace_id = w.id),
                 (select coalesce(sum(c.records), 0)::bigint from record_counts c where c.workspace_id = w.id)
          from unnest(ids) as w(id)
        $$`);
  }
}
