import { Migration } from '@mikro-orm/migrations';

/**
 * The GIN index's candidates for a list page as whole rows, not ids, and at most `max_rows` of
 * them. A page that asked for ids (`cordon_records_containing`) fetched every candidate twice,
 * once to recheck the containment here and once more by primary key to filter and sort it: half
 * the time of a sparse page (2,000 candidates: 20 ms). The bound lets a page find out that the
 * candidates are too many (a broad rule's) without fetching them all.
 *
 * Like the ids' function, it runs the containment as the owner, which row-level security does
 * not restrict, so its own condition is what keeps the rows to the current scope's workspace:
 * `workspace_id = cordon_current_workspace()`, the condition of the `records` policy (no scope,
 * no rows). A policy added to `records` must be added here too; test/list-steps.test.ts checks
 * that the function returns the scope's rows and nothing outside a scope.
 *
 * `cordon_records_containing` stays for instances still running the code before this one.
 */
export class Migration20261201070000RecordsContainingRows extends Migration {
  override name = 'Migration20261201070000RecordsContainingRows';

  override up(): void {
    this.addSql(`
      create function cordon_records_containing_rows(target_structure text, documents jsonb[], max_rows integer)
        returns setof records language plpgsql stable security definer set search_path = public, pg_temp
        as $$
        begin
          return query execute
            'select r.* from records r
             where r.workspace_id = cordon_current_workspace() and r.structure = $1 and r.data @> any ($2)
             limit $3'
            using target_structure, documents, max_rows;
        end $$`);
    this.addSql('revoke all on function cordon_records_containing_rows(text, jsonb[], integer) from public');
  }
}
