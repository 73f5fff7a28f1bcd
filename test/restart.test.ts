import { jest } from '@jest/globals';
import { randomBytes } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort } from './support/ports.ts';
import { startService } from './support/process.ts';

jest.setTimeout(120_000);

describe('npm start with the embedded PostgreSQL', () => {
  let dataDir: string;
  beforeAll(async () => {
    dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-restart-'));
    await chmod(dataDir, 0o755);
  });
  afterAll(() => rm(dataDir, { recursive: true, force: true }));

  it('keeps its data across a restart and stops cleanly on SIGTERM and SIGINT', async () => {
    const adminKey = randomBytes(32).toString('hex');
    const env = {
      NODE_ENV: 'development',
      PORT: '0',
      DATA_DIR: dataDir,
      EMBEDDED_PG_PORT: String(await freePort()),
      ADMIN_API_KEY: adminKey,
    };
    const headers = { authorization: `Bearer ${adminKey}`, 'content-type': 'application/json' };

    const first = await startService(env);
    const created = await fetch(`http://127.0.0.1:${first.port}/v1/workspaces`, {
      method: 'POST',
      headers,
      body: JSON.stringify({ slug: 'survives-restart', name: 'Persistent' }),
    });
    expect(created.status).toBe(201);
    expect(await first.stop('SIGTERM')).toBe(0);
    expect(first.output()).toContain('"msg":"stopped"');

    const second = await startService(env);
    const fetched = await fetch(`http://127.0.0.1:${second.port}/v1/workspaces/survives-restart`, { headers });
    expect(fetched.status).toBe(200);
    expect(await fetched.json()).toMatchObject({ slug: 'survives-restart', name: 'Persistent' });
    expect(second.output()).not.toContain('initialising embedded PostgreSQL');
    expect(await second.stop('SIGINT')).toBe(0);
  });

  it('generates a development admin key once, mode 0600, and never prints it', async () => {
    const env = { NODE_ENV: 'development', PORT: '0', DATA_DIR: dataDir, EMBEDDED_PG_PORT: String(await freePort()) };
    const service = await startService(env);
    try {
      const { readFile, stat } = await import('node:fs/promises');
      const keyFile = path.join(dataDir, 'admin-key');
      const key = (await readFile(keyFile, 'utf8')).trim();
      expect((await stat(keyFile)).mode & 0o777).toBe(0o600);
      expect(service.output()).toContain(keyFile);
      expect(service.output()).not.toContain(key);
      const response = await fetch(`http://127.0.0.1:${service.port}/v1/workspaces`, {
        headers: { authorization: `Bearer ${key}` },
      });
      expect(response.status).toBe(200);
    } finally {
      await service.stop();
    }
  });
});
