import { Worker } from 'node:worker_threads';
import type {
  FromSandbox,
  HostCall,
  HostError,
  Limits,
  RunFailure,
  RunOutcome,
  SandboxJob,
  ToSandbox,
} from './sandbox-protocol.ts';

export interface SandboxPoolOptions {
  /**
   * Sandbox threads, each running one function at a time: a looping function holds only its own
   * thread, and memory is bounded by threads × 64 MB (the largest `memoryMb`).
   */
  threads: number;
  /** Runs that may wait for a free thread, and for how long, before failing as `busy`. */
  queueLimit: number;
  queueTimeoutMs: number;
  /** How long past its deadline a run may go unanswered before its thread counts as hung. */
  graceMs: number;
  /** The thread's script (tests substitute one that misbehaves). */
  threadUrl: URL;
}

const defaults: SandboxPoolOptions = {
  threads: 4,
  queueLimit: 200,
  queueTimeoutMs: 10_000,
  graceMs: 1_000,
  threadUrl: new URL('./sandbox-thread.ts', import.meta.url),
};

type Task =
  | { kind: 'run'; job: SandboxJob; hostCall: HostCall; settle: (outcome: RunOutcome) => void }
  | { kind: 'inspect'; code: string; limits: Limits; settle: (failure: RunFailure | null) => void };

const failed = (error: RunFailure, durationMs = 0): RunOutcome => ({
  ok: false,
  error,
  logs: [],
  logsTruncated: false,
  durationMs,
});

/** One worker thread and the task it runs. */
class SandboxThread {
  readonly worker: Worker;
  readonly ready: Promise<void>;
  task: Task | undefined;
  gone = false;
  private watchdog: NodeJS.Timeout | undefined;
  private readonly onGone: (thread: SandboxThread) => void;

  constructor(url: URL, onGone: (thread: SandboxThread) => void) {
    this.onGone = onGone;
    // A 4 MB V8 stack is what keeps QuickJS's 256 KB stack from overflowing the host's.
    this.worker = new Worker(url, { resourceLimits: { stackSizeMb: 4, maxOldGenerationSizeMb: 128 } });
    this.worker.unref();
    this.ready = new Promise((resolve, reject) => {
      this.worker.once('message', (message: FromSandbox) =>
        message.kind === 'ready' ? resolve() : reject(new Error(`sandbox thread said ${message.kind} first`)),
      );
      this.worker.once('error', reject);
      this.worker.once('exit', (code) => reject(new Error(`sandbox thread exited with ${code} while starting`)));
    });
    this.ready.catch(() => undefined);
    this.worker.on('message', (message: FromSandbox) => this.receive(message));
    this.worker.on('error', (error) => this.fail(`the sandbox thread failed: ${error.message}`));
    this.worker.on('exit', (code) => this.fail(`the sandbox thread exited (${code})`));
  }

  /** Runs a task; the watchdog gives up on the thread if it stays silent past the deadline. */
  start(task: Task, timeoutMs: number, graceMs: number): void {
    this.task = task;
    this.worker.ref();
    const started = performance.now();
    this.watchdog = setTimeout(() => {
      const elapsed = Number((performance.now() - started).toFixed(3));
      this.abandon({ kind: 'timeout', message: `exceeded ${timeoutMs} ms; its sandbox stopped answering` }, elapsed);
      void this.worker.terminate();
    }, timeoutMs + graceMs);
    this.post(
      task.kind === 'run' ? { kind: 'run', job: task.job } : { kind: 'inspect', code: task.code, limits: task.limits },
    );
  }

  stop(): Promise<number> {
    this.abandon({ kind: 'crashed', message: 'the sandbox pool is closing' });
    return this.worker.terminate();
  }

  private post(message: ToSandbox): void {
    this.worker.postMessage(message);
  }

  private receive(message: FromSandbox): void {
    const task = this.task;
    if (message.kind === 'call' && task?.kind === 'run') {
      const reply = (answer: { value?: unknown; error?: HostError }) => {
        if (this.task === task && !this.gone) this.post({ kind: 'reply', callId: message.callId, ...answer });
      };
      task.hostCall(message.name, message.args).then(
        (value) => reply({ value: value ?? null }),
        (error: HostError) => reply({ error }),
      );
    } else if (message.kind === 'ran' && task?.kind === 'run') {
      this.done();
      task.settle(message.outcome);
    } else if (message.kind === 'inspected' && task?.kind === 'inspect') {
      this.done();
      task.settle(message.failure);
    }
  }

  private done(): void {
    clearTimeout(this.watchdog);
    this.task = undefined;
    this.worker.unref();
  }

  /** The thread is done for (it died, hung or is stopped): the pool drops it, its task fails. */
  private abandon(failure: RunFailure, durationMs = 0): void {
    if (!this.gone) {
      this.gone = true;
      this.onGone(this);
    }
    const task = this.task;
    if (!task) return;
    this.done();
    if (task.kind === 'run') task.settle(failed(failure, durationMs));
    else task.settle(failure);
  }

  private fail(message: string): void {
    this.abandon({ kind: 'crashed', message });
  }
}

interface Waiter {
  task: Task;
  timer: NodeJS.Timeout;
}

/**
 * Function runs in worker threads, so a looping function never blocks the event loop that
 * serves requests. Threads start when first needed and are replaced when they die or hang; a
 * run waits in a bounded queue for a free one.
 */
export class SandboxPool {
  private readonly options: SandboxPoolOptions;
  private readonly threads = new Set<SandboxThread>();
  private readonly idle: SandboxThread[] = [];
  private readonly waiting: Waiter[] = [];
  private closed = false;

  constructor(options: Partial<SandboxPoolOptions> = {}) {
    this.options = { ...defaults, ...options };
  }

  run(job: SandboxJob, hostCall: HostCall): Promise<RunOutcome> {
    return new Promise((settle) => this.submit({ kind: 'run', job, hostCall, settle }));
  }

  /** Loads code as a save does; null when it defines `async function run`. */
  inspect(code: string, limits: Limits): Promise<RunFailure | null> {
    return new Promise((settle) => this.submit({ kind: 'inspect', code, limits, settle }));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const waiter of this.waiting.splice(0)) {
      clearTimeout(waiter.timer);
      this.refuse(waiter.task, 'the sandbox pool is closing');
    }
    await Promise.all([...this.threads].map((thread) => thread.stop()));
  }

  private submit(task: Task): void {
    if (this.closed) return this.refuse(task, 'the sandbox pool is closed');
    const thread = this.idle.pop();
    if (thread) return this.dispatch(thread, task);
    if (this.threads.size < this.options.threads) return void this.spawn(task);
    if (this.waiting.length >= this.options.queueLimit)
      return this.refuse(task, `${this.waiting.length} runs are already waiting for a sandbox`);
    const waiter: Waiter = {
      task,
      timer: setTimeout(() => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        this.refuse(task, `no sandbox was free within ${this.options.queueTimeoutMs} ms`);
      }, this.options.queueTimeoutMs),
    };
    this.waiting.push(waiter);
  }

  private refuse(task: Task, message: string): void {
    const failure: RunFailure = { kind: 'busy', message };
    if (task.kind === 'run') task.settle(failed(failure));
    else task.settle(failure);
  }

  private async spawn(task: Task): Promise<void> {
    const thread = new SandboxThread(this.options.threadUrl, (gone) => this.forget(gone));
    this.threads.add(thread);
    try {
      await thread.ready;
    } catch (error) {
      await thread.stop();
      const failure: RunFailure = {
        kind: 'crashed',
        message: `a sandbox could not start: ${(error as Error).message}`,
      };
      if (task.kind === 'run') task.settle(failed(failure));
      else task.settle(failure);
      return;
    }
    this.dispatch(thread, task);
  }

  private dispatch(thread: SandboxThread, task: Task): void {
    const settle = task.settle as (value: unknown) => void;
    const wrapped = {
      ...task,
      settle: (value: unknown) => {
        settle(value);
        this.release(thread);
      },
    } as Task;
    const timeoutMs = task.kind === 'run' ? task.job.timeoutMs : task.limits.timeoutMs;
    thread.start(wrapped, timeoutMs, this.options.graceMs);
  }

  /** A thread that finished its task takes the next waiting one, or waits itself. */
  private release(thread: SandboxThread): void {
    if (thread.gone || this.closed) return;
    const next = this.waiting.shift();
    if (!next) {
      this.idle.push(thread);
      return;
    }
    clearTimeout(next.timer);
    this.dispatch(thread, next.task);
  }

  /** A thread that died or hung is dropped; a waiting run gets a new one. */
  private forget(thread: SandboxThread): void {
    this.threads.delete(thread);
    const index = this.idle.indexOf(thread);
    if (index >= 0) this.idle.splice(index, 1);
    const next = this.closed ? undefined : this.waiting.shift();
    if (next) {
      clearTimeout(next.timer);
      void this.spawn(next.task);
    }
  }
}
