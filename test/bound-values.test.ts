import { randomBytes } from 'node:crypto';
import { jest } from '@jest/globals';
import pg from 'pg';
import { startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * One road to the database, proved at run time: tenant data, filters, ids, emails and request
 * headers travel to PostgreSQL as bound parameters, never inside the SQL text. Every statement
 * any pg client sends is captured while a marker rides in every value a client controls; the
 * marker must show up in parameters only. (Configuration entities — policies, structures,
 * providers — go through MikroORM, which formats its own values; no marker is put there.)
 */

let cordon: TestApp;
let issuer: TestIssuer;
let tenant: TestTenant;
const texts: string[] = [];
const parameters: unknown[] = [];

beforeAll(async () => {
  // Before any connection exists: the pool names prepared statements per connection, wrapping query.
  const original = pg.Client.prototype.query as (...args: unknown[]) => unknown;
  jest.spyOn(pg.Client.prototype, 'query').mockImplementation(function (this: pg.Client, ...args: unknown[]) {
    const [config, values] = args as [unknown, unknown];
    if (typeof config === 'string') texts.push(config);
    else if (config && typeof config === 'object' && 'text' in config) texts.push(String(config.text));
    parameters.push(values ?? (config as { values?: unknown })?.values);
    return original.apply(this, args);
  } as never);
  cordon = await startTestApp();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'bound');
});
afterAll(async () => {
  jest.restoreAllMocks();
  await issuer.close();
  await cordon.close();
});

it('sends every value a client controls as a parameter, never in the SQL text', async () => {
  const marker = `mk${randomBytes(6).toString('hex')}`;
  const admin = await tenant.token('user_admin', 'admin', { email: `${marker}@example.com` });
  const as = (method: 'get' | 'post' | 'patch' | 'delete', path: string) =>
    cordon
      .http()
      [method](`/v1/workspaces/${tenant.slug}${path}`)
      .auth(admin, { type: 'bearer' })
      .set('user-agent', `agent ${marker}`);
  await as('post', '/structures')
    .send({
      name: 'Task',
      fields: { title: { type: 'text' }, note: { type: 'json' }, parent: { type: 'reference', structure: 'Task' } },
    })
    .expect(201);
  const first = (
    await as('post', '/records/Task')
      .send({ data: { title: marker, note: { [marker]: [marker] } } })
      .expect(201)
  ).body;
  texts.length = 0;
  parameters.length = 0;

  const created = (
    await as('post', '/records/Task')
      .send({ data: { title: `${marker}'); drop table records; --`, parent: first.id } })
      .expect(201)
  ).body;
  await as('patch', `/records/Task/${created.id}`)
    .send({ data: { title: marker, note: [marker] } })
    .expect(200);
  await as(
    'get',
    `/records/Task?filter=${encodeURIComponent(JSON.stringify({ title: marker, note: { $elemMatch: { $eq: marker } } }))}&sort=title,-createdAt&count=true`,
  ).expect(200);
  await as(
    'get',
    `/records/Task?filter=${encodeURIComponent(JSON.stringify({ title: { $regex: `^${marker}` }, createdBy: marker }))}`,
  ).expect(200);
  await as('get', `/records/Task/${created.id}`).expect(200);
  await as('post', '/members')
    .send({ userId: `user_${marker}`, email: `${marker}@example.com`, roles: ['viewer'] })
    .expect(201);
  await as('patch', `/members/user_${marker}`)
    .send({ roles: ['member'] })
    .expect(200);
  await as('get', `/members/user_${marker}`).expect(200);
  await as('post', '/invitations')
    .send({ email: `invitee-${marker}@example.com`, roles: ['viewer'] })
    .expect(201);
  await as('post', '/check')
    .send({ checks: [{ action: 'read', subject: 'Task', resource: { id: marker, title: marker } }] })
    .expect(200);
  await as('get', `/decisions?principalId=${marker}&resourceId=${marker}`).expect(200);
  await as('delete', `/records/Task/${created.id}`).expect(204);
  await as('delete', `/members/user_${marker}`).expect(204);
  await cordon.sealer.sealWorkspace(tenant.id);

  expect(texts.length).toBeGreaterThan(20);
  expect(texts.filter((text) => text.includes(marker))).toEqual([]);
  // The marker did reach the database, as parameters.
  expect(JSON.stringify(parameters)).toContain(marker);
});
