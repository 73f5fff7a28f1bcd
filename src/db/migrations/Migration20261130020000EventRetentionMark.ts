import { Migration } from '@mikro-orm/migrations';

/**
 * How far retention has deleted each workspace's events: the highest `seq` it deleted, kept as the
 * progress of the consumer `retention` in `event_progress`. A realtime stream resuming at N has
 * lost events exactly when N is below it (rolled-back transactions leave holes in `seq`, so the
 * lowest `seq` left cannot tell).
 */
export class Migration20261130020000EventRetentionMark extends Migration {
  override name = 'Migration20261130020000EventRetentionMark';

  override up(): void {
    this.addSql(`
      create or replace function cordon_purge_expired(events_before timestamptz, deliveries_before timestamptz, batch integer)
        returns table (events bigint, deliveries bigint, runs bigint)
        language plpgsql security definer set search_path = public, pg_temp
        as $$
        declare e bigint; d bigint; r bigint;
        begin
          with gone as (
            delete from events where ctid in (select ctid from events where at < events_before limit batch)
            returning workspace_id, seq),
          marked as (
            insert into event_progress (workspace_id, consumer, through_seq)
            select workspace_id, 'retention', max(seq) from gone group by workspace_id
            on conflict (workspace_id, consumer) do update set through_seq = excluded.through_seq
            where event_progress.through_seq < excluded.through_seq)
          select count(*) into e from gone;
          delete from deliveries where ctid in (
            select ctid from deliveries where created_at < deliveries_before and status <> 'pending' limit batch);
          get diagnostics d = row_count;
          delete from function_runs where ctid in (select ctid from function_runs where started_at < deliveries_before limit batch);
          get diagnostics r = row_count;
          return query select e, d, r;
        end $$`);
    this.addSql('revoke all on function cordon_purge_expired(timestamptz, timestamptz, integer) from public');
  }
}
