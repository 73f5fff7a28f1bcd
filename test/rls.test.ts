import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import type pg from 'pg';
import { servingGrants } from '../src/db/grants.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';
import { WebhookReceiver } from './support/webhook-receiver.ts';
import { StripeStandIn } from './support/stripe-stand-in.ts';

/**
 * Row-level security, driven by the catalogue: every table with a `workspace_id` column is found
 * by itself, so a table added later is checked without editing this file. Two workspaces are
 * filled through the API (records, members, invitations, policies, decisions and their seals…),
 * then each tenant table is read and written as the serving role from inside and outside scopes.
 */

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenants: TestTenant[];
let standIn: StripeStandIn;
let server: Server;
const webhookSecret = `whsec_${randomBytes(16).toString('hex')}`;
let tenantTables: string[];
const receivers: WebhookReceiver[] = [];

async function fill(tenant: TestTenant): Promise<void> {
  const admin = await tenant.token('user_admin', 'admin');
  const as = (method: 'post' | 'patch', path: string) =>
    cordon.http()[method](`/v1/workspaces/${tenant.slug}${path}`).auth(admin, { type: 'bearer' });
  await as('post', '/structures')
    .send({ name: 'Task', fields: { title: { type: 'text' } } })
    .expect(201);
  // A webhook trigger (its secret, rotated) and its delivery of the record created next: the
  // dispatcher's progress, the delivery and its attempt.
  const receiver = await WebhookReceiver.start();
  receivers.push(receiver);
  const trigger = (
    await as('post', '/triggers')
      .send({ name: 'hook', events: ['record_created'], action: { type: 'webhook', url: receiver.url } })
      .expect(201)
  ).body;
  receiver.secret = (await as('post', `/triggers/${trigger.id}/rotate-secret`).expect(200)).body.secret;
  await as('post', '/records/Task')
    .send({ data: { title: 'one' } })
    .expect(201);
  await receiver.waitFor(1);
  await eventually(async () => {
    const { body } = await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/triggers/${trigger.id}/deliveries`)
      .auth(admin, { type: 'bearer' });
    return body.data?.[0]?.status === 'delivered';
  });
  await as('post', '/members')
    .send({ userId: 'user_admin', roles: ['admin'] })
    .expect(201);
  await as('post', '/invitations')
    .send({ email: 'someone@example.com', roles: ['viewer'] })
    .expect(201);
  await as('post', '/policies')
    .send({ name: 'extra', roles: ['viewer'], rules: [{ action: 'read', subject: 'Task' }] })
    .expect(201);
  await cordon
    .http()
    .put(`/v1/workspaces/${tenant.slug}/policy-tests`)
    .auth(admin, { type: 'bearer' })
    .send({
      suite: {
        principals: { viewer: { id: 'user_viewer', roles: ['viewer'] } },
        tests: [{ name: 'viewer reads tasks', principal: 'viewer', action: 'read', subject: 'Task', expect: 'allow' }],
      },
    })
    .expect(200);
  await as('post', '/functions')
    .send({
      name: 'fixture',
      code: 'async function run(event, { api }) { return api.getRecord(event.id) }',
      roles: ['admin'],
    })
    .expect(201);
  await as('post', '/functions/fixture/invoke')
    .send({ event: { type: 'test', id: crypto.randomUUID() } })
    .expect(200);
  // A Stripe subscription through Checkout, and its webhook event applied (billing_events).
  const checkout = (
    await as('post', '/billing/checkout')
      .send({ plan: 'starter', interval: 'month', successUrl: 'https://a.example', cancelUrl: 'https://a.example' })
      .expect(200)
  ).body;
  const [, created] = standIn.completeCheckout(checkout.url.split('/').pop());
  const webhook = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/billing/webhook`;
  expect(await standIn.send(created!, webhook, { secret: webhookSecret })).toBe(200);
  await cordon.sealer.sealWorkspace(tenant.id);
  // The API calls counted above reach api_usage.
  await cordon.usage.flush();
}

beforeAll(async () => {
  // The background delivers the triggers' events, so their delivery tables fill as in production.
  standIn = await StripeStandIn.start();
  cordon = await startTestApp({
    background: true,
    env: { STRIPE_SECRET_KEY: standIn.secretKey, STRIPE_WEBHOOK_SECRET: webhookSecret, STRIPE_API_URL: standIn.url },
  });
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenants = [await createTenant(cordon, issuer, 'rls-a'), await createTenant(cordon, issuer, 'rls-b')];
  for (const tenant of tenants) await fill(tenant);
  const { rows } = await owner.query<{ table_name: string }>(
    `select c.table_name from information_schema.columns c
     join information_schema.tables t on t.table_schema = c.table_schema and t.table_name = c.table_name
     where c.table_schema = 'public' and c.column_name = 'workspace_id' and t.table_type = 'BASE TABLE'
     order by c.table_name`,
  );
  tenantTables = rows.map((row) => row.table_name);
});
afterAll(async () => {
  for (const receiver of receivers) await receiver.close();
  await issuer.close();
  await owner.end();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await cordon.close();
  await standIn.close();
});

const rowsOf = (table: string, workspaceId: string) =>
  owner.query<{ count: number }>(
    `select count(*)::int as count from ${owner.escapeIdentifier(table)} where workspace_id = $1`,
    [workspaceId],
  );

describe('every table with a workspace_id column', () => {
  it('is found in the catalogue (the list is not written down here)', () => {
    expect(tenantTables).toEqual(expect.arrayContaining(['records', 'members', 'decisions', 'identity_providers']));
  });

  it('has row-level security enabled and a policy keyed on the scope setting', async () => {
    for (const table of tenantTables) {
      const { rows } = await owner.query<{ enabled: boolean; policies: string[] }>(
        `select c.relrowsecurity as enabled,
                array(select pg_get_expr(p.polqual, p.polrelid) from pg_policy p where p.polrelid = c.oid) as policies
         from pg_class c where c.oid = $1::regclass`,
        [table],
      );
      expect({ table, ...rows[0] }).toEqual({
        table,
        enabled: true,
        policies: [expect.stringContaining('cordon_current_workspace()')],
      });
    }
  });

  it('is granted to the serving role exactly as db/grants.ts lists it', async () => {
    const role = new URL(process.env.CORDON_TEST_APP_URL!).username;
    for (const table of tenantTables) {
      const { rows } = await owner.query<{ privilege_type: string }>(
        `select lower(privilege_type) as privilege_type from information_schema.role_table_grants
         where table_schema = 'public' and table_name = $1 and grantee = $2 order by 1`,
        [table, role],
      );
      expect({ table, granted: rows.map((row) => row.privilege_type) }).toEqual({
        table,
        granted: [...(servingGrants[table] ?? ['(not listed in db/grants.ts)'])].sort(),
      });
    }
  });

  it('shows the serving role no row outside a scope, and only its own workspace’s rows inside one', async () => {
    for (const table of tenantTables) {
      const outside = await cordon.database.query(
        sql<{ count: number }>`select count(*)::int as count from ${sql.table(table)}`,
      );
      expect({ table, outside: outside[0]!.count }).toEqual({ table, outside: 0 });
      for (const tenant of tenants) {
        const seen = await cordon.database.withWorkspace(tenant.id, (scope) =>
          scope.query(sql<{ workspace_id: string }>`select distinct workspace_id from ${sql.table(table)}`),
        );
        const stored = (await rowsOf(table, tenant.id)).rows[0]!.count;
        expect({ table, seen: seen.map((row) => row.workspace_id) }).toEqual({
          table,
          seen: stored ? [tenant.id] : [],
        });
      }
    }
  });

  it('is filled by the fixture, so the visibility check above is not vacuous', async () => {
    const empty = [];
    for (const table of tenantTables) if (!(await rowsOf(table, tenants[0]!.id)).rows[0]!.count) empty.push(table);
    expect(empty).toEqual([]);
  });

  it('refuses, from one workspace’s scope, to insert, move, change or delete another workspace’s rows', async () => {
    const [mine, theirs] = [tenants[0]!, tenants[1]!];
    for (const table of tenantTables) {
      const grants = servingGrants[table] ?? [];
      const inMine = <Row>(statement: ReturnType<typeof sql<Row>>) =>
        cordon.database.withWorkspace(mine.id, (scope) => scope.query(statement));
      if (grants.includes('update')) {
        await expect(inMine(sql`update ${sql.table(table)} set workspace_id = ${theirs.id}::uuid`)).rejects.toThrow(
          /row-level security/,
        );
        const changed = await inMine(
          sql`update ${sql.table(table)} set workspace_id = workspace_id where workspace_id = ${theirs.id}::uuid returning 1`,
        );
        expect({ table, changed: changed.length }).toEqual({ table, changed: 0 });
      }
      if (grants.includes('delete')) {
        const deleted = await inMine(
          sql`delete from ${sql.table(table)} where workspace_id = ${theirs.id}::uuid returning 1`,
        );
        expect({ table, deleted: deleted.length }).toEqual({ table, deleted: 0 });
      }
      if (grants.includes('insert')) {
        // RLS's WITH CHECK runs before any other constraint: a row of theirs is refused as such.
        await expect(
          inMine(sql`insert into ${sql.table(table)} (workspace_id) values (${theirs.id}::uuid)`),
        ).rejects.toThrow(/row-level security/);
      }
    }
  });
});
