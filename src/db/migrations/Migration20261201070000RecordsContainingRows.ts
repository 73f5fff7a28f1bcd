import { Migration } from '@mikro-orm/migrations';

/**
 * The GIN index's candidates for a list page as whole rows, not ids. A page that asked for ids
 * (`cordon_records_containing`) fetched every candidate twice, once to recheck the containment
 * here and once more by primary key to filter and sort it: half the time of a sparse page (2,000
 * candidates: 20 ms). Like the ids' function, it runs the containment as the owner, in the current
 * scope's workspace only — the rows row-level security shows the caller there — and the caller
 * applies its permission and filter conditions to them as to any other rows.
 *
 * `cordon_records_containing` stays for instances still running the code before this one.
 */
export class Migration20261201070000RecordsContainingRows extends Migration {
  override name = 'Migration20261201070000RecordsContainingRows';

  override up(): void {
    this.addSql(`
      create function cordon_records_containing_rows(target_structure text, documents jsonb[])
        returns setof records language plpgsql stable security definer set search_path = public, pg_temp
        as $$
        begin
          return query execute
            'select r.* from records r
             where r.workspace_id = cordon_current_workspace() and r.structure = $1 and r.data @> any ($2)'
            using target_structure, documents;
        end $$`);
    this.addSql('revoke all on function cordon_records_containing_rows(text, jsonb[]) from public');
  }
}
