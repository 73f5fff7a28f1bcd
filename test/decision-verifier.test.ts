import { execFile } from 'node:child_process';
import { createPublicKey } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { jest } from '@jest/globals';
import { sql } from 'kysely';
import pg from 'pg';
import { pino } from 'pino';
import { checkpointVerifies, linkHash, signCheckpoint } from '../src/features/decisions/chain.ts';
import { Sealer } from '../src/features/decisions/sealer.ts';
import { generateSigningKey } from '../src/features/decisions/signing.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { repositoryRoot } from './support/process.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

jest.setTimeout(120_000);

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let folder: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  folder = await mkdtemp(path.join(tmpdir(), 'cordon-verify-log-'));
});
afterAll(async () => {
  await rm(folder, { recursive: true, force: true });
  await issuer.close();
  await owner.end();
  await cordon.close();
});

interface Auditor {
  tenant: TestTenant;
  token: string;
}

async function auditedTenant(prefix: string, app = cordon): Promise<Auditor> {
  const tenant = await createTenant(app, issuer, prefix);
  return { tenant, token: await tenant.token('user_auditor', 'auditor') };
}

async function decide(app: TestApp, { tenant }: Auditor, count: number): Promise<void> {
  const viewer = await tenant.token('user_v', 'viewer');
  const checks = Array.from({ length: count }, (_, index) => ({
    action: 'read',
    subject: 'Task',
    resource: { id: `t${index}` },
  }));
  await app
    .http()
    .post(`/v1/workspaces/${tenant.slug}/check`)
    .auth(viewer, { type: 'bearer' })
    .send({ checks })
    .expect(200);
}

/** NDJSON is not a type supertest buffers by itself. */
const asText = (message: unknown, callback: (error: Error | null, body: string) => void) => {
  const response = message as IncomingMessage;
  let body = '';
  response.setEncoding('utf8');
  response.on('data', (chunk: string) => (body += chunk));
  response.on('end', () => callback(null, body));
};

/** Saves what a route answers into a file, as an auditor would with curl. */
async function save({ tenant, token }: Auditor, route: string, file: string, app = cordon): Promise<string> {
  const response = await app
    .http()
    .get(`/v1/workspaces/${tenant.slug}/decisions/${route}`)
    .auth(token, { type: 'bearer' })
    .buffer(true)
    .parse(asText)
    .expect(200);
  const saved = path.join(folder, `${tenant.slug}-${file}`);
  await writeFile(saved, response.body as string);
  return saved;
}

/** The three files the verifier takes, fetched checkpoints first (see docs/decision-log.md). */
async function auditFiles(auditor: Auditor, app = cordon) {
  const checkpoints = await save(auditor, 'checkpoints?format=ndjson', 'checkpoints.ndjson', app);
  const publicKey = await save(auditor, 'public-key', 'public-key.json', app);
  const exported = await save(auditor, 'export', 'export.ndjson', app);
  return { exported, checkpoints, publicKey };
}

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The verifier as a process of its own, with no database settings in its environment. */
function verifyLog(args: string[], command = [process.execPath, 'src/features/decisions/verify-log.ts']): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      command[0]!,
      [...command.slice(1), ...args],
      { cwd: repositoryRoot, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' } },
      (error, stdout, stderr) => resolve({ code: error ? Number(error.code) : 0, stdout, stderr }),
    );
  });
}

const verifyFiles = (files: { exported: string; checkpoints: string; publicKey: string }) =>
  verifyLog([files.exported, files.checkpoints, files.publicKey]);

const serverVerdict = async ({ tenant, token }: Auditor, app = cordon) =>
  (await app.http().get(`/v1/workspaces/${tenant.slug}/decisions/verify`).auth(token, { type: 'bearer' }).expect(200))
    .body;

/** The owner edits history behind the trigger's back, as an attacker with database access would. */
async function asTamperer<T>(work: () => Promise<T>): Promise<T> {
  await owner.query('set session_replication_role = replica');
  try {
    return await work();
  } finally {
    await owner.query('set session_replication_role = origin');
  }
}

const decisionAt = async ({ tenant }: Auditor, seq: number) =>
  (await owner.query('select decision_id from decision_seals where workspace_id = $1 and seq = $2', [tenant.id, seq]))
    .rows[0].decision_id as string;

/** Two sealed batches: two checkpoints. */
async function sealedTenant(prefix: string): Promise<Auditor> {
  const auditor = await auditedTenant(prefix);
  await decide(cordon, auditor, 10);
  await cordon.sealer.sealWorkspace(auditor.tenant.id);
  await decide(cordon, auditor, 10);
  await cordon.sealer.sealWorkspace(auditor.tenant.id);
  return auditor;
}

describe('GET …/decisions/checkpoints', () => {
  it('pages the signed checkpoints by seq, each verifying over exactly what it carries', async () => {
    const auditor = await sealedTenant('checkpoints');
    await decide(cordon, auditor, 3);
    await cordon.sealer.sealWorkspace(auditor.tenant.id);
    const route = `/v1/workspaces/${auditor.tenant.slug}/decisions/checkpoints`;
    const pages = [];
    let cursor: string | null | undefined;
    do {
      const { body } = await cordon
        .http()
        .get(route)
        .query({ limit: 2, ...(cursor ? { cursor } : {}) })
        .auth(auditor.token, { type: 'bearer' })
        .expect(200);
      pages.push(...body.data);
      cursor = body.nextCursor;
    } while (cursor);
    expect(pages).toHaveLength(3);
    expect(pages.map((checkpoint) => checkpoint.seq)).toEqual([...pages.map((item) => item.seq)].sort((a, b) => a - b));
    const { rows: seals } = await owner.query('select seq::int, hash from decision_seals where workspace_id = $1', [
      auditor.tenant.id,
    ]);
    const hashAt = new Map(seals.map((seal: { seq: number; hash: string }) => [seal.seq, seal.hash]));
    for (const checkpoint of pages) {
      expect(Object.keys(checkpoint).sort()).toEqual(['at', 'hash', 'keyId', 'seq', 'signature', 'workspaceId']);
      expect(checkpoint).toMatchObject({ workspaceId: auditor.tenant.id, keyId: cordon.signingKey.keyId });
      expect(checkpoint.hash).toBe(hashAt.get(checkpoint.seq));
      const { keyId: _keyId, signature, ...signed } = checkpoint;
      expect(checkpointVerifies(signed, signature, cordon.signingKey.publicKey)).toBe(true);
    }

    const ndjson = await readFile(await save(auditor, 'checkpoints?format=ndjson', 'all.ndjson'), 'utf8');
    expect(
      ndjson
        .trim()
        .split('\n')
        .map((line) => JSON.parse(line)),
    ).toEqual(pages);
  });

  it('is an auditor route: refused to a member, logged as a decision, a bad cursor is a 400', async () => {
    const auditor = await sealedTenant('checkpoints-auth');
    const route = `/v1/workspaces/${auditor.tenant.slug}/decisions/checkpoints`;
    const member = await auditor.tenant.token('user_m', 'member');
    await cordon.http().get(route).auth(member, { type: 'bearer' }).expect(403);
    await cordon.http().get(route).query({ format: 'ndjson' }).auth(member, { type: 'bearer' }).expect(403);
    await cordon.http().get(route).query({ cursor: 'nonsense' }).auth(auditor.token, { type: 'bearer' }).expect(400);
    await cordon.http().get(route).auth(auditor.token, { type: 'bearer' }).expect(200);
    const { rows } = await owner.query(
      `select principal_id, allowed, reason from decisions
       where workspace_id = $1 and subject = 'DecisionLog' order by position`,
      [auditor.tenant.id],
    );
    expect(rows).toEqual([
      { principal_id: 'user_m', allowed: false, reason: expect.any(String) },
      { principal_id: 'user_m', allowed: false, reason: expect.any(String) },
      { principal_id: 'user_auditor', allowed: true, reason: expect.stringContaining('not done: 400 invalid_cursor') },
      { principal_id: 'user_auditor', allowed: true, reason: expect.not.stringContaining('not done') },
    ]);
  });
});

describe('GET …/decisions/verify', () => {
  it('reports no break for batches sealed while it reads the chain', async () => {
    const auditor = await sealedTenant('verify-racing');
    for (let round = 0; round < 10; round += 1) await decide(cordon, auditor, 100);
    await cordon.sealer.sealWorkspace(auditor.tenant.id);
    const sealing = (async () => {
      for (let round = 0; round < 20; round += 1) {
        await decide(cordon, auditor, 2);
        await cordon.sealer.sealWorkspace(auditor.tenant.id);
      }
    })();
    const verdicts = [];
    for (let round = 0; round < 20; round += 1) verdicts.push(await serverVerdict(auditor));
    await sealing;
    expect(verdicts.filter((verdict) => !verdict.verified)).toEqual([]);
  });
});

describe('npm run verify-log', () => {
  it('verifies an intact log from the files the routes give, unsealed rows reported as such', async () => {
    const auditor = await sealedTenant('offline-ok');
    const files = await auditFiles(auditor);
    const run = await verifyLog(
      [files.exported, files.checkpoints, files.publicKey],
      ['npm', 'run', '--silent', 'verify-log', '--'],
    );
    expect(run).toMatchObject({ code: 0, stderr: '' });
    expect(run.stdout).toMatch(
      /^VERIFIED: workspace [0-9a-f-]{36}: seq 1–22 recomputed, signed up to seq 22 by 2 checkpoint\(s\) of key\(s\) [\w-]{22}; \d+ unsealed/,
    );
    expect(await serverVerdict(auditor)).toMatchObject({ verified: true });
  });

  it('verifies rows that were sealed out of append order (a late commit), as the export lists them', async () => {
    const auditor = await sealedTenant('offline-late');
    // A row whose position comes before the sealed ones, as a transaction that committed late has.
    await owner.query(
      `insert into decisions (id, position, workspace_id, at, request_id, principal_id, principal_roles, principal_provider, action, operation, subject, allowed, reason, latency_micros)
       select gen_random_uuid(), min(position) - 1, workspace_id, now(), 'late', 'user_late', '{viewer}', 'clerk', 'read', 'check', 'Task', true, 'late', 1
       from decisions where workspace_id = $1 group by workspace_id`,
      [auditor.tenant.id],
    );
    // Today's sealer never passes a position that is not final, so such a row can only come from a
    // log sealed before progress was recorded: without a progress row, the sealer catches up from
    // the oldest unsealed decision, and seals the late row after the others.
    await owner.query('delete from decision_seal_progress where workspace_id = $1', [auditor.tenant.id]);
    await new Sealer(cordon.database, cordon.signingKey, pino({ level: 'silent' })).sealWorkspace(auditor.tenant.id);
    const files = await auditFiles(auditor);
    const rows = (await readFile(files.exported, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(rows[0]).toMatchObject({ requestId: 'late', seq: expect.any(Number) });
    expect(rows[0].seq).toBe(23);
    const run = await verifyFiles(files);
    expect(run).toMatchObject({ code: 0 });
    expect(run.stdout).toMatch(/^VERIFIED: .*: seq 1–23 recomputed, signed up to seq 23 by 3 checkpoint/);
    expect(await serverVerdict(auditor)).toMatchObject({ verified: true });
  });

  it('names a changed reason at its seq, as the server does', async () => {
    const auditor = await sealedTenant('offline-reason');
    const id = await decisionAt(auditor, 7);
    await asTamperer(() => owner.query("update decisions set reason = 'rewritten' where id = $1", [id]));
    const run = await verifyFiles(await auditFiles(auditor));
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^NOT VERIFIED: .*\nfirst break at seq 7: the decision does not match its hash\n$/);
    expect(await serverVerdict(auditor)).toMatchObject({ verified: false, firstBreak: { seq: 7 } });
  });

  it('names a deleted row at its seq, saying an export may also be filtered', async () => {
    const auditor = await sealedTenant('offline-row');
    const id = await decisionAt(auditor, 5);
    await asTamperer(() => owner.query('delete from decisions where id = $1', [id]));
    const run = await verifyFiles(await auditFiles(auditor));
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(
      'first break at seq 5: seq 5 is not in the export: the export is filtered or incomplete, or the decision was deleted',
    );
    expect(await serverVerdict(auditor)).toMatchObject({ verified: false, firstBreak: { seq: 5 } });
  });

  it('catches a deleted tail with the checkpoints kept, even after the database lost its own', async () => {
    const auditor = await sealedTenant('offline-tail');
    const checkpoints = await save(auditor, 'checkpoints?format=ndjson', 'kept.ndjson');
    const publicKey = await save(auditor, 'public-key', 'key.json');
    // The attacker removes the last three sealed decisions, their links and the last checkpoint.
    await asTamperer(async () => {
      await owner.query(
        'delete from decisions where id in (select decision_id from decision_seals where workspace_id = $1 and seq > 19)',
        [auditor.tenant.id],
      );
      await owner.query('delete from decision_seals where workspace_id = $1 and seq > 19', [auditor.tenant.id]);
      await owner.query('delete from decision_checkpoints where workspace_id = $1 and seq > 19', [auditor.tenant.id]);
    });
    expect(await serverVerdict(auditor)).toMatchObject({ verified: true });
    const exported = await save(auditor, 'export', 'after.ndjson');
    const run = await verifyLog([exported, checkpoints, publicKey]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(
      'first break at seq 20: decisions up to seq 22 were signed but are missing from the export',
    );
  });

  it('catches a history rewritten and re-signed with the signing key, against the checkpoints kept', async () => {
    const auditor = await sealedTenant('offline-resigned');
    const kept = await save(auditor, 'checkpoints?format=ndjson', 'kept.ndjson');
    const publicKey = await save(auditor, 'public-key', 'key.json');
    const id = await decisionAt(auditor, 7);
    await asTamperer(() => owner.query("update decisions set reason = 'rewritten' where id = $1", [id]));
    // The operator's key in the wrong hands: the links from seq 7 on and the checkpoints are redone.
    const rows = (await readFile(await save(auditor, 'export', 'rewritten.ndjson'), 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line))
      .filter((row) => row.seq !== null)
      .sort((left, right) => left.seq - right.seq);
    let prevHash = rows[5].hash as string;
    await asTamperer(async () => {
      for (const { prevHash: _prevHash, hash: _hash, ...decision } of rows.slice(6)) {
        const hash = linkHash(prevHash, decision);
        await owner.query('update decision_seals set prev_hash = $3, hash = $4 where workspace_id = $1 and seq = $2', [
          auditor.tenant.id,
          decision.seq,
          prevHash,
          hash,
        ]);
        const { rows: checkpoints } = await owner.query(
          `select to_char(at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') as at from decision_checkpoints
           where workspace_id = $1 and seq = $2`,
          [auditor.tenant.id, decision.seq],
        );
        if (checkpoints[0]) {
          const signed = { workspaceId: auditor.tenant.id, seq: decision.seq, hash, at: checkpoints[0].at };
          await owner.query(
            'update decision_checkpoints set hash = $3, signature = $4 where workspace_id = $1 and seq = $2',
            [auditor.tenant.id, decision.seq, hash, signCheckpoint(signed, cordon.signingKey.privateKey)],
          );
        }
        prevHash = hash;
      }
    });
    expect(await serverVerdict(auditor)).toMatchObject({ verified: true });
    const fresh = await auditFiles(auditor);
    expect((await verifyFiles(fresh)).code).toBe(0);
    const run = await verifyLog([fresh.exported, kept, publicKey]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('first break at seq 12: the chain does not match its signed checkpoint');
  });

  it('names a forged checkpoint signature', async () => {
    const auditor = await sealedTenant('offline-forged');
    const files = await auditFiles(auditor);
    const lines = (await readFile(files.checkpoints, 'utf8'))
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(lines.map((line) => line.seq)).toEqual([12, 22]);
    lines[0] = { ...lines[0], hash: 'f'.repeat(64) };
    await writeFile(files.checkpoints, lines.map((line) => JSON.stringify(line)).join('\n') + '\n');
    const run = await verifyFiles(files);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain('first break at seq 12: checkpoint signature does not verify');
  });

  it('names checkpoints of another workspace', async () => {
    const auditor = await sealedTenant('offline-mine');
    const other = await sealedTenant('offline-theirs');
    const files = await auditFiles(auditor);
    const theirs = await save(other, 'checkpoints?format=ndjson', 'theirs.ndjson');
    const run = await verifyLog([files.exported, theirs, files.publicKey]);
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(
      `first break at seq 12: the checkpoint belongs to another workspace (${other.tenant.id})`,
    );
  });

  it('says a filtered export is filtered or incomplete rather than verified', async () => {
    const auditor = await sealedTenant('offline-filtered');
    const files = await auditFiles(auditor);
    const filtered = await save(auditor, 'export?subject=Task', 'filtered.ndjson');
    const run = await verifyLog([filtered, files.checkpoints, files.publicKey]);
    expect(run.code).toBe(1);
    // Seqs 1–2 are the platform admin's creation of the workspace and its provider.
    expect(run.stdout).toContain(
      'first break at seq 1: seq 1 is not in the export: the export is filtered or incomplete',
    );
  });

  it('refuses input it cannot read with exit code 2', async () => {
    const auditor = await sealedTenant('offline-input');
    const files = await auditFiles(auditor);
    const garbage = path.join(folder, 'garbage.ndjson');
    await writeFile(garbage, '{"not": "a decision"}\n');
    const notAKey = path.join(folder, 'not-a-key.pem');
    await writeFile(notAKey, 'hello\n');
    const runs = await Promise.all([
      verifyLog([]),
      verifyLog([garbage, files.checkpoints, files.publicKey]),
      verifyLog([files.exported, garbage, files.publicKey]),
      verifyLog([files.exported, files.checkpoints, notAKey]),
      verifyLog([files.exported, path.join(folder, 'missing.ndjson'), files.publicKey]),
    ]);
    expect(runs.map((run) => run.code)).toEqual([2, 2, 2, 2, 2]);
    expect(runs[0]!.stderr).toContain('usage: npm run verify-log --');
    expect(runs[1]!.stderr).toMatch(/^cannot verify: .*garbage\.ndjson:1: /);
  });
});

describe('a rotated signing key', () => {
  it('keeps checkpoints of the earlier key verifiable, on the server and offline', async () => {
    const [first, second] = [generateSigningKey(), generateSigningKey()];
    const before = await startTestApp({ signingKey: first });
    const auditor = await auditedTenant('rotated', before);
    await decide(before, auditor, 5);
    await before.sealer.sealWorkspace(auditor.tenant.id);
    await before.close();

    const after = await startTestApp({ signingKey: second });
    try {
      await decide(after, auditor, 5);
      await after.sealer.sealWorkspace(auditor.tenant.id);
      expect(await serverVerdict(auditor, after)).toMatchObject({ verified: true });

      const { body: keys } = await after
        .http()
        .get(`/v1/workspaces/${auditor.tenant.slug}/decisions/public-key`)
        .auth(auditor.token, { type: 'bearer' })
        .expect(200);
      expect(keys).toMatchObject({ keyId: second.keyId, algorithm: 'Ed25519' });
      expect(keys.previous).toContainEqual({
        keyId: first.keyId,
        algorithm: 'Ed25519',
        publicKeyPem: first.publicKey.export({ type: 'spki', format: 'pem' }),
        jwk: expect.objectContaining({ kty: 'OKP', crv: 'Ed25519', kid: first.keyId }),
        firstUsedAt: expect.any(String),
      });
      expect(keys.previous.map((key: { keyId: string }) => key.keyId)).not.toContain(second.keyId);

      const files = await auditFiles(auditor, after);
      expect((await verifyFiles(files)).stdout).toContain(
        `by 2 checkpoint(s) of key(s) ${first.keyId}, ${second.keyId}; `,
      );
      // Given only the new key, the old key's checkpoint is one of an unknown key.
      const newOnly = path.join(folder, 'new-only.pem');
      await writeFile(newOnly, keys.publicKeyPem);
      const run = await verifyLog([files.exported, files.checkpoints, newOnly]);
      expect(run.code).toBe(1);
      expect(run.stdout).toContain(`first break at seq 7: checkpoint signed by an unknown key (${first.keyId})`);
      // PEM files of both keys, concatenated, do as well as the route's JSON.
      const both = path.join(folder, 'both.pem');
      await writeFile(
        both,
        keys.publicKeyPem + keys.previous.map((key: { publicKeyPem: string }) => key.publicKeyPem).join(''),
      );
      expect(createPublicKey(keys.publicKeyPem).asymmetricKeyType).toBe('ed25519');
      expect((await verifyLog([files.exported, files.checkpoints, both])).code).toBe(0);
    } finally {
      await after.close();
    }
  });

  it('keeps every registered key: no update or delete, for the serving role or the owner', async () => {
    const serving = (statement: ReturnType<typeof sql>) =>
      cordon.database.outsideWorkspaces((transaction) => transaction.query(statement));
    await expect(serving(sql`delete from decision_signing_keys`)).rejects.toThrow(/permission denied/);
    await expect(serving(sql`update decision_signing_keys set public_key_pem = ''`)).rejects.toThrow(
      /permission denied/,
    );
    await expect(owner.query('delete from decision_signing_keys')).rejects.toThrow(/signing keys are kept/);
    await expect(owner.query('truncate decision_signing_keys')).rejects.toThrow(/signing keys are kept/);
    const { rows } = await owner.query('select key_id from decision_signing_keys where key_id = $1', [
      cordon.signingKey.keyId,
    ]);
    expect(rows).toHaveLength(1);
  });

  it('still breaks on a checkpoint of a key no instance ever registered', async () => {
    // A sealer whose app never started here: its key is in no table.
    const auditor = await auditedTenant('unregistered');
    await decide(cordon, auditor, 3);
    const stranger = generateSigningKey();
    await new Sealer(cordon.database, stranger, pino({ level: 'silent' })).sealWorkspace(auditor.tenant.id);
    expect(await serverVerdict(auditor)).toMatchObject({
      verified: false,
      firstBreak: { seq: 5, reason: `checkpoint signed by an unknown key (${stranger.keyId})` },
    });
    const run = await verifyFiles(await auditFiles(auditor));
    expect(run.code).toBe(1);
    expect(run.stdout).toContain(`first break at seq 5: checkpoint signed by an unknown key (${stranger.keyId})`);
  });
});
