import { Migration } from '@mikro-orm/migrations';

/**
 * A position for every record ever inserted, so a create far from its records limit can skip
 * counting (src/features/records/record-limits.ts, `LimitHeadroom`).
 *
 * `record_insert_positions` is one platform-wide sequence that the statement-level insert trigger
 * advances once per inserted row (its `count(nextval(…))` counts the rows and draws their
 * positions in one pass). Sequences are not transactional: the difference between two readings
 * bounds the rows inserted between them, in any workspace, committed or not.
 *
 * `cordon_records_under_limits` gains `inserted_position`: the sequence's last value read after
 * the limits' locks and before the counts' snapshot, so every row missing from the counts either
 * drew a later position or belongs to a transaction that was in flight when the counts were read.
 * (0 when the sequence has no last value: a position read later is then no smaller than the rows
 * drawn since.)
 */
export class Migration20261201060000RecordInsertPositions extends Migration {
  override name = 'Migration20261201060000RecordInsertPositions';

  override up(): void {
    // One value at a time (CACHE 1): a backend's cached values would be drawn after later ones.
    this.addSql('create sequence record_insert_positions as bigint cache 1');
    this.addSql(`
      create or replace function cordon_count_inserted_records() returns trigger
        language plpgsql set search_path = public, pg_temp
        as $$
        begin
          -- count(nextval(…)) is count(*) that also draws one position per row.
          insert into record_counts (workspace_id, structure, shard, records)
            select workspace_id, structure, pg_backend_pid() % 32, count(nextval('record_insert_positions'))
            from inserted_records group by workspace_id, structure
            on conflict (workspace_id, structure, shard) do update set records = record_counts.records + excluded.records;
          return null;
        end $$`);

    this.addSql('drop function cordon_records_under_limits(uuid, text, bigint, boolean, bigint, boolean)');
    this.addSql(`
      create function cordon_records_under_limits(target_workspace uuid, target_structure text,
                                                  structure_bound bigint, structure_exclusive boolean,
                                                  overall_bound bigint, overall_exclusive boolean,
                                                  out structure_count bigint, out overall_count bigint,
                                                  out inserted_position bigint)
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
          inserted_position := coalesce(pg_sequence_last_value('record_insert_positions'), 0);
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
    // The grants are applied again after every migration run (src/db/grants.ts), but until then a
    // running instance of the previous version must not fail its inserts: the roles that insert
    // records get the sequence and the function here, in the migration's transaction.
    this.addSql(`
      do $$
      declare
        inserter regrole;
      begin
        for inserter in
          select distinct acl.grantee::regrole from pg_class c cross join lateral aclexplode(c.relacl) acl
          where c.oid = 'records'::regclass and acl.privilege_type = 'INSERT' and acl.grantee not in (0, c.relowner)
        loop
          execute format('grant usage on sequence record_insert_positions to %s', inserter);
          execute format('grant execute on function cordon_records_under_limits(uuid, text, bigint, boolean, bigint, boolean) to %s', inserter);
        end loop;
      end $$`);
  }
}
