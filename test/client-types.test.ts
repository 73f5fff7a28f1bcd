import { readFile } from 'node:fs/promises';
import { schemaFile, schemaSource } from '../clients/typescript/generate/schema-source.ts';
import { startTestApp, type TestApp } from './support/app.ts';

let cordon: TestApp;
beforeAll(async () => {
  cordon = await startTestApp();
});
afterAll(() => cordon.close());

it("keeps the client's checked-in types equal to those generated from the served /openapi.json", async () => {
  const { body: document } = await cordon.http().get('/openapi.json').expect(200);
  const generated = (await schemaSource(document)).split('\n');
  const checkedIn = (await readFile(schemaFile, 'utf8')).split('\n');
  const line = generated.findIndex((text, index) => text !== checkedIn[index]);
  const drift =
    line === -1 && generated.length === checkedIn.length
      ? undefined
      : `clients/typescript/src/schema.ts differs from the served document from line ${line + 1} ` +
        `(generated: ${JSON.stringify(generated[line])}); run \`npm run client:types\``;
  expect(drift).toBeUndefined();
});
