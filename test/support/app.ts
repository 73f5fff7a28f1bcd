import { randomBytes } from 'node:crypto';
import type { Express } from 'express';
import pg from 'pg';
import { pino } from 'pino';
import supertest from 'supertest';
import { createApp, entities } from '../../src/app.ts';
import type { DevIssuerKey } from '../../src/auth/dev-issuer.ts';
import { Background, type BackgroundDependencies } from '../../src/background.ts';
import { prepareDatabase } from '../../src/db/bootstrap.ts';
import { EventSecrets } from '../../src/events/secrets.ts';
import type { EventLog } from '../../src/events/event-log.ts';
import type { FunctionRunner } from '../../src/features/functions/function-runner.ts';
import type { SandboxPoolOptions } from '../../src/features/functions/sandbox-pool.ts';
import type { RealtimeHub, RealtimeOptions } from '../../src/features/realtime/realtime-hub.ts';
import { parseConfig } from '../../src/config.ts';
import type { UsageMeter } from '../../src/policy/usage-meter.ts';
import { createLogger } from '../../src/http/logging.ts';
import { ChangeBus } from '../../src/db/changes.ts';
import { Database } from '../../src/db/database.ts';
import { Sealer } from '../../src/features/decisions/sealer.ts';
import { registerSigningKey } from '../../src/features/decisions/signing-keys.ts';
import { generateSigningKey, type SigningKey } from '../../src/features/decisions/signing.ts';

export interface TestApp {
  app: Express;
  database: Database;
  adminKey: string;
  /** supertest over real HTTP, with the platform admin key already set. */
  admin: () => ReturnType<typeof adminAgent>;
  http: () => supertest.Agent;
  signingKey: SigningKey;
  /** Seals on demand (tests call `sealAll()` instead of waiting for an interval). */
  sealer: Sealer;
  events: EventLog;
  /** The job queue and event dispatcher; running only with `background: true`. */
  background: Background;
  /** Runs functions (what a function trigger's delivery calls). */
  functions: FunctionRunner;
  /** Event streams served by this app. */
  realtime: RealtimeHub;
  /** What this app hears of changes (its own, and other instances' with `listen`). */
  changes: ChangeBus;
  /** API calls counted in memory (tests flush on demand). */
  usage: UsageMeter;
  /** With STRIPE_SECRET_KEY in `env`: the Stripe catalog (sync on demand) and the billing jobs (run on demand). */
  billing: ReturnType<typeof createApp>['billing'];
  /** The owner's connection to this app's database (the shared test database unless `ownDatabase`). */
  ownerUrl: string;
  /** The serving role's connection to it: a second instance on the same database starts with it. */
  appUrl: string;
  close: () => Promise<void>;
}

const adminAgent = (app: Express, adminKey: string) => supertest.agent(app).auth(adminKey, { type: 'bearer' });

export const testDatabase = {
  ownerUrl: () => required('CORDON_TEST_OWNER_URL'),
  appUrl: () => required('CORDON_TEST_APP_URL'),
};

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is unset: run the tests through jest's global setup`);
  return value;
}

export interface TestAppOptions {
  databaseUrl?: string;
  /** Environment overrides, parsed by the real configuration module. */
  env?: Record<string, string>;
  /** Listen for changes from other instances (LISTEN/NOTIFY). */
  listen?: boolean;
  /** Receives every log line, to check what is (not) logged. */
  logLines?: string[];
  /** Instances of one deployment share their checkpoint signing key. */
  signingKey?: SigningKey;
  /** Run the background work too: the job queue and the event dispatcher (as `npm start` does). */
  background?: boolean;
  /** Function sandboxes (a test makes them misbehave). */
  sandbox?: Partial<SandboxPoolOptions>;
  /** Event streams' timings, or a view that fails for one group. */
  realtime?: Partial<RealtimeOptions>;
  /** Shorter retries, a quicker dispatcher: only with `ownDatabase`, or other files' jobs would run with them. */
  tuning?: BackgroundDependencies['tuning'];
  /**
   * A database of its own, migrated like the shared one and dropped at `close`. Every instance on
   * one database runs every instance's jobs: a test that tunes its background, or must not deliver
   * other files' events, needs its own.
   */
  ownDatabase?: boolean;
  /** The development issuer's key, as main.ts hands it over outside production (none otherwise). */
  devIssuer?: DevIssuerKey;
}

export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const logger = options.logLines
    ? createLogger({ logLevel: 'trace' }, { write: (line: string) => void options.logLines!.push(line) })
    : pino({ level: 'silent' });
  const adminKey = randomBytes(32).toString('base64url');
  const signingKey = options.signingKey ?? generateSigningKey();
  const signingKeyPem = signingKey.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  const config = parseConfig({
    NODE_ENV: 'test',
    BODY_LIMIT: '100kb',
    JWKS_COOLDOWN_SECONDS: '0',
    DECISION_SIGNING_KEY: signingKeyPem,
    ...options.env,
  });
  if (options.tuning && !options.ownDatabase) throw new Error('tuning the background needs ownDatabase');
  const own = options.ownDatabase ? await createScratchDatabase() : undefined;
  const ownApp = own && (await prepareDatabase({ ownerUrl: own.url, appUrl: undefined }, pino({ level: 'warn' })));
  const url = options.databaseUrl ?? ownApp?.appUrl ?? testDatabase.appUrl();
  const database = await Database.open({ url, poolSize: 5, entities }, logger);
  // The readiness test starts an app where no PostgreSQL listens: it must start all the same.
  await registerSigningKey(database, signingKey).catch((error: unknown) => {
    if ((error as { code?: string }).code !== 'ECONNREFUSED') throw error;
  });
  const changes = new ChangeBus(url, logger);
  if (options.listen) await changes.listen();
  const { app, events, functions, realtime, usage, billing } = createApp({
    config: { ...config, adminApiKey: adminKey },
    database,
    changes,
    logger,
    signingKey,
    ...(options.sandbox && { sandbox: options.sandbox }),
    ...(options.realtime && { realtime: options.realtime }),
    ...(options.devIssuer && { devIssuer: options.devIssuer }),
  });
  const sealer = new Sealer(database, signingKey, logger);
  const background = new Background({
    config,
    database,
    events,
    changes,
    secrets: new EventSecrets(adminKey),
    logger,
    functions,
    billing: billing?.jobs,
    tuning: options.tuning,
  });
  if (options.background) await background.start();
  return {
    app,
    database,
    adminKey,
    admin: () => adminAgent(app, adminKey),
    http: () => supertest.agent(app),
    signingKey,
    sealer,
    events,
    background,
    functions,
    realtime,
    changes,
    ownerUrl: own?.url ?? testDatabase.ownerUrl(),
    appUrl: url,
    usage,
    billing,
    close: async () => {
      await realtime.close();
      await usage.close();
      await background.stop();
      await functions.close();
      await changes.close();
      await database.close();
      await own?.drop();
    },
  };
}

/** A connection as the table owner, for checking what is really stored (in the shared database, or another). */
export async function ownerClient(url = testDatabase.ownerUrl()): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  return client;
}

/** A fresh database on the test server, for a test that runs the whole service against it. */
export async function createScratchDatabase(): Promise<{ url: string; drop: () => Promise<void> }> {
  const name = `cordon_scratch_${randomBytes(4).toString('hex')}`;
  const admin = await ownerClient();
  await admin.query(`create database ${name}`);
  await admin.end();
  const url = new URL(testDatabase.ownerUrl());
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const client = await ownerClient();
      await client.query(`drop database if exists ${name} with (force)`);
      await client.end();
    },
  };
}

/** Slugs unique to one test file run, so files can run in parallel on one database. */
export const uniqueSlug = (prefix: string) => `${prefix}-${randomBytes(5).toString('hex')}`;

/** The platform list's item for one workspace, paging through them all (other test files add many). */
export async function listedWorkspace<T extends { id: string }>(app: TestApp, id: string): Promise<T | undefined> {
  let cursor: string | null = null;
  do {
    const page: { data: T[]; nextCursor: string | null } = (
      await app
        .admin()
        .get('/v1/workspaces')
        .query(cursor ? { limit: 200, cursor } : { limit: 200 })
        .expect(200)
    ).body;
    const found = page.data.find((workspace) => workspace.id === id);
    if (found) return found;
    cursor = page.nextCursor;
  } while (cursor);
  return undefined;
}
