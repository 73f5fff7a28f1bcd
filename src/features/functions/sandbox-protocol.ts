/**
 * What crosses a sandbox's boundaries: its fixed caps, a run's job and outcome, an api call's
 * failure, and the messages between the pool (main thread) and a sandbox thread.
 */

export const sandboxCaps = {
  resultBytes: 64 * 1024,
  /** An api call's arguments, as JSON: what a request body may carry (BODY_LIMIT's default). */
  argumentBytes: 1024 * 1024,
  logLines: 100,
  logBytes: 16 * 1024,
  /**
   * QuickJS counts its stack on emscripten's shadow stack, but each frame also uses the V8 stack:
   * at more than 1/16 of the thread's V8 stack (4 MB, set by the pool) a deep recursion or a deep
   * JSON.stringify overflows the host instead of failing cleanly.
   */
  stackBytes: 256 * 1024,
  /**
   * The api calls one run may make. Counted where the guest calls, in its thread, so calls past it
   * (a loop that never awaits) are refused there and never reach the main thread.
   */
  callsPerRun: 1_000,
};

export type LogLevel = 'log' | 'info' | 'warn' | 'error';
export interface LogLine {
  level: LogLevel;
  message: string;
}

/**
 * Why a run failed. `invalid`: the code does not load or defines no `run`; `error`: it threw or
 * its promise rejected; `timeout`, `memory`, `stack`: a limit; `result`: not JSON or over 64 KB;
 * `stalled`: it awaits something that can never settle; `crashed`: the sandbox itself broke
 * (it is replaced); `busy`: no sandbox was free in time.
 */
export type FailureKind =
  'invalid' | 'error' | 'timeout' | 'memory' | 'stack' | 'result' | 'stalled' | 'crashed' | 'busy';

export interface RunFailure {
  kind: FailureKind;
  message: string;
}

export interface Limits {
  timeoutMs: number;
  memoryMb: number;
}

export interface SandboxJob extends Limits {
  code: string;
  event: unknown;
  /** The names of `context.api`'s methods. */
  apiNames: readonly string[];
}

export type RunOutcome = ({ ok: true; result: unknown } | { ok: false; error: RunFailure }) & {
  logs: LogLine[];
  logsTruncated: boolean;
  durationMs: number;
};

/** An api call's failure, as the function's code catches it (`error.code`, `error.status`). */
export interface HostError {
  name: string;
  message: string;
  code?: string;
  status?: number;
  errors?: unknown;
}

export type HostCall = (name: string, args: unknown[]) => Promise<unknown>;

/** What the pool and a sandbox thread say to each other. */
export type ToSandbox =
  | { kind: 'run'; job: SandboxJob }
  | { kind: 'inspect'; code: string; limits: Limits }
  | { kind: 'reply'; callId: number; value?: unknown; error?: HostError };

export type FromSandbox =
  | { kind: 'ready' }
  | { kind: 'call'; callId: number; name: string; args: unknown[] }
  | { kind: 'ran'; outcome: RunOutcome }
  | { kind: 'inspected'; failure: RunFailure | null };
