import { randomBytes } from 'node:crypto';
import type { Express } from 'express';
import pg from 'pg';
import { pino } from 'pino';
import supertest from 'supertest';
import { createApp } from '../../src/app.ts';
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

export async function startTestApp(options: { databaseUrl?: string } = {}): Promise<TestApp> {
  const logger = pino({ level: 'silent' });
  const adminKey = randomBytes(32).toString('base64url');
  const orm = await createOrm({ url: options.databaseUrl ?? testDatabase.appUrl(), poolSize: 5 }, logger);
  const { app } = createApp({ config: { bodyLimit: '100kb', trustProxy: false, adminApiKey: adminKey }, orm, logger });
  return {
    app,
    orm,
    adminKey,
    admin: () => adminAgent(app, adminKey),
    http: () => supertest.agent(app),
    close: () => orm.close(),
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
