import type { Logger } from 'pino';
import { v7 as uuidv7 } from 'uuid';
import type { WorkspaceDirectory } from '../../auth/workspace-directory.ts';
import type { PolicyStore } from '../../policy/policy-store.ts';
import type { ActionAttempt, ActionOutcome, FunctionAction } from '../triggers/action.ts';
import { apiMethods, functionCaller, hostErrorOf, type FunctionApi } from './function-api.ts';
import type { FunctionCatalog, StoredFunction } from './function-catalog.ts';
import type { FunctionRuns } from './function-runs.ts';
import { sandboxCaps, type HostCall, type RunOutcome } from './sandbox-protocol.ts';
import type { SandboxPool } from './sandbox-pool.ts';

export interface RunRequest {
  workspaceId: string;
  /** What `run(event)` receives. */
  event: { depth?: number } & Record<string, unknown>;
  invoked: boolean;
  triggerId?: string;
  deliveryId?: string;
  eventSeq?: string;
}

/** A run's api calls: a few at a time (a `Promise.all` of hundreds must not take the pool), so many in all. */
const callsInFlight = 2;
const { callsPerRun } = sandboxCaps;

function limited(call: HostCall): HostCall {
  let started = 0;
  let running = 0;
  const waiting: (() => void)[] = [];
  return async (method, args) => {
    if (++started > callsPerRun) {
      throw { name: 'ApiError', message: `a run makes at most ${callsPerRun} api calls`, code: 'too_many_calls' };
    }
    if (running >= callsInFlight) await new Promise<void>((resolve) => waiting.push(resolve));
    running += 1;
    try {
      return await call(method, args);
    } finally {
      running -= 1;
      waiting.shift()?.();
    }
  };
}

/**
 * Runs functions: by hand (`invoke`) or for a trigger (`FunctionAction`, called by the delivery
 * task). Each run gets a fresh sandbox, acts as the function's principal and is logged in
 * `function_runs`, whatever its outcome.
 */
export class FunctionRunner implements FunctionAction {
  private readonly catalog: FunctionCatalog;
  private readonly policies: PolicyStore;
  private readonly directory: WorkspaceDirectory;
  private readonly api: FunctionApi;
  private readonly runs: FunctionRuns;
  readonly pool: SandboxPool;
  private readonly chainDepth: number;
  private readonly logger: Logger;

  constructor(options: {
    catalog: FunctionCatalog;
    policies: PolicyStore;
    directory: WorkspaceDirectory;
    api: FunctionApi;
    runs: FunctionRuns;
    pool: SandboxPool;
    chainDepth: number;
    logger: Logger;
  }) {
    this.catalog = options.catalog;
    this.policies = options.policies;
    this.directory = options.directory;
    this.api = options.api;
    this.runs = options.runs;
    this.pool = options.pool;
    this.chainDepth = options.chainDepth;
    this.logger = options.logger;
  }

  load(workspaceId: string, name: string): Promise<StoredFunction | undefined> {
    return this.catalog.find(workspaceId, name);
  }

  /**
   * One run, logged. A run that never started because no sandbox was free (`busy`) is not
   * logged: nothing ran.
   */
  async execute(definition: StoredFunction, request: RunRequest): Promise<{ runId: string; outcome: RunOutcome }> {
    const runId = uuidv7();
    const startedAt = new Date();
    const tenant = await this.directory.resolve(request.workspaceId);
    if (!tenant) throw new Error(`no workspace ${request.workspaceId}`);
    const caller = await functionCaller(
      this.policies,
      { workspaceId: tenant.workspace.id, policySetVersion: tenant.workspace.policySetVersion },
      {
        name: definition.name,
        roles: definition.roles,
        runId,
        depth: request.event.depth ?? 0,
        fireTriggers: !request.invoked,
      },
    );
    const hostCall = limited(async (method, args) => {
      try {
        // Each call is its own decision; its latency counts from the call, not from the run.
        return await this.api.call(
          { ...caller, context: { ...caller.context, startedAt: process.hrtime.bigint() } },
          method,
          args,
        );
      } catch (error) {
        const hostError = hostErrorOf(error);
        if (hostError.code === 'internal') this.logger.error({ err: error, runId }, 'a function api call failed');
        throw hostError;
      }
    });
    const outcome = await this.pool.run(
      {
        code: definition.code,
        event: request.event,
        timeoutMs: definition.timeoutMs,
        memoryMb: definition.memoryMb,
        apiNames: apiMethods,
      },
      hostCall,
    );
    if (outcome.ok || outcome.error.kind !== 'busy') {
      await this.runs.append(tenant.workspace.id, {
        id: runId,
        functionName: definition.name,
        functionVersion: definition.version,
        invoked: request.invoked,
        triggerId: request.triggerId ?? null,
        deliveryId: request.deliveryId ?? null,
        eventSeq: request.eventSeq ?? null,
        startedAt,
        outcome,
      });
    }
    return { runId, outcome };
  }

  /**
   * A trigger's run. A run that failed is not tried again (the same code on the same event would
   * fail the same way); one that found no sandbox free is. Events as deep as FUNCTION_CHAIN_DEPTH
   * run nothing: the chain stops there.
   */
  async run(functionName: string, attempt: ActionAttempt): Promise<ActionOutcome> {
    const refused = (error: string, retry = false): ActionOutcome => ({ ok: false, latencyMs: 0, error, retry });
    if (attempt.signal.aborted) return refused('the instance is stopping', true);
    if (attempt.event.depth >= this.chainDepth)
      return refused(
        `the function chain is ${attempt.event.depth} runs deep (FUNCTION_CHAIN_DEPTH ${this.chainDepth})`,
      );
    const tenant = await this.directory.resolve(attempt.workspaceId);
    if (!tenant || tenant.workspace.status !== 'active') return refused('the workspace is suspended');
    const definition = await this.load(attempt.workspaceId, functionName);
    if (!definition) return refused(`no function "${functionName}" in this workspace`);
    const { outcome } = await this.execute(definition, {
      workspaceId: attempt.workspaceId,
      event: { ...attempt.event },
      invoked: false,
      triggerId: attempt.triggerId,
      deliveryId: attempt.deliveryId,
      eventSeq: attempt.event.seq,
    });
    const latencyMs = Math.round(outcome.durationMs);
    if (outcome.ok) return { ok: true, latencyMs };
    const { kind, message } = outcome.error;
    return { ok: false, latencyMs, error: `${kind}: ${message}`, retry: kind === 'busy' };
  }

  close(): Promise<void> {
    return this.pool.close();
  }
}
