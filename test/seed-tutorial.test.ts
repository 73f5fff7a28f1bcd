import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { developmentIssuerKey } from '../src/auth/dev-issuer.ts';
import { startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { trustIssuer, type TestTenant } from './support/tenant.ts';
import { WebhookReceiver } from './support/webhook-receiver.ts';

/**
 * The seed tutorial's step 5 end to end: `npm run seed` against a listening Cordon makes the
 * Project and Task structures, the notify-assignee function and its `record_updated` trigger; the
 * app subscribes a webhook to `notification.requested`; a member reassigns a task over HTTP and the
 * app's receiver (verifying every signature with standardwebhooks) gets the notification to send.
 * The background runs on a database of its own, as `npm start` runs it. The seed also binds the
 * development issuer, so `npm run token` (beside it, on the same DATA_DIR) signs tokens acme trusts.
 */

let cordon: TestApp;
let server: Server;
let issuer: TestIssuer;
let tenant: TestTenant;
let admin: string;
let member: string;
let app: WebhookReceiver;
let dataDir: string;

const as = (token: string, method: 'get' | 'post' | 'patch', path: string) =>
  cordon.http()[method](`/v1/workspaces/${tenant.slug}${path}`).auth(token, { type: 'bearer' });

beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-seed-'));
  const devIssuer = (await developmentIssuerKey(dataDir)).key;
  cordon = await startTestApp({ ownDatabase: true, background: true, devIssuer });
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  const seeded = await promisify(execFile)(process.execPath, ['seeds/run.ts'], {
    env: {
      PATH: process.env.PATH,
      CORDON_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      ADMIN_API_KEY: cordon.adminKey,
    },
  });
  expect(seeded.stdout).toContain('created function notify-assignee');
  expect(seeded.stdout).toContain('created trigger task-assigned');
  expect(seeded.stdout).toContain('created identity provider dev');
  const workspace = (await cordon.admin().get('/v1/workspaces/acme').expect(200)).body;
  issuer = await TestIssuer.start();
  tenant = await trustIssuer(cordon, issuer, workspace);
  admin = await tenant.token('user_admin', 'admin');
  member = await tenant.token('user_member', 'member');
  app = await WebhookReceiver.start();
  app.secret = (
    await as(admin, 'post', '/triggers')
      .send({ name: 'send-mail', events: ['notification.requested'], action: { type: 'webhook', url: app.url } })
      .expect(201)
  ).body.secret;
}, 60_000);
afterAll(async () => {
  await app.close();
  await issuer.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await cordon.close();
  await rm(dataDir, { recursive: true, force: true });
});

it('seeds again without failing: what exists is said to exist', async () => {
  const again = await promisify(execFile)(process.execPath, ['seeds/run.ts'], {
    env: {
      PATH: process.env.PATH,
      CORDON_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
      ADMIN_API_KEY: cordon.adminKey,
    },
  });
  expect(again.stdout).toContain('function notify-assignee exists already');
  expect(again.stdout).toContain('trigger task-assigned exists already');
  expect(again.stdout).toContain('identity provider dev exists already');
  expect(again.stdout).not.toContain('rebind');
});

it("binds the development issuer: the token script's token creates and lists a Project", async () => {
  const cordonUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const providers = (await cordon.admin().get('/v1/workspaces/acme/identity-providers').expect(200)).body.data;
  expect(providers).toContainEqual(
    expect.objectContaining({
      name: 'dev',
      type: 'oidc',
      issuer: `${cordonUrl}/v1/dev`,
      jwksUri: `${cordonUrl}/v1/dev/jwks.json`,
      orgId: 'acme',
    }),
  );
  const token = (
    await promisify(execFile)(
      process.execPath,
      ['src/features/dev-issuer/token.ts', '--workspace', 'acme', '--user', 'user_ann', '--role', 'admin'],
      { env: { PATH: process.env.PATH, CORDON_URL: cordonUrl, DATA_DIR: dataDir } },
    )
  ).stdout.trim();
  const headers = { authorization: `Bearer ${token}`, 'content-type': 'application/json' };
  const created = await fetch(`${cordonUrl}/v1/workspaces/acme/records/Project`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ data: { name: 'Gemini' } }),
  });
  expect(created.status).toBe(201);
  const { id } = (await created.json()) as { id: string };
  const listed = (await (await fetch(`${cordonUrl}/v1/workspaces/acme/records/Project`, { headers })).json()) as {
    data: { id: string; createdBy: string }[];
  };
  expect(listed.data).toContainEqual(expect.objectContaining({ id, createdBy: 'user_ann' }));
});

it('sends the app one task-assigned notification per reassignment, none for the same person or nobody', async () => {
  const project = (
    await as(admin, 'post', '/records/Project')
      .send({ data: { name: 'Apollo' } })
      .expect(201)
  ).body;
  const task = (
    await as(admin, 'post', '/records/Task')
      .send({ data: { title: 'Write docs', projectId: project.id, priority: 'high' } })
      .expect(201)
  ).body;
  const reassign = (assigneeId: string | null) =>
    as(member, 'patch', `/records/Task/${task.id}`).send({ data: { assigneeId } }).expect(200);

  await reassign('user_ada');
  await app.waitFor(1, 15_000, 'notification.requested');
  const [notification] = app.events('notification.requested');
  expect(notification).toMatchObject({
    type: 'notification.requested',
    workspaceId: tenant.id,
    actor: { id: 'function:notify-assignee', kind: 'function' },
    data: {
      type: 'email',
      to: 'user_ada',
      template: 'task-assigned',
      data: { taskTitle: 'Write docs', projectName: 'Apollo', priority: 'high' },
    },
  });

  // The same person again, a title change, then nobody: the function runs for each and asks for
  // nothing. A last reassignment's notification comes after all of them (one record's events run
  // in seq order; the notifications' deliveries too), so it proves none came before it.
  await reassign('user_ada');
  await as(member, 'patch', `/records/Task/${task.id}`)
    .send({ data: { title: 'Write the docs' } })
    .expect(200);
  await reassign(null);
  await reassign('user_grace');
  await app.waitFor(2, 15_000, 'notification.requested');
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(app.events('notification.requested').map((event) => (event.data as { to: string }).to)).toEqual([
    'user_ada',
    'user_grace',
  ]);
  expect(app.events('notification.requested')[1]!.data).toMatchObject({
    data: { taskTitle: 'Write the docs', projectName: 'Apollo', priority: 'high' },
  });

  // The function ran once per update (and for nothing else), each run logged.
  const triggers = (await as(admin, 'get', '/triggers').expect(200)).body.data as { id: string; name: string }[];
  const taskAssigned = triggers.find((trigger) => trigger.name === 'task-assigned')!;
  await eventually(async () => {
    const { body } = await as(admin, 'get', `/triggers/${taskAssigned.id}/deliveries`).expect(200);
    return body.data.length === 5 && body.data.every((delivery: { status: string }) => delivery.status === 'delivered');
  });
  const runs = (await as(admin, 'get', '/functions/notify-assignee/runs').expect(200)).body.data as {
    status: string;
    result: unknown;
    triggerId: string;
  }[];
  expect(runs.map((run) => run.result)).toEqual([
    { notified: 'user_grace' },
    null,
    null,
    null,
    { notified: 'user_ada' },
  ]);
  expect(runs.every((run) => run.status === 'succeeded' && run.triggerId === taskAssigned.id)).toBe(true);
});
