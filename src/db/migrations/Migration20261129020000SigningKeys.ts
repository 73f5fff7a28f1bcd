import { Migration } from '@mikro-orm/migrations';

/**
 * The public half of every key that signed decision checkpoints, so a rotated
 * `DECISION_SIGNING_KEY` leaves earlier checkpoints verifiable. A platform table (keys sign every
 * workspace's checkpoints): no workspace_id, no RLS. Keys are kept: the serving role may insert
 * and read, and a trigger refuses UPDATE, DELETE and TRUNCATE to everyone.
 */
export class Migration20261129020000SigningKeys extends Migration {
  override name = 'Migration20261129020000SigningKeys';

  override up(): void {
    this.addSql(`
      create table decision_signing_keys (
        key_id text primary key,
        public_key_pem text not null,
        first_used_at timestamptz not null default now()
      )`);
    this.addSql(`
      create function cordon_signing_keys_kept() returns trigger language plpgsql as $$
      begin
        raise exception 'decision signing keys are kept: % on % refused', tg_op, tg_table_name
          using errcode = 'insufficient_privilege';
      end $$`);
    this.addSql(`
      create trigger decision_signing_keys_kept before update or delete on decision_signing_keys
        for each row execute function cordon_signing_keys_kept()`);
    this.addSql(`
      create trigger decision_signing_keys_no_truncate before truncate on decision_signing_keys
        execute function cordon_signing_keys_kept()`);
  }
}
