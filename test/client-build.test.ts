import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant } from './support/tenant.ts';

/**
 * @cordon/client as it ships: `tsc -p clients/typescript` into a package of its own, whose ESM
 * output loads in a fresh Node process (every Node found here, the machine's 20 included), makes
 * real requests and reads a real event stream, with no Node-only import or global in it.
 */

const run = promisify(execFile);
const root = new URL('..', import.meta.url).pathname;
const clientPackage = JSON.parse(await readFile(join(root, 'clients/typescript/package.json'), 'utf8')) as {
  dependencies: Record<string, string>;
  exports: { '.': { types: string; import: string } };
};
let directory: string;
let cordon: TestApp;
let server: Server;
let issuer: TestIssuer;

beforeAll(async () => {
  directory = await mkdtemp(join(tmpdir(), 'cordon-client-'));
  await writeFile(join(directory, 'package.json'), JSON.stringify(clientPackage));
  await symlink(join(root, 'node_modules'), join(directory, 'node_modules'));
  await run(process.execPath, [
    join(root, 'node_modules/typescript/bin/tsc'),
    '-p',
    join(root, 'clients/typescript'),
    '--outDir',
    join(directory, 'dist'),
  ]);
  cordon = await startTestApp();
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  issuer = await TestIssuer.start();
}, 60_000);
afterAll(async () => {
  await rm(directory, { recursive: true, force: true });
  await issuer.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await cordon.close();
});

it('emits ESM with declarations where the package.json exports point', async () => {
  for (const file of Object.values(clientPackage.exports['.'])) expect(existsSync(join(directory, file))).toBe(true);
  const index = await readFile(join(directory, clientPackage.exports['.'].types), 'utf8');
  expect(index).toContain('Cordon');
  expect(index).toContain('CordonError');
});

it('has no Node-only import or global in what it ships', async () => {
  const files = (await readdir(join(directory, 'dist'))).filter((file) => file.endsWith('.js'));
  expect(files).toEqual(expect.arrayContaining(['index.js', 'cordon.js', 'event-stream.js']));
  const nodeOnly = /from ['"]node:|import\(['"]node:|\brequire\(|\bprocess\.|\bBuffer\b|__dirname|__filename/;
  for (const file of files)
    expect([file, nodeOnly.test(await readFile(join(directory, 'dist', file), 'utf8'))]).toEqual([file, false]);
});

it('pins the same dependency versions as the repository installs', async () => {
  const installed = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
    devDependencies: Record<string, string>;
  };
  for (const [name, version] of Object.entries(clientPackage.dependencies))
    expect([name, installed.devDependencies[name]]).toEqual([name, version]);
});

it('loads in a fresh Node process, calls a running Cordon and reads its event stream', async () => {
  const tenant = await createTenant(cordon, issuer, 'client-build');
  await cordon
    .http()
    .post(`/v1/workspaces/${tenant.slug}/structures`)
    .auth(await tenant.token('user_admin', 'admin'), { type: 'bearer' })
    .send({ name: 'Task', fields: { title: { type: 'text', required: true } } })
    .expect(201);
  const token = await tenant.token('user_built', 'member');
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // The record is created first and read back from the event table (lastEventId 0), so no race
  // with the stream's start; then the subscription ends and the process exits by itself.
  const script = `
    import { Cordon, CordonError } from ${JSON.stringify(join(directory, 'dist/index.js'))};
    const [baseUrl, workspace, token] = process.argv.slice(1);
    setTimeout(() => { console.error('no event in time'); process.exit(1); }, 10_000).unref();
    const cordon = new Cordon({ baseUrl, workspace, token });
    const me = await cordon.whoami();
    const refused = await new Cordon({ baseUrl, workspace, token: 'x' }).whoami().catch((error) => error);
    const created = await cordon.createRecord('Task', { title: process.version });
    const event = await new Promise((resolve, reject) => {
      const subscription = cordon.realtime.subscribe({
        structures: ['Task'],
        lastEventId: '0',
        onEvent(event) {
          if (event.event === 'record_created' && event.recordId === created.id) {
            subscription.unsubscribe();
            resolve(event);
          }
        },
        onError: (error) => reject(error),
      });
    });
    console.log(JSON.stringify({ id: me.id, refused: refused instanceof CordonError && refused.code, title: event.data.data.title }));
  `;
  const nodes = [process.execPath, '/usr/bin/node', '/usr/local/bin/node'].filter((path) => existsSync(path));
  for (const node of nodes) {
    const { stdout: version } = await run(node, ['--version']);
    const { stdout } = await run(node, ['--input-type=module', '-e', script, baseUrl, tenant.slug, token]);
    expect(JSON.parse(stdout)).toEqual({ id: 'user_built', refused: 'token_malformed', title: version.trim() });
  }
});
