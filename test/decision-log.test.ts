import { randomBytes, randomUUID } from 'node:crypto';
import { get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jest } from '@jest/globals';
import pg from 'pg';
import { sql } from 'kysely';
import { pino } from 'pino';
import { Sealer } from '../src/features/decisions/sealer.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { appendDecisions } from '../src/policy/decision-log.ts';
import { createScratchDatabase, ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { startService } from './support/process.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

jest.setTimeout(120_000);

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

async function decide(app: TestApp, tenant: TestTenant, token: string, count: number): Promise<void> {
  const checks = Array.from({ length: count }, (_, index) => ({
    action: 'read',
    subject: 'Task',
    resource: { id: `task-${index}` },
  }));
  await app
    .http()
    .post(`/v1/workspaces/${tenant.slug}/check`)
    .auth(token, { type: 'bearer' })
    .send({ checks })
    .expect(200);
}

const verify = async (tenant: TestTenant, token: string) =>
  (
    await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/decisions/verify`)
      .auth(token, { type: 'bearer' })
      .expect(200)
  ).body;

/** The owner edits history behind the trigger's back, as an attacker with database access would. */
async function asTamperer<T>(work: () => Promise<T>): Promise<T> {
  await owner.query('set session_replication_role = replica');
  try {
    return await work();
  } finally {
    await owner.query('set session_replication_role = origin');
  }
}

describe('the hash chain', () => {
  it('seals decisions into a verifiable chain with signed checkpoints', async () => {
    const tenant = await createTenant(cordon, issuer, 'chain');
    const auditor = await tenant.token('user_auditor', 'auditor');
    await decide(cordon, tenant, await tenant.token('user_v', 'viewer'), 30);
    expect(await verify(tenant, auditor)).toMatchObject({ verified: true, sealed: 0 });
    await cordon.sealer.sealWorkspace(tenant.id);
    const verdict = await verify(tenant, auditor);
    // The verify call's own decision is written once its answer is known, just before it leaves.
    expect(verdict).toMatchObject({ verified: true, unsealed: 0 });
    expect(verdict.sealed).toBeGreaterThanOrEqual(31);

    const page = await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/decisions`)
      .query({ limit: 5, subject: 'Task' })
      .auth(auditor, { type: 'bearer' })
      .expect(200);
    expect(page.body.data).toHaveLength(5);
    expect(page.body.data[0]).toMatchObject({
      seq: expect.any(Number),
      hash: expect.stringMatching(/^[0-9a-f]{64}$/),
      prevHash: expect.stringMatching(/^[0-9a-f]{64}$/),
    });
    expect(page.body.nextCursor).toEqual(expect.any(String));

    await cordon.sealer.sealWorkspace(tenant.id);
    const checkpoints = (query: Record<string, unknown>) =>
      cordon
        .http()
        .get(`/v1/workspaces/${tenant.slug}/decisions/checkpoints`)
        .query(query)
        .auth(auditor, { type: 'bearer' })
        .expect(200);
    const counted = (await checkpoints({ limit: 1, count: true })).body;
    const all = (await checkpoints({ format: 'ndjson' })).text.trim().split('\n');
    expect(all.length).toBeGreaterThanOrEqual(2);
    expect(counted).toMatchObject({ data: [expect.anything()], nextCursor: expect.any(String), count: all.length });
  });

  it('reports a row changed directly in SQL at its seq', async () => {
    const tenant = await createTenant(cordon, issuer, 'tamper');
    const auditor = await tenant.token('user_auditor', 'auditor');
    await decide(cordon, tenant, await tenant.token('user_v', 'viewer'), 20);
    await cordon.sealer.sealWorkspace(tenant.id);
    const { rows } = await owner.query('select decision_id from decision_seals where workspace_id = $1 and seq = 7', [
      tenant.id,
    ]);
    await asTamperer(() =>
      owner.query("update decisions set allowed = not allowed, reason = 'rewritten' where id = $1", [
        rows[0].decision_id,
      ]),
    );
    expect(await verify(tenant, auditor)).toMatchObject({ verified: false, firstBreak: { seq: 7 } });
  });

  it('catches the deletion of the newest rows against the last checkpoint', async () => {
    const tenant = await createTenant(cordon, issuer, 'tail');
    const auditor = await tenant.token('user_auditor', 'auditor');
    await decide(cordon, tenant, await tenant.token('user_v', 'viewer'), 20);
    await cordon.sealer.sealWorkspace(tenant.id);
    const { rows } = await owner.query('select max(seq)::int as last from decision_seals where workspace_id = $1', [
      tenant.id,
    ]);
    const last = rows[0].last as number;
    await asTamperer(async () => {
      await owner.query(
        'delete from decisions where id in (select decision_id from decision_seals where workspace_id = $1 and seq > $2)',
        [tenant.id, last - 3],
      );
      await owner.query('delete from decision_seals where workspace_id = $1 and seq > $2', [tenant.id, last - 3]);
    });
    expect(await verify(tenant, auditor)).toMatchObject({ verified: false, firstBreak: { seq: last - 2 } });
  });

  it('forms one unforked chain from two instances writing and sealing at once', async () => {
    const second = await startTestApp({ signingKey: cordon.signingKey });
    try {
      const tenant = await createTenant(cordon, issuer, 'fork');
      const viewer = await tenant.token('user_v', 'viewer');
      const writers = [cordon, second].flatMap((app) =>
        Array.from({ length: 10 }, () => decide(app, tenant, viewer, 5)),
      );
      const sealers = Array.from({ length: 10 }, (_, index) =>
        (index % 2 ? cordon : second).sealer.sealWorkspace(tenant.id),
      );
      await Promise.all([...writers, ...sealers]);
      await cordon.sealer.sealWorkspace(tenant.id);
      const { rows } = await owner.query(
        'select count(*)::int as seals, max(seq)::int as last, count(distinct decision_id)::int as decisions from decision_seals where workspace_id = $1',
        [tenant.id],
      );
      // 100 checks, and the platform admin's two changes: creating the workspace and its provider.
      expect(rows[0]).toEqual({ seals: 102, last: 102, decisions: 102 });
      expect(await verify(tenant, await tenant.token('user_a', 'auditor'))).toMatchObject({
        verified: true,
        sealed: 102,
      });
      const { rows: checkpoints } = await owner.query(
        'select count(*)::int as count from decision_checkpoints where workspace_id = $1',
        [tenant.id],
      );
      expect(checkpoints[0].count).toBeGreaterThanOrEqual(1);
    } finally {
      await second.close();
    }
  });

  it('names a checkpoint signed by a key it does not know', async () => {
    // Every started instance registers its key: a stranger's sealer is one that never started here.
    const stranger = new Sealer(cordon.database, generateSigningKey(), pino({ level: 'silent' }));
    const tenant = await createTenant(cordon, issuer, 'stranger');
    await decide(cordon, tenant, await tenant.token('user_v', 'viewer'), 3);
    await stranger.sealWorkspace(tenant.id);
    expect(await verify(tenant, await tenant.token('user_a', 'auditor'))).toMatchObject({
      verified: false,
      // Seqs 1–2 are the platform admin's workspace and provider creation, 3–5 the checks.
      firstBreak: { seq: 5, reason: expect.stringContaining('unknown key') },
    });
  });
});

describe('append-only, by grants and by trigger', () => {
  it('refuses UPDATE and DELETE to the serving role, and to the owner too', async () => {
    const tenant = await createTenant(cordon, issuer, 'grants');
    await decide(cordon, tenant, await tenant.token('user_v', 'viewer'), 1);
    const serving = (statement: ReturnType<typeof sql>) =>
      cordon.database.withWorkspace(tenant.id, (scope) => scope.query(statement));
    await expect(serving(sql`update decisions set reason = 'x'`)).rejects.toThrow(/permission denied/);
    await expect(serving(sql`delete from decisions`)).rejects.toThrow(/permission denied/);
    await expect(serving(sql`delete from decision_seals`)).rejects.toThrow(/permission denied/);
    await expect(owner.query("update decisions set reason = 'x' where workspace_id = $1", [tenant.id])).rejects.toThrow(
      /append-only/,
    );
    await expect(owner.query('delete from decisions where workspace_id = $1', [tenant.id])).rejects.toThrow(
      /append-only/,
    );
  });

  it('scopes the one-statement append: rows of another workspace are refused by RLS', async () => {
    const mine = await createTenant(cordon, issuer, 'scope-a');
    const theirs = await createTenant(cordon, issuer, 'scope-b');
    {
      const context = {
        workspaceId: theirs.id,
        requestId: 'forged',
        principal: { id: 'mallory', roles: ['admin'], provider: 'x' },
        ip: null,
        userAgent: null,
        startedAt: process.hrtime.bigint(),
      };
      const entries = [
        {
          action: 'read',
          operation: 'check' as const,
          subject: 'Task',
          decision: { allowed: true, policyId: null, policyVersion: null, ruleIndex: null, reason: 'forged' },
        },
      ];
      const append = (workspaceId: string) =>
        cordon.database.inWorkspace(
          workspaceId,
          (scope) => sql`with ${scope} ${appendDecisions([{ context, entries }])}`,
        );
      await expect(append(mine.id)).rejects.toThrow(/row-level security/);
      await append(theirs.id);
      const { rows } = await owner.query("select workspace_id from decisions where request_id = 'forged'");
      expect(rows).toEqual([{ workspace_id: theirs.id }]);
    }
  });

  it('still lets a workspace deletion remove its log', async () => {
    const tenant = await createTenant(cordon, issuer, 'gone');
    await decide(cordon, tenant, await tenant.token('user_v', 'viewer'), 3);
    await cordon.sealer.sealWorkspace(tenant.id);
    await cordon.admin().delete(`/v1/workspaces/${tenant.slug}`).expect(204);
    const { rows } = await owner.query(
      'select (select count(*) from decisions where workspace_id = $1)::int as decisions, (select count(*) from decision_seals where workspace_id = $1)::int as seals',
      [tenant.id],
    );
    expect(rows[0]).toEqual({ decisions: 0, seals: 0 });
  });
});

describe('auditor routes', () => {
  it('refuses a member and answers an auditor', async () => {
    const tenant = await createTenant(cordon, issuer, 'aud');
    const member = await tenant.token('user_m', 'member');
    const denied = await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/decisions`)
      .auth(member, { type: 'bearer' })
      .expect(403);
    expect(denied.body.detail).toBe('members do not administer the workspace');
    const key = await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/decisions/public-key`)
      .auth(await tenant.token('user_a', 'auditor'), { type: 'bearer' })
      .expect(200);
    expect(key.body).toMatchObject({
      algorithm: 'Ed25519',
      keyId: cordon.signingKey.keyId,
      jwk: { kty: 'OKP', crv: 'Ed25519' },
    });
  });

  it('filters by principal, action, allowed and time', async () => {
    const tenant = await createTenant(cordon, issuer, 'filter');
    const auditor = await tenant.token('user_a', 'auditor');
    const viewer = await tenant.token('user_v', 'viewer');
    await cordon
      .http()
      .post(`/v1/workspaces/${tenant.slug}/check`)
      .auth(viewer, { type: 'bearer' })
      .send({
        checks: [
          { action: 'read', subject: 'Task' },
          { action: 'delete', subject: 'Task' },
        ],
      })
      .expect(200);
    const query = (filters: Record<string, string>) =>
      cordon
        .http()
        .get(`/v1/workspaces/${tenant.slug}/decisions`)
        .query(filters)
        .auth(auditor, { type: 'bearer' })
        .expect(200);
    expect(
      (await query({ principalId: 'user_v', allowed: 'false' })).body.data.map((row: { action: string }) => row.action),
    ).toEqual(['delete']);
    expect((await query({ principalId: 'user_v', action: 'read' })).body.data).toHaveLength(1);
    expect((await query({ role: 'viewer' })).body.data).toHaveLength(2);
    expect((await query({ from: new Date(Date.now() + 60_000).toISOString() })).body.data).toHaveLength(0);
    await cordon
      .http()
      .get(`/v1/workspaces/${tenant.slug}/decisions`)
      .query({ allowed: 'maybe' })
      .auth(auditor, { type: 'bearer' })
      .expect(400);

    // count=true counts what the filters select across pages, in this workspace only (another
    // workspace's viewer has decisions of the same principal id and role).
    const other = await createTenant(cordon, issuer, 'filter-other');
    await cordon
      .http()
      .post(`/v1/workspaces/${other.slug}/check`)
      .auth(await other.token('user_v', 'viewer'), { type: 'bearer' })
      .send({ checks: [{ action: 'read', subject: 'Task' }] })
      .expect(200);
    const counted = (await query({ role: 'viewer', limit: '1', count: 'true' })).body;
    expect(counted).toMatchObject({ data: [expect.anything()], nextCursor: expect.any(String), count: 2 });
    expect((await query({ principalId: 'user_v', allowed: 'false', count: 'true' })).body.count).toBe(1);
    expect((await query({ role: 'viewer' })).body).not.toHaveProperty('count');
  });

  it('exports 100k decisions as NDJSON and CSV in constant memory', async () => {
    const tenant = await createTenant(cordon, issuer, 'export');
    const auditor = await tenant.token('user_a', 'auditor');
    await owner.query(
      `insert into decisions (id, workspace_id, at, request_id, principal_id, principal_roles, principal_provider, action, operation, subject, allowed, reason, latency_micros)
       select gen_random_uuid(), $1, now(), 'req-' || n, 'user_' || (n % 100), '{viewer}', 'clerk', 'read', 'get', 'Task', true, 'viewers read with a reasonably long reason text to make rows realistic', n
       from generate_series(1, 100000) as n`,
      [tenant.id],
    );
    const server = cordon.app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    try {
      for (const format of ['ndjson', 'csv']) {
        // Live heap only: collect garbage before every reading (npm test runs with --expose-gc).
        const liveHeap = () => {
          globalThis.gc?.();
          return process.memoryUsage().heapUsed;
        };
        const baseline = liveHeap();
        let peak = baseline;
        let sinceReading = 0;
        let lines = 0;
        let bytes = 0;
        await new Promise<void>((resolve, reject) => {
          const port = (server.address() as AddressInfo).port;
          get(
            {
              host: '127.0.0.1',
              port,
              path: `/v1/workspaces/${tenant.slug}/decisions/export?format=${format}&subject=Task`,
              headers: { authorization: `Bearer ${auditor}` },
            },
            (response) => {
              expect(response.statusCode).toBe(200);
              response.on('data', (chunk: Buffer) => {
                bytes += chunk.length;
                sinceReading += chunk.length;
                for (const byte of chunk) if (byte === 10) lines += 1;
                if (sinceReading > 4_000_000) {
                  sinceReading = 0;
                  peak = Math.max(peak, liveHeap());
                }
              });
              response.on('end', resolve);
              response.on('error', reject);
            },
          ).on('error', reject);
        });
        expect(lines).toBe(format === 'csv' ? 100_001 : 100_000);
        expect(bytes).toBeGreaterThan(format === 'csv' ? 15_000_000 : 40_000_000);
        // Buffering the export would hold 20–50 MB of text (and several times that as objects).
        expect(typeof globalThis.gc).toBe('function');
        expect(peak - baseline).toBeLessThan(16 * 1024 * 1024);
      }
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('durability', () => {
  it('has a decision row for every response sent before a SIGKILL under load', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-kill-'));
    await chmod(dataDir, 0o755);
    const adminKey = randomBytes(32).toString('hex');
    const scratch = await createScratchDatabase();
    const service = await startService({
      NODE_ENV: 'test',
      PORT: '0',
      DATA_DIR: dataDir,
      DATABASE_URL: scratch.url,
      ADMIN_API_KEY: adminKey,
      LOG_LEVEL: 'info',
    });
    const base = `http://127.0.0.1:${service.port}`;
    try {
      const admin = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };
      const slug = `kill-${randomUUID().slice(0, 8)}`;
      const orgId = `org_${randomUUID().slice(0, 8)}`;
      await fetch(`${base}/v1/workspaces`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({ slug, name: 'Kill' }),
      });
      await fetch(`${base}/v1/workspaces/${slug}/identity-providers`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({ name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId }),
      });
      const token = await issuer.sign({ v: 2, sub: 'user_load', o: { id: orgId, rol: 'viewer' } });
      const answered: string[] = [];
      let stop = false;
      const worker = async () => {
        while (!stop) {
          const requestId = randomUUID();
          try {
            const response = await fetch(`${base}/v1/workspaces/${slug}/check`, {
              method: 'POST',
              headers: {
                authorization: `Bearer ${token}`,
                'content-type': 'application/json',
                'x-request-id': requestId,
              },
              body: JSON.stringify({ checks: [{ action: 'read', subject: 'Task' }] }),
            });
            if (response.status === 200) {
              await response.arrayBuffer();
              answered.push(requestId);
            }
          } catch {
            return;
          }
        }
      };
      const workers = Array.from({ length: 16 }, worker);
      while (answered.length < 300) await new Promise((resolve) => setTimeout(resolve, 10));
      service.child.kill('SIGKILL');
      stop = true;
      await Promise.all(workers);
      const scratchOwner = new pg.Client({ connectionString: scratch.url });
      await scratchOwner.connect();
      const { rows } = await scratchOwner.query('select request_id from decisions where request_id = any($1::text[])', [
        answered,
      ]);
      await scratchOwner.end();
      expect(answered.length).toBeGreaterThanOrEqual(300);
      expect(new Set(rows.map((row: { request_id: string }) => row.request_id)).size).toBe(answered.length);
    } finally {
      await service.stop('SIGKILL');
      await scratch.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
