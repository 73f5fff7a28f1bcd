import { chmod, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { prepareDatabase } from '../src/db/bootstrap.ts';
import { startEmbeddedPostgres } from '../src/db/embedded.ts';
import { freePort } from '../test/support/ports.ts';

/** A throwaway database for one bench run: BENCH_DATABASE_URL's server, or an embedded one. */
export async function benchDatabase(): Promise<{ ownerUrl: string; appUrl: string; stop: () => Promise<void> }> {
  const logger = pino({ level: 'warn' });
  const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-bench-'));
  await chmod(dataDir, 0o755);
  const embedded = await startEmbeddedPostgres(
    { dataDir, port: await freePort(), database: 'cordon_bench', persistent: false },
    logger,
  );
  const { appUrl } = await prepareDatabase({ ownerUrl: embedded.url, appUrl: undefined }, logger);
  return { ownerUrl: embedded.url, appUrl, stop: () => embedded.stop() };
}
