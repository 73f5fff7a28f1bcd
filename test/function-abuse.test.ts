import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/**
 * Hostile functions: each fails its own run within its limits, and the service keeps answering
 * other requests meanwhile (functions run in worker threads, never on the event loop that serves).
 */

let cordon: TestApp;
let issuer: TestIssuer;
let tenant: TestTenant;
let admin: string;

const timeoutMs = 1_500;

beforeAll(async () => {
  cordon = await startTestApp();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'fn-abuse');
  admin = await tenant.token('user_admin', 'admin');
  await request('post', '/structures', { name: 'Task', fields: { title: { type: 'text' } } }).expect(201);
  await request('post', '/records/Task', { data: { title: 'still here' } }).expect(201);
});
afterAll(async () => {
  await issuer.close();
  await cordon.close();
});

function request(method: 'get' | 'post', path: string, body?: object) {
  const call = cordon.http()[method](`/v1/workspaces/${tenant.slug}${path}`).auth(admin, { type: 'bearer' });
  return body ? call.send(body) : call;
}

interface Run {
  status: string;
  result: unknown;
  error: { kind: string; message: string } | null;
  logs: unknown[];
  logsTruncated: boolean;
  durationMs: number;
}

async function invoke(code: string, limits: { timeoutMs?: number; memoryMb?: number } = {}): Promise<Run> {
  const name = `abuse-${randomUUID().slice(0, 8)}`;
  await request('post', '/functions', { name, code, roles: ['admin'], timeoutMs, memoryMb: 16, ...limits }).expect(201);
  return (await request('post', `/functions/${name}/invoke`, { event: { type: 'test' } }).expect(200)).body;
}

/** Lists records over HTTP, one request after another, for as long as `work` runs. */
async function whileServing<T>(work: Promise<T>): Promise<{ value: T; answered: number; slowestMs: number }> {
  let done = false;
  const latencies: number[] = [];
  const probe = (async () => {
    while (!done) {
      const started = performance.now();
      const response = await request('get', '/records/Task').expect(200);
      expect(response.body.data).toHaveLength(1);
      latencies.push(performance.now() - started);
      await sleep(25);
    }
  })();
  const value = await work.finally(() => (done = true));
  await probe;
  return { value, answered: latencies.length, slowestMs: Math.max(...latencies) };
}

describe('a function that abuses its sandbox', () => {
  it('loops for ever: fails as a timeout at its deadline while other requests are answered', async () => {
    const { value: run, answered, slowestMs } = await whileServing(invoke('async function run() { while (true) {} }'));
    expect(run).toMatchObject({ status: 'failed', error: { kind: 'timeout', message: `exceeded ${timeoutMs} ms` } });
    expect(run.durationMs).toBeGreaterThanOrEqual(timeoutMs - 5);
    expect(run.durationMs).toBeLessThan(timeoutMs + 1_000);
    expect(answered).toBeGreaterThanOrEqual(5);
    expect(slowestMs).toBeLessThan(1_000);
  });

  it('calls the api in a loop that never awaits: no call acts after its deadline, none past the cap', async () => {
    const records = async () => (await request('get', '/records/Task?count=true').expect(200)).body.count as number;
    const before = await records();
    const { value: run, answered } = await whileServing(
      invoke("async function run(event, context) { for (;;) context.api.createRecord('Task', { title: 'flood' }) }"),
    );
    // Its deadline ends it, never a crash of its sandbox thread. Under load the interrupt can land
    // inside Promise.reject, which then throws a TypeError of its own: still a timeout.
    expect(run).toMatchObject({ status: 'failed', error: { kind: 'timeout' } });
    expect(answered).toBeGreaterThanOrEqual(5);
    // The queued calls would run once the loop is interrupted: they must find the run ended.
    await sleep(1_000);
    expect(await records()).toBe(before);

    // Calls that do run stop at the cap, refused where the guest made them.
    const capped = await invoke(
      `async function run(event, context) {
      const calls = Array.from({ length: 1_200 }, () => context.api.getRecord('00000000-0000-7000-8000-000000000000'));
      const settled = await Promise.allSettled(calls);
      return settled.filter((each) => each.status === 'rejected' && each.reason.code === 'too_many_calls').length;
    }`,
      // A thousand calls that each read and log a decision, two at a time: ample time on a loaded machine.
      { timeoutMs: 10_000 },
    );
    expect(capped).toMatchObject({ status: 'succeeded', result: 200 });
  });

  it.each([
    ['an ArrayBuffer', 'new ArrayBuffer(2 ** 30).byteLength'],
    ['a string', "'x'.repeat(2 ** 30).length"],
    ['an array', 'new Array(2 ** 28).fill(0).length'],
  ])('allocates 1 GB as %s: fails on its memory limit', async (_, allocation) => {
    const { value: run, answered } = await whileServing(invoke(`async function run() { return ${allocation} }`));
    expect(run).toMatchObject({ status: 'failed', error: { kind: 'memory' } });
    expect(run.durationMs).toBeLessThan(timeoutMs + 1_000);
    expect(answered).toBeGreaterThanOrEqual(1);
  });

  it('recurses without end: fails on its stack limit, also through JSON.stringify', async () => {
    // The longest deadline: on a loaded machine the stack must still run out first.
    const recursion = await invoke('async function run() { const down = (n) => down(n + 1) + 1; return down(0) }', {
      timeoutMs: 10_000,
    });
    expect(recursion).toMatchObject({
      status: 'failed',
      error: { kind: 'stack', message: 'InternalError: stack overflow' },
    });
    const nested = await invoke(
      'async function run() { let o = {}, p = o; for (let i = 0; i < 20000; i++) { p.a = {}; p = p.a } return o }',
      { timeoutMs: 10_000 },
    );
    expect(nested).toMatchObject({ status: 'failed', error: { kind: expect.stringMatching(/^(stack|result)$/) } });
  });

  it.each([
    ['import()', 'return await import("fs")', /could not load module 'fs'/],
    ['fetch', 'return await fetch("http://127.0.0.1/")', /'fetch' is not defined/],
    ['process', 'return process.env', /'process' is not defined/],
    ['require', 'return require("fs")', /'require' is not defined/],
  ])('reaches for %s: finds nothing there, and its run fails', async (_, body, message) => {
    const run = await invoke(`async function run() { ${body} }`);
    expect(run).toMatchObject({ status: 'failed', error: { kind: 'error', message: expect.stringMatching(message) } });
  });

  it('sees no host globals at all', async () => {
    const run = await invoke(
      `async function run() {
        return ['process', 'require', 'fetch', 'XMLHttpRequest', 'WebAssembly', 'setTimeout', 'std', 'os', 'hostCall', 'hostLog']
          .filter((name) => typeof globalThis[name] !== 'undefined');
      }`,
    );
    expect(run).toMatchObject({ status: 'succeeded', result: [] });
  });

  it('fails only its own run: good runs beside hostile ones succeed', async () => {
    const good = 'async function run(event, { api }) { return (await api.queryRecords("Task")).data.length }';
    const runs = await Promise.all([
      invoke('async function run() { while (true) {} }'),
      invoke(good),
      invoke('async function run() { return new ArrayBuffer(2 ** 30) }'),
      invoke(good),
      invoke('async function run() { const f = () => f(); f() }'),
      invoke(good),
    ]);
    expect(runs.map((run) => run.error?.kind ?? run.result)).toEqual(['timeout', 1, 'memory', 1, 'stack', 1]);
  });
});

describe('a run’s other limits', () => {
  it('keeps the first 100 lines of console output and says it cut the rest', async () => {
    const run = await invoke(
      'async function run() { for (let i = 0; i < 1000; i++) console.log("line", i); return "ok" }',
    );
    expect(run).toMatchObject({ status: 'succeeded', result: 'ok', logsTruncated: true });
    expect(run.logs).toHaveLength(100);
    expect(run.logs[99]).toEqual({ level: 'log', message: 'line 99' });
  });

  it('caps the console output at 16 KB', async () => {
    const run = await invoke('async function run() { for (let i = 0; i < 10; i++) console.warn("y".repeat(5000)); }');
    expect(run.logsTruncated).toBe(true);
    const bytes = (run.logs as { message: string }[]).reduce((sum, line) => sum + line.message.length, 0);
    expect(bytes).toBe(16 * 1024);
  });

  it('refuses a result over 64 KB, or one that is not JSON', async () => {
    expect(await invoke('async function run() { return "x".repeat(70000) }')).toMatchObject({
      status: 'failed',
      error: { kind: 'result' },
    });
    expect(await invoke('async function run() { return 1n }')).toMatchObject({
      status: 'failed',
      error: { kind: 'result', message: expect.stringMatching(/not JSON/) },
    });
  });

  it('fails a run that awaits something that can never settle, without waiting for its deadline', async () => {
    const run = await invoke('async function run() { await new Promise(() => {}) }');
    expect(run).toMatchObject({ status: 'failed', error: { kind: 'stalled' } });
    expect(run.durationMs).toBeLessThan(timeoutMs);
  });

  it('refuses api calls whose arguments are larger than a request body may be', async () => {
    const run = await invoke(
      'async function run(event, { api }) { return api.createRecord("Task", { title: "x".repeat(2 ** 21) }).catch((error) => [error.status, error.code]) }',
    );
    expect(run).toMatchObject({ status: 'succeeded', result: [413, 'payload_too_large'] });
  });

  it('counts api calls in its deadline', async () => {
    const run = await invoke('async function run(event, { api }) { for (;;) await api.queryRecords("Task") }', {
      timeoutMs: 300,
    });
    expect(run).toMatchObject({ status: 'failed', error: { kind: 'timeout', message: 'exceeded 300 ms' } });
    expect(run.durationMs).toBeLessThan(1_300);
  });
});
