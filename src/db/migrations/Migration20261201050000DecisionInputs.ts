import { Migration } from '@mikro-orm/migrations';

/**
 * What a decision was made on, kept with it so that it can be replayed against draft policies
 * (`POST …/policies/what-if`): the record document(s) the conditions saw and the principal
 * attributes the workspace's placeholders used, within a byte budget (src/policy/decision-inputs.ts).
 * Null for decisions logged before this column, and for those that needed nothing beyond the row.
 * Part of the hash chain when present (docs/decision-log.md); the table stays append-only.
 */
export class Migration20261201050000DecisionInputs extends Migration {
  override name = 'Migration20261201050000DecisionInputs';

  override up(): void {
    this.addSql('alter table decisions add column inputs jsonb');
  }
}
