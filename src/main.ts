import type { Server } from 'node:http';
import { createApp, entities } from './app.ts';
import { Background } from './background.ts';
import type { FunctionRunner } from './features/functions/function-runner.ts';
import type { RealtimeHub } from './features/realtime/realtime-hub.ts';
import { closeGracefully, type Drain } from './http/drain.ts';
import { developmentAdminKey } from './auth/admin-key.ts';
import { developmentIssuerKey, type DevIssuerKey } from './auth/dev-issuer.ts';
import { ConfigError, parseConfig, type Config } from './config.ts';
import { prepareDatabase } from './db/bootstrap.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded.ts';
import { ChangeBus } from './db/changes.ts';
import { Database } from './db/database.ts';
import { EventSecrets } from './events/secrets.ts';
import { Sealer } from './features/decisions/sealer.ts';
import { registerSigningKey } from './features/decisions/signing-keys.ts';
import { developmentSigningKey, signingKeyFromPem, type SigningKey } from './features/decisions/signing.ts';
import { createLogger } from './http/logging.ts';
import { Plans, PlansError } from './policy/plans.ts';
import type { UsageMeter } from './policy/usage-meter.ts';

let config: Config;
let plans: Plans;
try {
  config = parseConfig(process.env);
  // Checked before anything starts: a bad plans file stops the start with one line.
  plans = Plans.load(config.billing.plansFile);
} catch (error) {
  if (!(error instanceof ConfigError) && !(error instanceof PlansError)) throw error;
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
}

const logger = createLogger(config);
let embedded: EmbeddedDatabase | undefined;
let database: Database | undefined;
let background: Background | undefined;
let functions: FunctionRunner | undefined;
let realtime: RealtimeHub | undefined;
let changes: ChangeBus | undefined;
let sealer: Sealer | undefined;
let usage: UsageMeter | undefined;
let drain: Drain | undefined;

async function decisionSigningKey(): Promise<SigningKey> {
  if (config.decisions.signingKeyPem) return signingKeyFromPem(config.decisions.signingKeyPem);
  const generated = await developmentSigningKey(config.dataDir);
  logger.info(
    { file: generated.file, keyId: generated.key.keyId },
    generated.created ? 'generated a decision signing key' : 'using the decision signing key',
  );
  return generated.key;
}

/** Outside production: the key `npm run token` signs with, kept in DATA_DIR beside the admin key. */
async function devIssuerKey(): Promise<DevIssuerKey | undefined> {
  if (config.env === 'production') return undefined;
  const generated = await developmentIssuerKey(config.dataDir);
  logger.info(
    { file: generated.file, keyId: generated.key.publicJwk.kid },
    generated.created ? 'generated a development issuer key' : 'using the development issuer key',
  );
  return generated.key;
}
let server: Server | undefined;

async function start(): Promise<void> {
  let adminApiKey = config.adminApiKey;
  if (!adminApiKey) {
    const generated = await developmentAdminKey(config.dataDir);
    adminApiKey = generated.key;
    logger.info(
      { file: generated.file },
      generated.created ? 'generated a platform admin key' : 'using the platform admin key',
    );
  }

  let ownerUrl = config.database.ownerUrl;
  if (!ownerUrl) {
    embedded = await startEmbeddedPostgres(
      { dataDir: config.dataDir, port: config.database.embeddedPort, database: 'cordon', persistent: true },
      logger,
    );
    ownerUrl = embedded.url;
    logger.info({ port: config.database.embeddedPort }, 'embedded PostgreSQL started');
  }

  const { appUrl } = await prepareDatabase({ ownerUrl, appUrl: config.database.appUrl }, logger);
  database = await Database.open({ url: appUrl, poolSize: config.database.poolSize, entities }, logger);
  changes = new ChangeBus(appUrl, logger);
  await changes.listen();
  const signingKey = await decisionSigningKey();
  await registerSigningKey(database, signingKey);
  sealer = new Sealer(database, signingKey, logger, { intervalMs: config.decisions.sealIntervalMs });
  sealer.start();
  const devIssuer = await devIssuerKey();
  const created = createApp({
    config: { ...config, adminApiKey },
    database,
    changes,
    logger,
    signingKey,
    devIssuer,
    plans,
  });
  const { app, events } = created;
  // Products, prices and the meter exist in Stripe before the first Checkout (idempotent; safe when instances race).
  // Stripe being unreachable does not stop the start: Checkout and the meter job sync when they need it.
  await created.billing?.catalog.sync().catch((error: unknown) => {
    logger.warn(
      { reason: error instanceof Error ? error.message : String(error) },
      'Stripe catalog not synced at start: it will be synced when first needed',
    );
  });
  usage = created.usage;
  drain = created.drain;
  functions = created.functions;
  realtime = created.realtime;
  background = new Background({
    config,
    database,
    events,
    changes,
    secrets: new EventSecrets(adminApiKey),
    logger,
    functions,
    billing: created.billing?.jobs,
  });
  await background.start();
  const listening = app.listen(config.port, config.host);
  server = listening;
  await new Promise<void>((resolve, reject) => listening.once('listening', resolve).once('error', reject));
  const address = listening.address();
  logger.info({ port: typeof address === 'object' && address ? address.port : config.port }, 'listening');
}

let stopping = false;
async function stop(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  logger.info({ signal, graceMs: config.shutdownGraceMs }, 'stopping');
  // Not ready from now on; every response asks its client to close its connection.
  drain?.begin();
  // No new connections; requests in flight (and any sent on connections already open) are served.
  const closed = server ? closeGracefully(server, config.shutdownGraceMs) : Promise.resolve({ cut: 0 });
  // Open event streams would hold the server open: end them with `shutdown` (clients resume
  // elsewhere with Last-Event-ID).
  await realtime?.close();
  const { cut } = await closed;
  if (cut) logger.warn({ connections: cut }, 'cut connections still open after the shutdown grace');
  // Running jobs finish (or, past graphile-worker's abort timeout, go back to the queue).
  await background?.stop();
  await functions?.close();
  // The API calls counted since the last flush.
  await usage?.close().catch(() => undefined);
  await sealer?.stop();
  // One last pass, so a clean stop leaves nothing unsealed that this instance could seal.
  await sealer?.sealAll().catch(() => undefined);
  await changes?.close();
  await database?.close();
  await embedded?.stop();
  logger.info('stopped');
}

// SIGHUP too: a closed terminal stops the service and its embedded PostgreSQL cleanly.
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(signal, () => {
    stop(signal).then(
      () => process.exit(0),
      (error: unknown) => {
        logger.error({ err: error }, 'stop failed');
        process.exit(1);
      },
    );
  });
}

start().catch(async (error: unknown) => {
  logger.fatal({ reason: error instanceof Error ? error.message : String(error) }, 'start failed');
  await stop('start failure').catch(() => undefined);
  process.exit(1);
});
