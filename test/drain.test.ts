import { jest } from '@jest/globals';
import { randomBytes, randomUUID } from 'node:crypto';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { Agent as HttpAgent, get as httpGet } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createScratchDatabase, ownerClient } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { startService, type ServiceProcess } from './support/process.ts';

jest.setTimeout(180_000);

/** Why a fetch failed: undici wraps the socket error as the cause. */
const failureCode = (error: unknown): string => {
  const cause = (error as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? String(error);
};

/**
 * SIGTERM under load, on `node src/main.ts` as `npm start` runs it: readiness turns 503 at once,
 * every request the service accepted gets its response (no reset, no hang-up), every answered
 * request has its decision, event streams end with `shutdown`, and the process exits 0.
 */
describe('graceful stop on SIGTERM', () => {
  it('answers what it accepted, logs each decision, ends streams with shutdown, and exits 0', async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), 'cordon-drain-'));
    await chmod(dataDir, 0o755);
    const scratch = await createScratchDatabase();
    const issuer = await TestIssuer.start();
    const adminKey = randomBytes(32).toString('hex');
    const env = {
      NODE_ENV: 'test',
      PORT: '0',
      DATA_DIR: dataDir,
      DATABASE_URL: scratch.url,
      ADMIN_API_KEY: adminKey,
      SHUTDOWN_GRACE_MS: '15000',
      LOG_LEVEL: 'info',
    };
    let service: ServiceProcess | undefined;
    try {
      service = await startService(env);
      const base = `http://127.0.0.1:${service.port}`;
      const call = (method: string, route: string, body: unknown, token = adminKey) =>
        fetch(`${base}${route}`, {
          method,
          headers: {
            authorization: `Bearer ${token}`,
            'content-type': 'application/json',
            'x-request-id': randomUUID(),
          },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
      const slug = `drain-${randomUUID().slice(0, 8)}`;
      const orgId = `org_${randomUUID().slice(0, 8)}`;
      expect((await call('POST', '/v1/workspaces', { slug, name: 'Drain' })).status).toBe(201);
      const provider = { name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId };
      expect((await call('POST', `/v1/workspaces/${slug}/identity-providers`, provider)).status).toBe(201);
      const structure = { name: 'Task', fields: { title: { type: 'text' } } };
      expect((await call('POST', `/v1/workspaces/${slug}/structures`, structure)).status).toBe(201);
      const token = await issuer.sign({ v: 2, sub: 'user_writer', o: { id: orgId, rol: 'member' } });

      // An open event stream: it must end with `shutdown`, not be cut.
      const stream = await fetch(`${base}/v1/workspaces/${slug}/events?structures=Task`, {
        headers: { authorization: `Bearer ${token}` },
      });
      expect(stream.status).toBe(200);
      const streamText = (async () => {
        let text = '';
        const decoder = new TextDecoder();
        for await (const chunk of stream.body!) text += decoder.decode(chunk, { stream: true });
        return text;
      })();

      const answered: { requestId: string; status: number }[] = [];
      const failures: string[] = [];
      /** Resets of requests on a reused keep-alive connection, by request id: see below. */
      const resets: string[] = [];
      const readiness: { status: number; code?: string }[] = [];
      let stopSent = false;
      let running = true;
      // Writers and readers on keep-alive connections, until the service refuses connections.
      const client = async (kind: 'create' | 'list') => {
        while (running) {
          const requestId = randomUUID();
          try {
            const response = await fetch(
              `${base}/v1/workspaces/${slug}/records/Task${kind === 'list' ? '?limit=5' : ''}`,
              {
                method: kind === 'create' ? 'POST' : 'GET',
                headers: {
                  authorization: `Bearer ${token}`,
                  'content-type': 'application/json',
                  'x-request-id': requestId,
                },
                ...(kind === 'create' && { body: JSON.stringify({ data: { title: 'during the stop' } }) }),
              },
            );
            await response.arrayBuffer();
            answered.push({ requestId, status: response.status });
          } catch (error) {
            const code = failureCode(error);
            // Refused: the listener was closed before this connection was made; nothing was accepted.
            if (code === 'ECONNREFUSED' && stopSent) return;
            if (code === 'ECONNRESET') resets.push(requestId);
            else failures.push(code);
            return;
          }
        }
      };
      // The prober keeps one connection of its own: the stop waits for it to end, which it does
      // only after the answer to its next probe (with `Connection: close`), so that probe is
      // answered while the service drains, whichever connections the other clients hold.
      const probes = new HttpAgent({ keepAlive: true, maxSockets: 1 });
      const probe = () =>
        new Promise<{ status: number; code?: string }>((resolve, reject) => {
          httpGet(`${base}/readyz`, { agent: probes }, (response) => {
            let text = '';
            response.setEncoding('utf8');
            response.on('data', (chunk: string) => (text += chunk));
            response.on('end', () =>
              resolve({ status: response.statusCode ?? 0, code: (JSON.parse(text) as { code?: string }).code }),
            );
            response.on('error', reject);
          }).on('error', reject);
        });
      const prober = async () => {
        while (running) {
          try {
            readiness.push(await probe());
          } catch (error) {
            const code = (error as { code?: string }).code ?? String(error);
            if (code === 'ECONNREFUSED' && stopSent) return;
            failures.push(`readyz: ${code}`);
            return;
          }
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      };
      const clients = [client('create'), client('create'), client('create'), client('list'), client('list'), prober()];
      await eventually(async () => answered.filter((entry) => entry.status === 201).length >= 30, 30_000);
      const answeredBeforeStop = answered.length;
      stopSent = true;
      const exited = service.stop('SIGTERM');
      const code = await exited;
      running = false;
      await Promise.all(clients);
      probes.destroy();

      expect(code).toBe(0);
      expect(service.output()).toContain('"msg":"stopped"');
      expect(failures).toEqual([]);
      // A request sent on an idle keep-alive connection just as that connection times out (the
      // client's timer late on a loaded machine) is reset before the service reads it: no
      // request the service accepted may be. One it accepted has its id in the request log (a
      // line when it finishes, is aborted or fails) and, past its type-level check, a decision.
      for (const requestId of resets) expect(service.output()).not.toContain(requestId);
      expect(answered.length).toBeGreaterThan(answeredBeforeStop);
      expect(answered.every((entry) => entry.status === 200 || entry.status === 201)).toBe(true);
      // Readiness answered 503 shutting_down once the stop began (on a connection still open).
      expect(readiness.some((entry) => entry.status === 200)).toBe(true);
      expect(readiness).toContainEqual({ status: 503, code: 'shutting_down' });
      const text = await streamText;
      expect(text).toMatch(/event: shutdown\ndata: \{"event":"shutdown"\}\n\n$/);

      // Every answered request has its decision, committed before its answer.
      const owner = await ownerClient(scratch.url);
      try {
        const ids = answered.map((entry) => entry.requestId);
        const { rows } = await owner.query(
          'select count(distinct request_id)::int as n from decisions where request_id = any($1)',
          [ids],
        );
        expect(rows[0].n).toBe(ids.length);
        const reset = await owner.query('select count(*)::int as n from decisions where request_id = any($1)', [
          resets,
        ]);
        expect(reset.rows[0].n).toBe(0);
      } finally {
        await owner.end();
      }
    } finally {
      if (service && service.child.exitCode === null) await service.stop('SIGKILL');
      await issuer.close();
      await scratch.drop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
