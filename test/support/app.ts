import { randomBytes } from 'node:crypto';
import type { Express } from 'express';
import pg from 'pg';
import { pino } from 'pino';
import supertest from 'supertest';
import { createApp } from '../../src/app.ts';
import { parseConfig } from '../../src/config.ts';
import { createLogger } from '../../src/http/logging.ts';
import { ChangeBus } from '../../src/db/changes.ts';
import { createOrm, type Orm } from '../../src/db/orm.ts';

export interface TestApp {
  app: Express;
  orm: Orm;
  adminKey: string;
  /** supertest over real HTTP, with the platform admin key already set. */
  admin: () => ReturnType<typeof adminAgent>;
  http: () => supertest.Agent;
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
}

export async function startTestApp(options: TestAppOptions = {}): Promise<TestApp> {
  const logger = options.logLines
    ? createLogger({ logLevel: 'trace' }, { write: (line: string) => void options.logLines!.push(line) })
    : pino({ level: 'silent' });
  const adminKey = randomBytes(32).toString('base64url');
  const config = parseConfig({ NODE_ENV: 'test', BODY_LIMIT: '100kb', JWKS_COOLDOWN_SECONDS: '0', ...options.env });
  const url = options.databaseUrl ?? testDatabase.appUrl();
  const orm = await createOrm({ url, poolSize: 5 }, logger);
  const changes = new ChangeBus(url, logger);
  if (options.listen) await changes.listen();
  const { app } = createApp({ config: { ...config, adminApiKey: adminKey }, orm, changes, logger });
  return {
    app,
    orm,
    adminKey,
    admin: () => adminAgent(app, adminKey),
    http: () => supertest.agent(app),
    close: async () => {
      await changes.close();
      await orm.close();
    },
  };
}

/** A connection as the table owner, for checking what is really stored. */
export async function ownerClient(): Promise<pg.Client> {
  const client = new pg.Client({ connectionString: testDatabase.ownerUrl() });
  await client.connect();
  return client;
}

/** Slugs unique to one test file run, so files can run in parallel on one database. */
export const uniqueSlug = (prefix: string) => `${prefix}-${randomBytes(5).toString('hex')}`;
