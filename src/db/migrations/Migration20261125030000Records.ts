import { Migration } from '@mikro-orm/migrations';

/**
 * Records belong to a structure of their workspace (deleting a structure takes its records with
 * it), hold a JSON object, and have a GIN index for the containment tests the SQL filter
 * compiles top-level equality into. Descriptions make structures self-documenting.
 */
export class Migration20261125030000Records extends Migration {
  override name = 'Migration20261125030000Records';

  override up(): void {
    this.addSql("alter table structures add column description text not null default ''");
    this.addSql(`
      alter table records
        add constraint records_structure_fkey foreign key (workspace_id, structure)
          references structures (workspace_id, name) on delete cascade,
        add constraint records_data_object check (jsonb_typeof(data) = 'object')`);
    this.addSql('create index records_data_idx on records using gin (data jsonb_path_ops)');
  }
}
