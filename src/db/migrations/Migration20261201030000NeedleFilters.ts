import { Migration } from '@mikro-orm/migrations';

/**
 * Candidates for a list filter's top-level equality, from the GIN index on records' data.
 *
 * The serving role reads records under row-level security, and PostgreSQL then neither uses a
 * non-leakproof operator such as `@>` as an index condition ahead of the policy nor shows the
 * planner the column's statistics for it: a filter like `{ title: "Task 777" }` scanned the whole
 * structure in `created_at` order, whether it matched one record or half of them. This function
 * runs the containment as the owner, in the current scope's workspace only (the same rows the
 * caller may read there), planned for the documents given (EXECUTE), and returns ids; the caller
 * applies its permission and filter conditions to those rows as to any other.
 */
export class Migration20261201030000NeedleFilters extends Migration {
  override name = 'Migration20261201030000NeedleFilters';

  override up(): void {
    this.addSql(`
      create function cordon_records_containing(target_structure text, documents jsonb[])
        returns setof uuid language plpgsql stable security definer set search_path = public, pg_temp
        as $$
        begin
          return query execute
            'select r.id from records r
             where r.workspace_id = cordon_current_workspace() and r.structure = $1 and r.data @> any ($2)'
            using target_structure, documents;
        end $$`);
    this.addSql('revoke all on function cordon_records_containing(text, jsonb[]) from public');
  }
}
