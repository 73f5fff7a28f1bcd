import type { EntityManager } from '@mikro-orm/postgresql';
import type { Request, RequestHandler } from 'express';
import type { Principal } from '../auth/principal.ts';
import type pg from 'pg';
import { DecisionWriter } from '../features/decisions/decision-writer.ts';
import {
  decisionContext,
  type DecisionContext,
  type DecisionEntry,
  type DecisionLog,
  type Operation,
} from '../features/decisions/decision-log.ts';
import { ProblemError } from '../http/errors.ts';
import type { PrincipalAbility } from './ability.ts';
import type { PolicyStore } from './policy-store.ts';
import type { Action } from './vocabulary.ts';

export interface Requirement {
  action: Action;
  subject: string;
  operation: Operation;
}

declare module 'express-serve-static-core' {
  interface Request {
    /** An allowed decision a mutation must record in its own transaction. */
    pendingDecision?: DecisionEntry;
    /** Set once the platform admin key authenticated the request. */
    platformAdmin?: boolean;
    startedAt?: bigint;
  }
}

/** Everything a service needs to decide and log for the principal of one request. */
export interface Caller {
  principal: Principal;
  workspaceId: string;
  ability: PrincipalAbility;
  context: DecisionContext;
  /** Logs decisions that have no transaction of their own; resolves once they are durable. */
  log(entries: readonly DecisionEntry[]): Promise<void>;
}

/** Decides for the principal of a request, and makes sure every decision is logged. */
export class AccessControl {
  private readonly log: DecisionLog;
  private readonly policies: PolicyStore;
  private readonly writer: DecisionWriter;

  constructor(policies: PolicyStore, log: DecisionLog, pool: pg.Pool) {
    this.policies = policies;
    this.log = log;
    this.writer = new DecisionWriter(pool, log);
  }

  async abilityOf(request: Request): Promise<PrincipalAbility> {
    const { principal, workspace } = request;
    if (!principal || !workspace) throw new Error('abilityOf needs an authenticated principal');
    return this.policies.abilityFor(principal, {
      workspaceId: workspace.id,
      policySetVersion: workspace.policySetVersion,
    });
  }

  async callerOf(request: Request): Promise<Caller> {
    const principal = request.principal;
    if (!principal || !request.workspace) throw new Error('callerOf needs an authenticated principal');
    const context = decisionContext(request, principal);
    return {
      principal,
      workspaceId: request.workspace.id,
      ability: await this.abilityOf(request),
      context,
      log: (entries) => this.writer.append(context, entries),
    };
  }

  /** Appends decisions that have no transaction of their own (reads, denials, checks); resolves once committed. */
  async recordNow(request: Request, entries: readonly DecisionEntry[]): Promise<void> {
    if (!request.principal) return;
    await this.writer.append(decisionContext(request, request.principal), entries);
  }

  /** The same, for decisions taken for another principal (a named `/check`). */
  async recordNowAs(
    request: Request,
    principal: Pick<Principal, 'id' | 'roles' | 'provider'>,
    entries: readonly DecisionEntry[],
  ): Promise<void> {
    if (!request.principal) return;
    await this.writer.append({ ...decisionContext(request, request.principal), principal }, entries);
  }

  /** Appends decisions inside the caller's transaction (mutations). */
  async recordIn(em: EntityManager, request: Request, entries: readonly DecisionEntry[]): Promise<void> {
    if (!request.principal) return;
    await this.log.record(em, decisionContext(request, request.principal), entries);
  }

  /** Type-level check. A denial is logged, then answered with 403 and the deciding rule's reason. */
  async require(request: Request, requirement: Requirement): Promise<DecisionEntry> {
    const ability = await this.abilityOf(request);
    const decision = ability.decide(requirement.action, requirement.subject);
    const entry: DecisionEntry = {
      action: requirement.action,
      operation: requirement.operation,
      subject: requirement.subject,
      decision,
    };
    if (!decision.allowed) {
      await this.recordNow(request, [entry]);
      throw new ProblemError('forbidden', decision.reason);
    }
    return entry;
  }

  /**
   * Route guard: reads record their decision before the handler runs; mutations get it as
   * `request.pendingDecision` and record it in their transaction. The platform admin is outside
   * tenant policy and is not a principal: nothing to decide.
   */
  guard(requirement: Requirement, method: string): RequestHandler {
    return async (request, _response, next) => {
      if (request.platformAdmin) return next();
      const entry = await this.require(request, requirement);
      if (method === 'get') await this.recordNow(request, [entry]);
      else request.pendingDecision = entry;
      next();
    };
  }
}

/** Who makes a change, and how its decision gets into the change's transaction. */
export interface Actor {
  id: string;
  audit(em: EntityManager): Promise<void>;
}

export function actorOf(request: Request, access: AccessControl): Actor {
  if (request.platformAdmin || !request.principal) return { id: 'platform-admin', audit: async () => undefined };
  const entry = request.pendingDecision;
  return {
    id: request.principal.id,
    audit: async (em) => {
      if (entry) await access.recordIn(em, request, [entry]);
    },
  };
}
