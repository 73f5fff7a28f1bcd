import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { entities } from '../src/app.ts';
import { parseConfig } from '../src/config.ts';
import { prepareDatabase } from '../src/db/bootstrap.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { Database } from '../src/db/database.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { freePort } from '../test/support/ports.ts';

/** A throwaway embedded database for one bench run, with its postmaster's pid (to account for its CPU). */
export async function benchDatabase(): Promise<{
  ownerUrl: string;
  appUrl: string;
  postmaster: number | undefined;
  stop: () => Promise<void>;
}> {
  const logger = pino({ level: 'warn' });
  const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-bench-'));
  await chmod(dataDir, 0o755);
  const embedded = await startEmbeddedPostgres(
    { dataDir, port: await freePort(), database: 'cordon_bench', persistent: false },
    logger,
  );
  const { appUrl } = await prepareDatabase({ ownerUrl: embedded.url, appUrl: undefined }, logger);
  const postmaster = await readFile(path.join(dataDir, 'pg', 'postmaster.pid'), 'utf8').then(
    (text) => Number(text.split('\n', 1)[0]),
    () => undefined,
  );
  return { ownerUrl: embedded.url, appUrl, postmaster, stop: () => embedded.stop() };
}

/**
 * What every suite serves its in-process app with: a silent logger, the test configuration with
 * a fresh admin key, the serving role's pool, and a change bus that listens to nothing.
 */
export async function benchServing(appUrl: string, poolSize?: number) {
  const logger = pino({ level: 'silent' });
  const config = { ...parseConfig({ NODE_ENV: 'test' }), adminApiKey: randomBytes(32).toString('hex') };
  const served = await Database.open({ url: appUrl, poolSize: poolSize ?? config.database.poolSize, entities }, logger);
  return { logger, config, served, changes: new ChangeBus(undefined, logger) };
}
