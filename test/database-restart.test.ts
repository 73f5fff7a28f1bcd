import { jest } from '@jest/globals';
import { randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { prepareDatabase } from '../src/db/bootstrap.ts';
import { startEmbeddedPostgres, type EmbeddedDatabase } from '../src/db/embedded.ts';
import { startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { freePort } from './support/ports.ts';
import { createTenant } from './support/tenant.ts';

jest.setTimeout(180_000);

/**
 * PostgreSQL itself stops and starts again (an embedded cluster of this test's own) while two
 * instances serve writes: requests get 503 database_unavailable while it is down, never a 500;
 * both recover without a restart of their own; every acknowledged create is stored with its
 * decision; and the change listener is back, so a change made on one instance reaches the other.
 */
describe('a PostgreSQL restart under load', () => {
  it('answers 503 while it is down, recovers by itself, and loses nothing acknowledged', async () => {
    const logger = pino({ level: 'silent' });
    const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-pg-restart-'));
    await chmod(dataDir, 0o755);
    const options = { dataDir, port: await freePort(), database: 'cordon_restart', persistent: true };
    let embedded: EmbeddedDatabase | undefined = await startEmbeddedPostgres(options, logger);
    const { appUrl } = await prepareDatabase({ ownerUrl: embedded.url, appUrl: undefined }, logger);
    const issuer = await TestIssuer.start();
    let first: TestApp | undefined;
    let second: TestApp | undefined;
    try {
      first = await startTestApp({ databaseUrl: appUrl, listen: true });
      second = await startTestApp({ databaseUrl: appUrl, listen: true });
      const tenant = await createTenant(first, issuer, 'pg-restart');
      const admin = await tenant.token('user_admin', 'admin');
      const member = await tenant.token('user_member', 'member');
      await first
        .http()
        .post(`/v1/workspaces/${tenant.slug}/structures`)
        .auth(admin, { type: 'bearer' })
        .send({ name: 'Task', fields: { title: { type: 'text' } } })
        .expect(201);

      const acknowledged: { id: string; requestId: string }[] = [];
      const statuses = new Map<string, number>();
      let writing = true;
      const writer = async (app: TestApp) => {
        while (writing) {
          const requestId = randomUUID();
          const response = await app
            .http()
            .post(`/v1/workspaces/${tenant.slug}/records/Task`)
            .auth(member, { type: 'bearer' })
            .set('x-request-id', requestId)
            .send({ data: { title: 'through a restart' } });
          const key = `${response.status} ${response.body.code ?? ''}`.trim();
          statuses.set(key, (statuses.get(key) ?? 0) + 1);
          if (response.status === 201) acknowledged.push({ id: response.body.id, requestId });
          else await new Promise((resolve) => setTimeout(resolve, 20));
        }
      };
      const writers = [writer(first), writer(first), writer(second)];
      await eventually(async () => acknowledged.length >= 20);

      await embedded.stop();
      embedded = undefined;
      const downAt = acknowledged.length;
      await eventually(async () => (statuses.get('503 database_unavailable') ?? 0) >= 3);
      const ready = await first.http().get('/readyz');
      expect({ status: ready.status, code: ready.body.code }).toEqual({ status: 503, code: 'database_unavailable' });

      embedded = await startEmbeddedPostgres(options, logger);
      // Both instances write again, on new connections, without being restarted.
      await eventually(async () => acknowledged.length >= downAt + 20, 60_000);
      writing = false;
      await Promise.all(writers);
      await first.http().get('/readyz').expect(200);

      // Only created or "unavailable while down": never a 500.
      expect([...statuses.keys()].sort()).toEqual(['201', '503 database_unavailable']);

      const owner = new pg.Client({ connectionString: embedded.url });
      await owner.connect();
      try {
        const stored = await owner.query('select count(*)::int as n from records where id = any($1::uuid[])', [
          acknowledged.map((entry) => entry.id),
        ]);
        expect(stored.rows[0].n).toBe(acknowledged.length);
        const decided = await owner.query(
          `select count(distinct request_id)::int as n from decisions
           where request_id = any($1) and operation = 'create' and allowed`,
          [acknowledged.map((entry) => entry.requestId)],
        );
        expect(decided.rows[0].n).toBe(acknowledged.length);
      } finally {
        await owner.end();
      }

      // The listeners are back: an identity provider removed on the second instance stops the
      // first from accepting the workspace's tokens (it cached the provider before).
      const whoami = () => first!.http().get(`/v1/workspaces/${tenant.slug}/whoami`).auth(member, { type: 'bearer' });
      await whoami().expect(200);
      const providers = (await second.admin().get(`/v1/workspaces/${tenant.slug}/identity-providers`).expect(200)).body
        .data;
      await second.admin().delete(`/v1/workspaces/${tenant.slug}/identity-providers/${providers[0].id}`).expect(204);
      await eventually(async () => (await whoami()).status === 401);
    } finally {
      await first?.close();
      await second?.close();
      await issuer.close();
      await embedded?.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
