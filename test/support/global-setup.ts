import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { prepareDatabase } from '../../src/db/bootstrap.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../../src/db/embedded.ts';
import { freePort } from './ports.ts';

const database = 'cordon_test';

/** With TEST_DATABASE_URL, a fresh `cordon_test` database on that server replaces any old one. */
async function freshDatabaseOn(serverUrl: string): Promise<string> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(`drop database if exists ${database} with (force)`);
    await client.query(`create database ${database}`);
  } finally {
    await client.end();
  }
  const url = new URL(serverUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

export default async function globalSetup(): Promise<void> {
  const logger = pino({ level: 'warn' });
  let ownerUrl: string;
  if (process.env.TEST_DATABASE_URL) {
    ownerUrl = await freshDatabaseOn(process.env.TEST_DATABASE_URL);
  } else {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-test-'));
    await chmod(dataDir, 0o755); // the embedded server runs as `postgres` when we are root
    const embedded: EmbeddedDatabase = await startEmbeddedPostgres(
      { dataDir, port: await freePort(), database, persistent: false },
      logger,
    );
    (globalThis as { cordonEmbedded?: EmbeddedDatabase }).cordonEmbedded = embedded;
    ownerUrl = embedded.url;
  }
  const { appUrl } = await prepareDatabase({ ownerUrl, appUrl: undefined }, logger);
  process.env.CORDON_TEST_OWNER_URL = ownerUrl;
  process.env.CORDON_TEST_APP_URL = appUrl;
}
