import { Migration } from '@mikro-orm/migrations';

/**
 * How far each workspace's decisions are sealed. Positions are taken at insert and transactions
 * commit out of order, so the sealer does not trust a position until it is final: it takes the
 * workspace's decision gate (every decision insert holds it shared, from before its rows take
 * their positions to the end of its transaction) exclusively for a moment, reads the position
 * sequence, and may then seal that workspace through that position, recording it here.
 *
 * A workspace without a row here was sealed by the windowed sealer, if at all: its first pass
 * starts just before its oldest unsealed decision, so a decision that sealer missed is sealed once.
 */
export class Migration20261129010000SealProgress extends Migration {
  override name = 'Migration20261129010000SealProgress';

  override up(): void {
    this.addSql(`
      create table decision_seal_progress (
        workspace_id uuid primary key references workspaces (id) on delete cascade,
        sealed_through bigint not null check (sealed_through >= 0)
      )`);
    this.addSql('alter table decision_seal_progress enable row level security');
    this.addSql(`
      create policy decision_seal_progress_workspace_scope on decision_seal_progress
        using (workspace_id = cordon_current_workspace())
        with check (workspace_id = cordon_current_workspace())`);

    // The workspaces with a decision past their progress: one probe of (workspace_id, position)
    // per workspace, whatever the size of the log. Every second, on every instance.
    this.addSql(`
      create function cordon_workspaces_with_unsealed_decisions()
        returns table (workspace_id uuid)
        language sql stable security definer set search_path = public, pg_temp
        as $$
          select w.id
          from workspaces w
          left join decision_seal_progress p on p.workspace_id = w.id
          cross join lateral (
            select 1 from decisions d
            where d.workspace_id = w.id and d.position > coalesce(p.sealed_through, 0)
            limit 1) unsealed
        $$`);
    this.addSql('revoke all on function cordon_workspaces_with_unsealed_decisions() from public');

    // It scanned every decision for a window of positions, and its window is what missed late commits.
    this.addSql('drop function cordon_workspaces_to_seal(bigint)');
  }
}
