import { randomUUID } from 'node:crypto';
import { jest } from '@jest/globals';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { prepareDatabase } from '../src/db/bootstrap.ts';
import type { Database } from '../src/db/database.ts';
import { appendDecisions, type DecisionEntry } from '../src/policy/decision-log.ts';
import { createScratchDatabase, ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Positions are taken at insert and transactions commit out of order: a decision can become
 * visible long after later ones were committed and sealed. These tests hold such a transaction
 * open on one connection while others append and seal, and look at what was sealed from a third.
 */

jest.setTimeout(120_000);

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
});
afterEach(() => rollBackOpenTransactions());
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

const entries = (count: number): DecisionEntry[] =>
  Array.from({ length: count }, (_, index) => ({
    action: 'read',
    operation: 'check',
    subject: 'Task',
    resourceId: `task-${index}`,
    decision: { allowed: true, policyId: null, policyVersion: null, ruleIndex: null, reason: 'sealer test' },
  }));

const batchOf = (workspaceId: string, requestId: string, count: number) => [
  {
    context: {
      workspaceId,
      requestId,
      principal: { id: 'user_sealer', roles: ['viewer'], provider: 'clerk' },
      ip: null,
      userAgent: null,
      startedAt: process.hrtime.bigint(),
    },
    entries: entries(count),
  },
];

/** `count` decisions in one committed statement, the way the group commit writes them. */
async function append(database: Database, workspaceId: string, count: number, requestId = randomUUID()): Promise<void> {
  await database.inWorkspace(
    workspaceId,
    (scope) => sql`with ${scope} ${appendDecisions(batchOf(workspaceId, requestId, count))}`,
  );
}

class RolledBack extends Error {}

interface OpenTransaction {
  /** The position its decision took. */
  position: number;
  commit(): Promise<void>;
  rollback(): Promise<void>;
}

const open = new Set<OpenTransaction>();

/** A test that failed half-way must not leave a transaction (and its gate) open behind it. */
const rollBackOpenTransactions = () => Promise.all([...open].map((transaction) => transaction.rollback()));

/** A transaction that has appended one decision and stays open (one connection of the pool). */
async function openTransaction(database: Database, workspaceId: string): Promise<OpenTransaction> {
  const requestId = randomUUID();
  let decide!: (commit: boolean) => void;
  const decided = new Promise<boolean>((resolve) => (decide = resolve));
  let appended!: (position: number) => void;
  const inserted = new Promise<number>((resolve) => (appended = resolve));
  const finished = database
    .withWorkspace(workspaceId, async (scope) => {
      await scope.query(sql`with ${scope.cte} ${appendDecisions(batchOf(workspaceId, requestId, 1))}`);
      const [row] = await scope.query(
        sql<{ position: string }>`select position from decisions where request_id = ${requestId}`,
      );
      appended(Number(row!.position));
      if (!(await decided)) throw new RolledBack();
    })
    .catch((error: unknown) => {
      if (!(error instanceof RolledBack)) throw error;
    });
  const position = await Promise.race([
    inserted,
    finished.then(() => Promise.reject(new Error('the transaction ended before it appended'))),
  ]);
  const end = async (commit: boolean) => {
    open.delete(transaction);
    decide(commit);
    await finished;
  };
  const transaction = { position, commit: () => end(true), rollback: () => end(false) };
  open.add(transaction);
  return transaction;
}

const verify = async (app: TestApp, tenant: TestTenant) =>
  (
    await app
      .http()
      .get(`/v1/workspaces/${tenant.slug}/decisions/verify`)
      .auth(await tenant.token('user_auditor', 'auditor'), { type: 'bearer' })
      .expect(200)
  ).body;

const pending = async (database: Database) =>
  (
    await database.query(
      sql<{ workspace_id: string }>`select workspace_id from cordon_workspaces_with_unsealed_decisions()`,
    )
  ).map((row) => row.workspace_id);

async function sealedThrough(client: pg.Client, workspaceId: string): Promise<number | undefined> {
  const { rows } = await client.query('select sealed_through from decision_seal_progress where workspace_id = $1', [
    workspaceId,
  ]);
  return rows[0] ? Number(rows[0].sealed_through) : undefined;
}

describe('a decision that commits late', () => {
  it('is sealed by the next pass after it commits, however many later decisions were sealed meanwhile', async () => {
    // A database of its own: a pass seals every workspace, and other files count their seals.
    const scratch = await createScratchDatabase();
    const { appUrl } = await prepareDatabase({ ownerUrl: scratch.url, appUrl: undefined }, pino({ level: 'silent' }));
    const app = await startTestApp({ databaseUrl: appUrl });
    const scratchOwner = new pg.Client({ connectionString: scratch.url });
    await scratchOwner.connect();
    try {
      const tenant = await createTenant(app, issuer, 'late');
      await app.sealer.sealAll();
      const late = await openTransaction(app.database, tenant.id);
      // More than the 10,000 positions the sealer used to look back over, committed…
      for (let statement = 0; statement < 3; statement += 1) await append(app.database, tenant.id, 3_400);
      // …and sealed as far as they may be while the late one is still in flight.
      await app.sealer.sealAll();
      await late.commit();

      await app.sealer.sealAll();
      const { rows } = await scratchOwner.query(
        'select count(*)::int as seals from decision_seals where workspace_id = $1 and decision_position = $2',
        [tenant.id, late.position],
      );
      expect(rows[0].seals).toBe(1);
      expect(await verify(app, tenant)).toMatchObject({ verified: true, sealed: 2 + 1 + 10_200, unsealed: 0 });
    } finally {
      await rollBackOpenTransactions();
      await scratchOwner.end();
      await app.close();
      await scratch.drop();
    }
  });

  it('never seals past a position whose transaction is still in flight', async () => {
    const tenant = await createTenant(cordon, issuer, 'in-flight');
    await cordon.sealer.sealWorkspace(tenant.id);
    const inFlight = await openTransaction(cordon.database, tenant.id);
    await append(cordon.database, tenant.id, 20);

    expect(await cordon.sealer.sealWorkspace(tenant.id)).toBe(0);
    const { rows } = await owner.query(
      'select count(*)::int as seals from decision_seals where workspace_id = $1 and decision_position >= $2',
      [tenant.id, inFlight.position],
    );
    expect(rows[0].seals).toBe(0);
    expect(await sealedThrough(owner, tenant.id)).toBeLessThan(inFlight.position);

    await inFlight.commit();
    expect(await cordon.sealer.sealWorkspace(tenant.id)).toBe(21);
    // Sealed in position order: the late one first, then the 20 that committed before it.
    const { rows: links } = await owner.query(
      'select decision_position::bigint as position from decision_seals where workspace_id = $1 order by seq',
      [tenant.id],
    );
    const positions = links.map((link: { position: string }) => Number(link.position));
    expect(positions).toEqual([...positions].sort((left, right) => left - right));
    expect(await verify(cordon, tenant)).toMatchObject({ verified: true, unsealed: 0 });
  });

  it('never holds sealing back once it rolls back', async () => {
    const tenant = await createTenant(cordon, issuer, 'rolled-back');
    const aborted = await openTransaction(cordon.database, tenant.id);
    await append(cordon.database, tenant.id, 5);
    await aborted.rollback();

    const started = Date.now();
    // The platform admin's two decisions (workspace, provider) and the five.
    expect(await cordon.sealer.sealWorkspace(tenant.id)).toBe(7);
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(await sealedThrough(owner, tenant.id)).toBeGreaterThan(aborted.position);
    expect(await pending(cordon.database)).not.toContain(tenant.id);
    expect(await verify(cordon, tenant)).toMatchObject({ verified: true, sealed: 7, unsealed: 0 });
  });
});

describe('the gate', () => {
  it('lets a decision take its position only after it passed the gate', async () => {
    const tenant = await createTenant(cordon, issuer, 'gate');
    // What the sealer does for a moment: hold the workspace's gate exclusively.
    await owner.query(`select pg_advisory_lock(hashtextextended('cordon:decisions:' || $1::uuid::text, 0))`, [
      tenant.id,
    ]);
    let appended: Promise<void> | undefined;
    let last: number;
    try {
      const requestId = randomUUID();
      appended = append(cordon.database, tenant.id, 1, requestId);
      await eventually(async () => {
        const { rows } = await owner.query(
          `select count(*)::int as waiting from pg_locks
           where locktype = 'advisory' and not granted and objsubid = 1
             and ((classid::bigint << 32) | objid::bigint) = hashtextextended('cordon:decisions:' || $1::uuid::text, 0)`,
          [tenant.id],
        );
        return rows[0].waiting === 1;
      });
      last = Number((await owner.query('select last_value from decisions_position_seq')).rows[0].last_value);
      const { rows } = await owner.query('select count(*)::int as count from decisions where request_id = $1', [
        requestId,
      ]);
      expect(rows[0].count).toBe(0);
    } finally {
      await owner.query(`select pg_advisory_unlock(hashtextextended('cordon:decisions:' || $1::uuid::text, 0))`, [
        tenant.id,
      ]);
      await appended;
    }
    const { rows } = await owner.query(
      "select min(position)::bigint as position from decisions where workspace_id = $1 and reason = 'sealer test'",
      [tenant.id],
    );
    expect(Number(rows[0].position)).toBeGreaterThan(last);
  });
});

describe('a log sealed before sealing kept its progress', () => {
  it('seals, once, a decision below the highest sealed position that the old sealer never saw', async () => {
    const tenant = await createTenant(cordon, issuer, 'upgrade');
    const hole = await openTransaction(cordon.database, tenant.id);
    await hole.rollback();
    await append(cordon.database, tenant.id, 5);
    expect(await cordon.sealer.sealWorkspace(tenant.id)).toBe(7);
    // As the log stood before progress was kept: no progress row, and a row below the sealed ones
    // that committed too late for the window the old sealer looked back over.
    await owner.query('delete from decision_seal_progress where workspace_id = $1', [tenant.id]);
    await owner.query(
      `insert into decisions (id, position, workspace_id, at, request_id, principal_id, principal_roles,
         principal_provider, action, operation, subject, allowed, reason, latency_micros)
       values (gen_random_uuid(), $2, $1, now(), 'missed', 'user_sealer', '{viewer}', 'clerk', 'read', 'check',
         'Task', true, 'missed by the window', 1)`,
      [tenant.id, hole.position],
    );
    expect(await pending(cordon.database)).toContain(tenant.id);

    expect(await cordon.sealer.sealWorkspace(tenant.id)).toBe(1);
    expect(await cordon.sealer.sealWorkspace(tenant.id)).toBe(0);
    expect(await pending(cordon.database)).not.toContain(tenant.id);
    expect(await verify(cordon, tenant)).toMatchObject({ verified: true, sealed: 8, unsealed: 0 });
  });
});
