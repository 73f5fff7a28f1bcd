import { createHmac } from 'node:crypto';
import { Migrator } from '@mikro-orm/migrations';
import { MikroORM } from '@mikro-orm/postgresql';
import { runMigrations as runQueueMigrations } from 'graphile-worker';
import pg from 'pg';
import type { Logger } from 'pino';
import { servingFunctions, servingGrants, servingSequences } from './grants.ts';
import { migrations } from './migrations/index.ts';
import { queueLogger } from './queue-logger.ts';

export const defaultServingRole = 'cordon_app';

export class DatabaseSetupError extends Error {}

/**
 * The serving role's URL. When none is configured, the role is `cordon_app` on the owner's
 * server, with a password derived from the owner's: every instance derives the same one, and
 * nobody derives it without the owner's password.
 */
export function servingUrl(ownerUrl: string, appUrl: string | undefined): string {
  if (appUrl) return appUrl;
  const url = new URL(ownerUrl);
  if (!url.password) {
    throw new DatabaseSetupError('DATABASE_APP_URL is required when DATABASE_URL carries no password');
  }
  url.username = defaultServingRole;
  url.password = createHmac('sha256', decodeURIComponent(url.password)).update('cordon serving role').digest('hex');
  return url.toString();
}

async function runMigrations(ownerUrl: string, logger: Logger): Promise<string[]> {
  const orm = await MikroORM.init({
    clientUrl: ownerUrl,
    entities: [],
    discovery: { warnWhenNoEntities: false },
    extensions: [Migrator],
    migrations: { migrationsList: migrations, tableName: 'cordon_migrations', snapshot: false, silent: true },
    pool: { min: 0, max: 2 },
    logger: (message) => logger.debug(message),
  });
  try {
    const applied = await orm.migrator.up();
    return applied.map((migration) => migration.name);
  } finally {
    await orm.close(true);
  }
}

async function ensureServingRole(owner: pg.Client, appUrl: string, create: boolean): Promise<string> {
  const url = new URL(appUrl);
  const role = decodeURIComponent(url.username);
  const existing = await owner.query('select 1 from pg_roles where rolname = $1', [role]);
  if (create) {
    const verb = existing.rowCount ? 'alter' : 'create';
    const { rows } = await owner.query<{ statement: string }>(
      `select format('${verb} role %I with login nosuperuser nobypassrls nocreatedb nocreaterole noinherit password %L', $1::text, $2::text) as statement`,
      [role, decodeURIComponent(url.password)],
    );
    for (const { statement } of rows) await owner.query(statement);
  } else if (!existing.rowCount) {
    throw new DatabaseSetupError(`The serving role "${role}" named in DATABASE_APP_URL does not exist`);
  }
  return role;
}

/** In one transaction, so a running instance never sees the moment between revoke and grant. */
async function applyGrants(owner: pg.Client, role: string): Promise<void> {
  await owner.query('begin');
  try {
    await grant(owner, role);
    await owner.query('commit');
  } catch (error) {
    await owner.query('rollback');
    throw error;
  }
}

async function grant(owner: pg.Client, role: string): Promise<void> {
  const quoted = owner.escapeIdentifier(role);
  await owner.query(`revoke all on all tables in schema public from ${quoted}`);
  await owner.query(`revoke all on all functions in schema public from ${quoted}`);
  await owner.query(`grant usage on schema public to ${quoted}`);
  for (const [table, privileges] of Object.entries(servingGrants)) {
    await owner.query(`grant ${privileges.join(', ')} on table ${owner.escapeIdentifier(table)} to ${quoted}`);
  }
  await owner.query(`revoke all on all sequences in schema public from ${quoted}`);
  for (const sequence of servingSequences) {
    await owner.query(`grant usage on sequence ${owner.escapeIdentifier(sequence)} to ${quoted}`);
  }
  for (const signature of servingFunctions) {
    await owner.query(`grant execute on function ${signature} to ${quoted}`);
  }
  await grantJobQueue(owner, quoted);
}

/**
 * The job queue (graphile-worker) keeps its own schema, migrated by the owner; the serving role
 * runs the workers. graphile-worker enables row-level security on its tables without a policy,
 * so only their owner would see a job: the serving role gets a policy of its own on each.
 */
async function grantJobQueue(owner: pg.Client, quoted: string): Promise<void> {
  const tables = ['_private_jobs', '_private_job_queues', '_private_tasks', '_private_known_crontabs'];
  await owner.query(`revoke all on all tables in schema graphile_worker from ${quoted}`);
  await owner.query(`grant usage on schema graphile_worker to ${quoted}`);
  await owner.query(`grant select on graphile_worker.migrations to ${quoted}`);
  for (const table of tables) {
    const name = `graphile_worker.${owner.escapeIdentifier(table)}`;
    await owner.query(`grant select, insert, update, delete on ${name} to ${quoted}`);
    await owner.query(`drop policy if exists cordon_serving_role on ${name}`);
    await owner.query(
      `create policy cordon_serving_role on ${name} for all to ${quoted} using (true) with check (true)`,
    );
  }
}

/** Refuses to serve through a role that could see past row-level security. */
async function assertServingRoleIsConfined(owner: pg.Client, role: string): Promise<void> {
  const { rows } = await owner.query<{ rolsuper: boolean; rolbypassrls: boolean; owned: string }>(
    `select r.rolsuper, r.rolbypassrls,
            (select count(*) from pg_tables t where t.schemaname = 'public' and t.tableowner = r.rolname) as owned
     from pg_roles r where r.rolname = $1`,
    [role],
  );
  const facts = rows[0];
  if (!facts || facts.rolsuper || facts.rolbypassrls || Number(facts.owned) > 0) {
    throw new DatabaseSetupError(
      `Refusing to serve as "${role}": the serving role must not be a superuser, bypass RLS or own tables`,
    );
  }
}

/**
 * Brings the database up to date as its owner and returns the URL requests are served with.
 * An advisory lock keeps two instances starting together from racing each other.
 */
export async function prepareDatabase(
  options: { ownerUrl: string; appUrl: string | undefined },
  logger: Logger,
): Promise<{ appUrl: string; applied: string[] }> {
  const appUrl = servingUrl(options.ownerUrl, options.appUrl);
  const owner = new pg.Client({ connectionString: options.ownerUrl });
  await owner.connect();
  try {
    await owner.query("select pg_advisory_lock(hashtext('cordon:bootstrap'))");
    const role = await ensureServingRole(owner, appUrl, !options.appUrl);
    const applied = await runMigrations(options.ownerUrl, logger);
    await runQueueMigrations({ connectionString: options.ownerUrl, logger: queueLogger(logger) });
    await applyGrants(owner, role);
    await assertServingRoleIsConfined(owner, role);
    if (applied.length) logger.info({ applied }, 'migrations applied');
    return { appUrl, applied };
  } finally {
    await owner.end();
  }
}
