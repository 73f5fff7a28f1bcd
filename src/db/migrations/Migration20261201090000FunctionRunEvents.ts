import { Migration } from '@mikro-orm/migrations';

/**
 * A run keeps the event it ran on (what `run(event)` received), as PRODUCT.md's run log promises:
 * a trigger's delivery keeps a copy too, but a hand-invoked run has no delivery, and the event
 * log itself is kept for hours, the runs for days. Null for runs logged before.
 */
export class Migration20261201090000FunctionRunEvents extends Migration {
  override name = 'Migration20261201090000FunctionRunEvents';

  override up(): void {
    this.addSql('alter table function_runs add column event jsonb');
  }
}
