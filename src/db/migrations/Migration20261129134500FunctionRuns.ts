import { Migration } from '@mikro-orm/migrations';

/**
 * What a function run's log needs beyond the Events migration: the kind of failure (timeout,
 * memory, error…) beside its message, whether the captured console output was cut at its cap,
 * and durations below a millisecond (a warm run takes one or two).
 */
export class Migration20261129134500FunctionRuns extends Migration {
  override name = 'Migration20261129134500FunctionRuns';

  override up(): void {
    this.addSql(`
      alter table function_runs
        add column error_kind text check (error_kind ~ '^[a-z_]{1,32}$'),
        add column logs_truncated boolean not null default false,
        alter column duration_ms type double precision,
        add constraint function_runs_failure_kind check ((status = 'failed') = (error_kind is not null))`);
  }
}
