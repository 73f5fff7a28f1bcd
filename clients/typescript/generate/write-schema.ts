import { writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { createApp, entities } from '../../../src/app.ts';
import { parseConfig } from '../../../src/config.ts';
import { ChangeBus } from '../../../src/db/changes.ts';
import { Database } from '../../../src/db/database.ts';
import { generateSigningKey } from '../../../src/features/decisions/signing.ts';
import { schemaFile, schemaSource } from './schema-source.ts';

/**
 * `npm run client:types`: serves the app in-process and writes the client's types from its
 * /openapi.json. The document needs no data, so the database is one nobody listens on: the pool
 * connects lazily and nothing here queries it.
 */
async function servedDocument(): Promise<object> {
  const logger = pino({ level: 'silent' });
  const url = 'postgres://cordon@127.0.0.1:1/cordon';
  const database = await Database.open({ url, poolSize: 1, entities }, logger);
  const changes = new ChangeBus(url, logger);
  const config = { ...parseConfig({ NODE_ENV: 'test' }), adminApiKey: 'generating-the-client-types-only' };
  const { app, functions } = createApp({ config, database, changes, logger, signingKey: generateSigningKey() });
  const server = app.listen(0, '127.0.0.1');
  try {
    await new Promise((resolve) => server.once('listening', resolve));
    const { port } = server.address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/openapi.json`);
    if (!response.ok) throw new Error(`/openapi.json answered ${response.status}`);
    return (await response.json()) as object;
  } finally {
    server.close();
    await functions.close();
    await changes.close();
    await database.close();
  }
}

await writeFile(schemaFile, await schemaSource(await servedDocument()));
console.log(`wrote ${schemaFile.pathname}`);
