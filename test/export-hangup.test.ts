import { get, type ClientRequest, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { jest } from '@jest/globals';
import type pg from 'pg';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

jest.setTimeout(120_000);

// A database of its own: the test locks tables, and counts every session in it.
let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
const logLines: string[] = [];

beforeAll(async () => {
  cordon = await startTestApp({ ownDatabase: true, logLines });
  owner = await ownerClient(cordon.ownerUrl);
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'hangup');
  const auditor = await tenant.token('user_auditor', 'auditor');
  // Every export has rows to write once its query returns: decisions, a checkpoint, records.
  await cordon.http().get(`/v1/workspaces/${tenant.slug}/decisions`).auth(auditor, { type: 'bearer' }).expect(200);
  await cordon.sealer.sealWorkspace(tenant.id);
  await owner.query(
    `insert into structures (workspace_id, name, fields) values ($1, 'Task', '{"title": {"type": "text"}}')`,
    [tenant.id],
  );
  await owner.query(
    `insert into records (id, workspace_id, structure, data, created_by)
     select gen_random_uuid(), $1, 'Task', jsonb_build_object('title', 'task ' || n), 'user_a' from generate_series(1, 10) n`,
    [tenant.id],
  );
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const waitingForLocks = async () =>
  (
    await owner.query<{ count: number }>(
      `select count(*)::int as count from pg_stat_activity
       where datname = current_database() and pid <> pg_backend_pid() and wait_event_type = 'Lock'`,
    )
  ).rows[0]!.count;

/** Sessions of this database inside a transaction ('idle in transaction' is how a leaked export looks). */
const inTransaction = async () =>
  (
    await owner.query<{ state: string; query: string }>(
      `select state, left(query, 80) as query from pg_stat_activity
       where datname = current_database() and pid <> pg_backend_pid() and xact_start is not null`,
    )
  ).rows;

describe('a streamed export whose client hangs up', () => {
  it('ends its transaction and returns its connection, even when the client left while it waited for rows', async () => {
    const server: Server = cordon.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as AddressInfo).port;
    const open = new Set<Socket>();
    server.on('connection', (socket: Socket) => {
      open.add(socket);
      socket.on('close', () => open.delete(socket));
    });
    const auditor = await tenant.token('user_auditor', 'auditor');
    // Each export's rows come from a table held here: it waits for them with its transaction open,
    // the client hangs up meanwhile, and only then do the rows arrive to be written.
    const locker = await ownerClient(cordon.ownerUrl);
    const calls: ClientRequest[] = [];
    try {
      await locker.query('begin');
      await locker.query('lock table decision_seals, decision_checkpoints, records in access exclusive mode');
      // As many as the pool has connections: leaked, they would leave none for anything else.
      const downloads = [
        // Its CSV header leaves before the rows are read.
        { path: `/v1/workspaces/${tenant.slug}/decisions/export?format=csv`, token: auditor, firstBytes: true },
        { path: `/v1/workspaces/${tenant.slug}/decisions/export?format=csv`, token: auditor, firstBytes: true },
        // Nothing leaves before its rows: its client hangs up before the first byte.
        {
          path: `/v1/workspaces/${tenant.slug}/decisions/checkpoints?format=ndjson`,
          token: auditor,
          firstBytes: false,
        },
        // Its configuration lines leave before the records are read.
        { path: `/v1/workspaces/${tenant.slug}/export`, token: cordon.adminKey, firstBytes: true },
        { path: `/v1/workspaces/${tenant.slug}/export`, token: cordon.adminKey, firstBytes: true },
      ];
      const statuses: number[] = [];
      let received = 0;
      for (const { path, token } of downloads) {
        const call = get(
          { host: '127.0.0.1', port, path, headers: { authorization: `Bearer ${token}` } },
          (response) => {
            statuses.push(response.statusCode ?? 0);
            response.once('data', () => (received += 1));
          },
        );
        call.on('error', () => undefined);
        calls.push(call);
        const started = downloads.slice(0, calls.length);
        await eventually(async () => {
          if (statuses.some((status) => status !== 200)) throw new Error(`an export answered ${statuses.join(', ')}`);
          return (
            (await waitingForLocks()) === started.length &&
            received === started.filter((download) => download.firstBytes).length
          );
        });
      }
      for (const call of calls) call.destroy();
      await eventually(async () => open.size === 0);
      await locker.query('commit');

      await eventually(async () => (await inTransaction()).length === 0, 5_000).catch(() => undefined);
      expect(await inTransaction()).toEqual([]);
      await cordon.http().get('/readyz').expect(200);
      // A client that hung up is no failure of ours: nothing is logged as an error.
      expect(logLines.filter((line) => JSON.parse(line).level >= 50)).toEqual([]);
    } finally {
      for (const call of calls) call.destroy();
      await locker.query('rollback').catch(() => undefined);
      await locker.end();
      // What a leaked export would hold: without this, closing the app's pool would wait for ever.
      await owner.query(
        `select pg_terminate_backend(pid) from pg_stat_activity
         where datname = current_database() and pid <> pg_backend_pid() and xact_start is not null`,
      );
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
