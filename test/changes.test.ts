import { ownerClient, startTestApp, testDatabase } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant } from './support/tenant.ts';

describe('cache invalidation across instances', () => {
  it('keeps listening after its connection is killed, and applies the next change from another instance', async () => {
    const owner = await ownerClient();
    // Only these two instances' listeners are killed: other test files start instances with
    // listeners at any moment, so they are told apart by an application name of their own.
    const applicationName = `cordon-relisten-${Date.now()}`;
    const url = new URL(testDatabase.appUrl());
    url.searchParams.set('application_name', applicationName);
    // A listener's last statement is its second LISTEN (cordon_events, for realtime) once it is set up.
    const listeners = async () =>
      (
        await owner.query(
          "select pid from pg_stat_activity where application_name = $1 and query in ('listen cordon_changes', 'listen cordon_events')",
          [applicationName],
        )
      ).rows.map((row: { pid: number }) => row.pid);
    const first = await startTestApp({ listen: true, databaseUrl: url.toString() });
    const second = await startTestApp({ listen: true, databaseUrl: url.toString() });
    const issuer = await TestIssuer.start();
    try {
      const tenant = await createTenant(first, issuer, 'relisten');
      const token = await tenant.token('user_r', 'viewer');
      const whoami = () => first.http().get(`/v1/workspaces/${tenant.slug}/whoami`).auth(token, { type: 'bearer' });
      const before = await listeners();
      expect(before).toHaveLength(2);
      await owner.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [before]);
      await eventually(async () => (await listeners()).filter((pid) => !before.includes(pid)).length === 2);

      await whoami().expect(200);
      const providers = (await second.admin().get(`/v1/workspaces/${tenant.slug}/identity-providers`).expect(200)).body
        .data;
      await second.admin().delete(`/v1/workspaces/${tenant.slug}/identity-providers/${providers[0].id}`).expect(204);
      await eventually(async () => (await whoami()).status === 401);
    } finally {
      await issuer.close();
      await owner.end();
      await first.close();
      await second.close();
    }
  });

  it('applies a policy change made on another instance to the next decision', async () => {
    const first = await startTestApp({ listen: true });
    const second = await startTestApp({ listen: true });
    const issuer = await TestIssuer.start();
    try {
      const tenant = await createTenant(first, issuer, 'policy-bus');
      const viewer = await tenant.token('user_v', 'viewer');
      const check = async () =>
        (
          await first
            .http()
            .post(`/v1/workspaces/${tenant.slug}/check`)
            .auth(viewer, { type: 'bearer' })
            .send({ checks: [{ action: 'read', subject: 'Task' }] })
            .expect(200)
        ).body.results[0];
      expect(await check()).toMatchObject({ allowed: true });
      const viewerPolicy = (
        await second.admin().get(`/v1/workspaces/${tenant.slug}/policies`).expect(200)
      ).body.data.find((policy: { name: string }) => policy.name === 'viewer');
      await second
        .admin()
        .put(`/v1/workspaces/${tenant.slug}/policies/${viewerPolicy.id}`)
        .send({ name: 'viewer', roles: ['viewer'], rules: [{ action: 'read', subject: 'Workspace' }] })
        .expect(200);
      await eventually(async () => (await check()).allowed === false);
      expect(await check()).toMatchObject({ allowed: false, reason: 'default deny' });
    } finally {
      await issuer.close();
      await first.close();
      await second.close();
    }
  });

  it('validates a write against the structure as it is now, even before the change reaches this instance', async () => {
    const first = await startTestApp({ listen: true });
    const unaware = await startTestApp({ listen: false }); // never hears of changes: only the write's own check can save it
    const issuer = await TestIssuer.start();
    try {
      const tenant = await createTenant(first, issuer, 'structure-bus');
      const admin = await tenant.token('user_a', 'admin');
      const on = (instance: typeof first) => ({
        post: (path: string, body: object) =>
          instance.http().post(`/v1/workspaces/${tenant.slug}${path}`).auth(admin, { type: 'bearer' }).send(body),
        put: (path: string, body: object) =>
          instance.http().put(`/v1/workspaces/${tenant.slug}${path}`).auth(admin, { type: 'bearer' }).send(body),
      });
      await on(first)
        .post('/structures', { name: 'Note', fields: { text: { type: 'text' } } })
        .expect(201);
      await on(unaware)
        .post('/records/Note', { data: { text: 'cached' } })
        .expect(201);
      await on(first)
        .put('/structures/Note', {
          fields: { text: { type: 'text' }, color: { type: 'text', required: true, default: 'yellow' } },
        })
        .expect(200);
      const created = await on(unaware)
        .post('/records/Note', { data: { text: 'after the change' } })
        .expect(201);
      expect(created.body.data).toEqual({ text: 'after the change', color: 'yellow' });
      await on(first)
        .put('/structures/Note?force=true', {
          fields: { text: { type: 'text', maxLength: 3 }, color: { type: 'text' } },
        })
        .expect(200);
      await on(unaware)
        .post('/records/Note', { data: { text: 'too long now' } })
        .expect(400);
    } finally {
      await issuer.close();
      await first.close();
      await unaware.close();
    }
  });
});

describe('database connections that go away', () => {
  it('keeps serving when PostgreSQL terminates its connections (restart, failover, idle timeout)', async () => {
    const owner = await ownerClient();
    const applicationName = `cordon-terminated-${Date.now()}`;
    const url = new URL(testDatabase.appUrl());
    url.searchParams.set('application_name', applicationName);
    const cordon = await startTestApp({ databaseUrl: url.toString() });
    const issuer = await TestIssuer.start();
    try {
      const tenant = await createTenant(cordon, issuer, 'terminated');
      const token = await tenant.token('user_t', 'admin');
      const check = () =>
        cordon
          .http()
          .post(`/v1/workspaces/${tenant.slug}/check`)
          .auth(token, { type: 'bearer' })
          .send({ checks: [{ action: 'read', subject: 'Task' }] });
      const members = () => cordon.http().get(`/v1/workspaces/${tenant.slug}/members`).auth(token, { type: 'bearer' });
      await check().expect(200);
      await members().expect(200);
      const backends = async () =>
        (await owner.query('select pid from pg_stat_activity where application_name = $1', [applicationName])).rows.map(
          (row: { pid: number }) => row.pid,
        );
      const idle = await backends();
      // The pool for decisions and records takes the name from its URL (MikroORM's pool guards
      // its own connections the same way, and does not pass the name on).
      expect(idle.length).toBeGreaterThanOrEqual(1);
      await owner.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [idle]);
      await eventually(async () => (await backends()).every((pid) => !idle.includes(pid)));
      // Terminated connections are dropped from the pools, and the next requests get new ones.
      await check().expect(200);
      await members().expect(200);

      // A connection terminated under a running query: that request gets a 503, the next one is
      // served. The PATCH waits on a row lock held by the owner until its backend is terminated.
      const api = (path: string) => `/v1/workspaces/${tenant.slug}${path}`;
      await cordon
        .http()
        .post(api('/structures'))
        .auth(token, { type: 'bearer' })
        .send({ name: 'Note', fields: { text: { type: 'text' } } })
        .expect(201);
      const note = (
        await cordon
          .http()
          .post(api('/records/Note'))
          .auth(token, { type: 'bearer' })
          .send({ data: { text: 'a' } })
          .expect(201)
      ).body;
      const locker = await ownerClient();
      try {
        await locker.query('begin');
        await locker.query('select 1 from records where id = $1 for update', [note.id]);
        const patch = cordon
          .http()
          .patch(api(`/records/Note/${note.id}`))
          .auth(token, { type: 'bearer' })
          .send({ data: { text: 'b' } })
          .then((response) => response);
        const waiting = async () =>
          (
            await owner.query(
              "select pid from pg_stat_activity where application_name = $1 and wait_event_type = 'Lock'",
              [applicationName],
            )
          ).rows.map((row: { pid: number }) => row.pid);
        await eventually(async () => (await waiting()).length === 1);
        await owner.query('select pg_terminate_backend(pid) from unnest($1::int[]) as pid', [await waiting()]);
        const refused = await patch;
        expect(refused.status).toBe(503);
        expect(refused.body.code).toBe('database_unavailable');
      } finally {
        await locker.query('rollback');
        await locker.end();
      }
      const patched = await cordon
        .http()
        .patch(api(`/records/Note/${note.id}`))
        .auth(token, { type: 'bearer' })
        .send({ data: { text: 'c' } })
        .expect(200);
      expect(patched.body.data).toEqual({ text: 'c' });
    } finally {
      await issuer.close();
      await owner.end();
      await cordon.close();
    }
  });
});
