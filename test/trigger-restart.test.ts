import { jest } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createScratchDatabase } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { startService, type ServiceProcess } from './support/process.ts';
import { WebhookReceiver } from './support/webhook-receiver.ts';

jest.setTimeout(180_000);

/**
 * At least once, across a crash: `node src/main.ts` is SIGKILLed while it delivers to a slow
 * receiver and while records are still being created, then started again on the same database.
 * Every record whose create was answered before the kill must reach the receiver (duplicates
 * allowed): an event not yet matched, a delivery queued, one in flight when the process died.
 */
describe('trigger deliveries across a SIGKILL', () => {
  it('delivers every event committed before the kill, after a restart', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-kill-triggers-'));
    await chmod(dataDir, 0o755);
    const scratch = await createScratchDatabase();
    const issuer = await TestIssuer.start();
    const receiver = await WebhookReceiver.start();
    receiver.answer = () => ({ status: 204, delayMs: 100 });
    const adminKey = randomBytes(32).toString('hex');
    const env = {
      NODE_ENV: 'test',
      PORT: '0',
      DATA_DIR: dataDir,
      DATABASE_URL: scratch.url,
      ADMIN_API_KEY: adminKey,
      LOG_LEVEL: 'info',
    };
    let service: ServiceProcess | undefined;
    try {
      service = await startService(env);
      const base = () => `http://127.0.0.1:${service!.port}`;
      const call = async (method: string, route: string, body: unknown, token = adminKey) => {
        const response = await fetch(`${base()}${route}`, {
          method,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return { status: response.status, body: (await response.json()) as Record<string, unknown> };
      };
      const slug = `kill-${randomUUID().slice(0, 8)}`;
      const orgId = `org_${randomUUID().slice(0, 8)}`;
      expect((await call('POST', '/v1/workspaces', { slug, name: 'Kill' })).status).toBe(201);
      const provider = { name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId };
      expect((await call('POST', `/v1/workspaces/${slug}/identity-providers`, provider)).status).toBe(201);
      const structure = { name: 'Task', fields: { title: { type: 'text' } } };
      expect((await call('POST', `/v1/workspaces/${slug}/structures`, structure)).status).toBe(201);
      const trigger = await call('POST', `/v1/workspaces/${slug}/triggers`, {
        name: 'slow receiver',
        events: ['record_created'],
        action: { type: 'webhook', url: receiver.url },
      });
      receiver.secret = trigger.body.secret as string;
      const token = await issuer.sign({ v: 2, sub: 'user_writer', o: { id: orgId, rol: 'member' } });

      const answered: string[] = [];
      let writing = true;
      const writer = async () => {
        while (writing) {
          try {
            const created = await call('POST', `/v1/workspaces/${slug}/records/Task`, { data: { title: 't' } }, token);
            if (created.status === 201) answered.push(created.body.id as string);
          } catch {
            return; // the process is gone
          }
        }
      };
      const writers = [writer(), writer()];
      await eventually(async () => receiver.received.length >= 5 && answered.length >= 30, 30_000);
      service.child.kill('SIGKILL');
      writing = false;
      await Promise.all(writers);
      await service.stop('SIGKILL');
      const deliveredBeforeKill = new Set(receiver.events().map((event) => event.recordId)).size;
      expect(deliveredBeforeKill).toBeLessThan(answered.length);

      service = await startService(env);
      const delivered = () => new Set(receiver.events().map((event) => event.recordId as string));
      await eventually(async () => answered.every((id) => delivered().has(id)), 90_000);
      expect(receiver.rejected).toBe(0);
    } finally {
      await service?.stop('SIGTERM');
      await receiver.close();
      await issuer.close();
      await scratch.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
