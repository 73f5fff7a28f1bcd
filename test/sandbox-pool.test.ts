import { SandboxPool } from '../src/features/functions/sandbox-pool.ts';

/** The pool on its own: threads that die or hang are replaced, and the pool stays bounded. */

const job = (code: string, timeoutMs = 500) => ({ code, event: {}, apiNames: [], timeoutMs, memoryMb: 8 });
const answers = 'async function run() { return 42 }';
const noHost = () => Promise.reject(new Error('no api here'));

describe('the sandbox pool', () => {
  let pool: SandboxPool;
  beforeAll(() => {
    pool = new SandboxPool({
      threads: 1,
      graceMs: 300,
      queueTimeoutMs: 5_000,
      threadUrl: new URL('./support/unruly-sandbox-thread.ts', import.meta.url),
    });
  });
  afterAll(() => pool.close());

  it('runs code in a thread', async () => {
    expect(await pool.run(job(answers), noHost)).toMatchObject({ ok: true, result: 42 });
  });

  it('gives up on a thread that stops answering, fails that run as a timeout, and starts another', async () => {
    const started = performance.now();
    const hung = await pool.run(job('async function run() {} // HOST_HANG'), noHost);
    const elapsed = performance.now() - started;
    expect(hung).toMatchObject({ ok: false, error: { kind: 'timeout' } });
    expect(hung.ok ? '' : hung.error.message).toMatch(/stopped answering/);
    expect(elapsed).toBeGreaterThanOrEqual(500 + 300 - 20);
    expect(elapsed).toBeLessThan(5_000);
    expect(await pool.run(job(answers), noHost)).toMatchObject({ ok: true, result: 42 });
  });

  it('fails the run of a thread that dies as crashed, and starts another', async () => {
    const died = await pool.run(job('async function run() {} // HOST_EXIT'), noHost);
    expect(died).toMatchObject({ ok: false, error: { kind: 'crashed' } });
    expect(await pool.run(job(answers), noHost)).toMatchObject({ ok: true, result: 42 });
  });

  it('keeps runs waiting for a free thread, and fails them as busy past the queue’s limit', async () => {
    const small = new SandboxPool({ threads: 1, queueLimit: 1, queueTimeoutMs: 5_000 });
    try {
      const looping = small.run(job('async function run() { while (true) {} }', 400), noHost);
      const waiting = small.run(job(answers), noHost);
      const refused = await small.run(job(answers), noHost);
      expect(refused).toMatchObject({ ok: false, error: { kind: 'busy' } });
      expect(await looping).toMatchObject({ ok: false, error: { kind: 'timeout' } });
      expect(await waiting).toMatchObject({ ok: true, result: 42 });
    } finally {
      await small.close();
    }
  });
});
