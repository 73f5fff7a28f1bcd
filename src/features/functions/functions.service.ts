import { LockMode } from '@mikro-orm/core';
import { v7 as uuidv7 } from 'uuid';
import type { Scope } from '../../db/database.ts';
import type { PageQuery } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import type { Caller } from '../../policy/access.ts';
import { WorkspaceConfiguration } from '../../policy/workspace-configuration.ts';
import { checkGrant } from '../members/grants.ts';
import { FunctionEntity, type FunctionDefinition } from './function.entity.ts';
import type { FunctionRunner } from './function-runner.ts';
import type { FunctionRuns } from './function-runs.ts';
import type {
  FunctionInput,
  FunctionReplacement,
  FunctionResponse,
  InvokeInput,
  InvokeResponse,
} from './functions.schema.ts';
import type { Limits } from './sandbox-protocol.ts';

export function toResponse(definition: FunctionDefinition): FunctionResponse {
  return {
    name: definition.name,
    code: definition.code,
    roles: definition.roles,
    timeoutMs: definition.timeoutMs,
    memoryMb: definition.memoryMb,
    version: definition.version,
    createdAt: definition.createdAt.toISOString(),
    updatedAt: definition.updatedAt.toISOString(),
  };
}

const notFound = (name: string) => new ProblemError('function_not_found', `No function "${name}" in this workspace`);

/** Saving the code loads it in a sandbox, under its own limits but at most this long. */
const loadTimeoutMs = 2_000;

/**
 * Functions as workspace configuration (subject `Function`). A function acts with its roles, so
 * giving it roles is granting them: the caller must hold them (or manage members), as for a
 * member — also to change or delete a function, or to invoke one, whose roles it does not hold.
 */
export class FunctionsService extends WorkspaceConfiguration {
  private readonly runner: FunctionRunner;
  private readonly runs: FunctionRuns;

  constructor(
    options: ConstructorParameters<typeof WorkspaceConfiguration>[0],
    runner: FunctionRunner,
    runs: FunctionRuns,
  ) {
    super(options, 'function');
    this.runner = runner;
    this.runs = runs;
  }

  list(caller: Caller): Promise<FunctionResponse[]> {
    return this.read(caller, async (scope) =>
      (await scope.em.find(FunctionEntity, { workspaceId: scope.workspaceId }, { orderBy: { name: 'asc' } })).map(
        toResponse,
      ),
    );
  }

  get(caller: Caller, name: string): Promise<FunctionResponse> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: name });
      return toResponse(await this.load(scope, name));
    });
  }

  async create(caller: Caller, input: FunctionInput): Promise<FunctionResponse> {
    caller.ruling?.refine({ resourceId: input.name });
    checkGrant(caller, input.roles);
    await this.compiles(input.code, input);
    return this.change(caller, async (scope) => {
      const definition = scope.em.create(FunctionEntity, { workspaceId: scope.workspaceId, ...input });
      await scope.em.flush();
      return toResponse(definition);
    });
  }

  async replace(caller: Caller, name: string, input: FunctionReplacement): Promise<FunctionResponse> {
    caller.ruling?.refine({ resourceId: name });
    checkGrant(caller, input.roles);
    await this.compiles(input.code, input);
    return this.change(caller, async (scope) => {
      const definition = await this.load(scope, name, true);
      checkGrant(caller, definition.roles);
      scope.em.assign(definition, { ...input, version: definition.version + 1, updatedAt: new Date() });
      await scope.em.flush();
      return toResponse(definition);
    });
  }

  async remove(caller: Caller, name: string): Promise<void> {
    caller.ruling?.refine({ resourceId: name });
    await this.change(caller, async (scope) => {
      const definition = await this.load(scope, name, true);
      checkGrant(caller, definition.roles);
      await scope.em.nativeDelete(FunctionEntity, { workspaceId: scope.workspaceId, name: definition.name });
    });
  }

  /**
   * Runs the function on the given event, as a trigger would, except that its writes fire no
   * trigger. A run that failed is still an answer (with its error), not an HTTP error.
   */
  invoke(caller: Caller, name: string, input: InvokeInput, requestId: string): Promise<InvokeResponse> {
    return this.access.read(caller, async (ruling) => {
      ruling.refine({ resourceId: name });
      const definition = await this.runner.load(caller.workspaceId, name);
      if (!definition) throw notFound(name);
      checkGrant(caller, definition.roles);
      const event = {
        id: uuidv7(),
        seq: null,
        structure: null,
        recordId: null,
        actor: { id: caller.principal.id, kind: 'user' },
        requestId,
        at: new Date().toISOString(),
        fireTriggers: false,
        ...input.event,
        workspaceId: caller.workspaceId,
      };
      const { runId, outcome } = await this.runner.execute(definition, {
        workspaceId: caller.workspaceId,
        event,
        invoked: true,
      });
      if (!outcome.ok && outcome.error.kind === 'busy') {
        throw new ProblemError('sandbox_busy', outcome.error.message, { headers: { 'Retry-After': '1' } });
      }
      return {
        runId,
        status: outcome.ok ? 'succeeded' : 'failed',
        result: (outcome.ok ? outcome.result : null) as InvokeResponse['result'],
        error: outcome.ok ? null : outcome.error,
        logs: outcome.logs,
        logsTruncated: outcome.logsTruncated,
        durationMs: outcome.durationMs,
      };
    });
  }

  /**
   * A function's runs hold what it read and returned with its roles: reading them takes holding
   * those roles (or managing members), as invoking it does.
   */
  runsOf(caller: Caller, name: string, query: PageQuery) {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: name });
      checkGrant(caller, (await this.load(scope, name)).roles);
      return this.runs.page(scope, name, query);
    });
  }

  /** The code must load in a sandbox and define `async function run(event, context)`. */
  private async compiles(code: string, limits: Limits): Promise<void> {
    const failure = await this.runner.pool.inspect(code, {
      memoryMb: limits.memoryMb,
      timeoutMs: Math.min(limits.timeoutMs, loadTimeoutMs),
    });
    if (!failure) return;
    if (failure.kind === 'busy') {
      throw new ProblemError('sandbox_busy', failure.message, { headers: { 'Retry-After': '1' } });
    }
    const detail =
      failure.kind === 'invalid' ? failure.message : `loading the code failed (${failure.kind}): ${failure.message}`;
    throw new ProblemError('validation_failed', 'The function code does not load', {
      errors: [{ pointer: '/code', in: 'body', detail }],
    });
  }

  private async load(scope: Scope, name: string, lock = false): Promise<FunctionDefinition> {
    const definition = await scope.em.findOne(
      FunctionEntity,
      { workspaceId: scope.workspaceId, name },
      lock ? { lockMode: LockMode.PESSIMISTIC_WRITE } : {},
    );
    if (!definition) throw notFound(name);
    return definition;
  }
}
