import type { Request } from 'express';
import type { Principal } from '../auth/principal.ts';
import type { TenantWorkspace, WorkspaceDirectory } from '../auth/workspace-directory.ts';
import { sql } from 'kysely';
import { prepared, type Database, type Scope } from '../db/database.ts';
import { ProblemError } from '../http/errors.ts';
import { ruleless, type PrincipalAbility } from './ability.ts';
import { appendDecisions, type DecisionContext, type DecisionEntry, type Operation } from './decision-log.ts';
import { DecisionWriter } from './decision-writer.ts';
import type { PolicyScope, PolicyStore } from './policy-store.ts';
import { Ruling } from './ruling.ts';
import { isReadOnly, subscriptionInactive } from './standing.ts';
import type { Action } from './vocabulary.ts';
import type { EventOrigin } from '../events/event-log.ts';

/** What a route needs before its handler runs: the type-level check on its subject. */
export interface Requirement {
  action: Action;
  subject: string;
  operation: Operation;
}

declare module 'express-serve-static-core' {
  interface Request {
    /** Set once the platform admin key authenticated the request. */
    platformAdmin?: boolean;
    startedAt?: bigint;
  }
}

/** Who acts in one request, where, and the route's allow that still waits for its outcome. */
export interface Caller {
  principal: Pick<Principal, 'id' | 'roles' | 'provider'>;
  workspaceId: string;
  context: DecisionContext;
  /** The principal's ability; the platform admin is outside tenant policy and has none. */
  ability: PrincipalAbility | undefined;
  /** On routes with a requirement: the route's allow, still waiting for its outcome. */
  ruling?: Ruling;
  /** Where the caller's changes come from, as their events record it. */
  origin: EventOrigin;
  /** The workspace as the front door resolved it (its billing state), when it did. */
  tenant?: TenantWorkspace;
}

/** A workspace principal (never the platform admin): records, `/check`. */
export interface PrincipalCaller extends Caller {
  principal: Principal;
  ability: PrincipalAbility;
}

/**
 * Subjects whose changes a read-only (unpaid, or past due after grace) workspace still makes: its
 * billing, and what keeps it reachable and auditable. Everything else is tenant data.
 */
const writableWhenReadOnly = new Set(['Billing', 'DecisionLog', 'IdentityProvider', 'Workspace']);

const platformAdmin = { id: 'platform-admin', roles: [], provider: 'admin-key' };
export const adminDecision = ruleless(true, 'platform admin key (outside tenant policy)');

/**
 * The one door for decisions. A service asks, gets a decision, and the decision is written
 * exactly once: in the transaction of the change it allowed (`change`), durable before the answer
 * for reads and refusals (`decided`), and after the rollback for a change refused after its allow
 * (validation, conflict, precondition), with the refusal as its outcome.
 */
export class AccessControl {
  private readonly policies: PolicyStore;
  private readonly database: Database;
  private readonly directory: WorkspaceDirectory;
  private readonly writer: DecisionWriter | undefined;
  private readonly graceDays: number;

  /** `logDecisions: false` exists only so the benchmark can measure what logging costs. */
  constructor(options: {
    policies: PolicyStore;
    database: Database;
    directory: WorkspaceDirectory;
    logDecisions?: boolean;
    /** BILLING_GRACE_DAYS: how long a past_due workspace keeps full use when no grace end is recorded. */
    graceDays?: number;
  }) {
    this.policies = options.policies;
    this.database = options.database;
    this.directory = options.directory;
    this.writer = options.logDecisions === false ? undefined : new DecisionWriter(options.database);
    this.graceDays = options.graceDays ?? 7;
  }

  /**
   * A change of tenant data in a workspace whose subscription made it read-only is 402
   * `subscription_inactive` (for the platform admin too); reads, exports and billing go on.
   */
  async requireWritable(workspaceId: string, known?: TenantWorkspace): Promise<void> {
    const workspace = known ?? (await this.directory.resolve(workspaceId))?.workspace;
    if (workspace && isReadOnly(workspace.billing, this.graceDays)) throw subscriptionInactive(workspace.billing);
  }

  /** The caller's workspace with its billing state: as the front door resolved it, or from the directory. */
  async tenantOf(caller: Pick<Caller, 'workspaceId' | 'tenant'>): Promise<TenantWorkspace | undefined> {
    return caller.tenant ?? (await this.directory.resolve(caller.workspaceId))?.workspace;
  }

  /**
   * Runs an authorized route: the type-level check (a denial is logged, then 403), then `work`
   * with the caller, whose one decision is written whatever the outcome.
   */
  async authorized(request: Request, requirement: Requirement, work: (caller: Caller) => Promise<void>): Promise<void> {
    const caller = request.platformAdmin ? await this.platformAdminOf(request) : await this.principalOf(request);
    const decision = caller.ability ? caller.ability.decide(requirement.action, requirement.subject) : adminDecision;
    const ruling = new Ruling({ ...requirement, decision });
    await this.decide(caller, ruling, async () => {
      ruling.require(decision);
      if (requirement.action !== 'read' && !writableWhenReadOnly.has(requirement.subject)) {
        await this.requireWritable(caller.workspaceId, request.workspace);
      }
      await work({ ...caller, ruling });
    });
  }

  async principalOf(request: Request): Promise<PrincipalCaller> {
    const { principal, workspace } = request;
    if (!principal || !workspace) throw new Error('principalOf needs an authenticated principal');
    const scope = { workspaceId: workspace.id, policySetVersion: workspace.policySetVersion };
    const ability = await this.policies.abilityFor(principal, scope);
    const context = {
      ...contextOf(request, principal, workspace.id),
      attributes: await this.attributesOf(principal, scope),
    };
    return {
      principal,
      workspaceId: workspace.id,
      context,
      ability,
      origin: originOf(context, 'user'),
      tenant: workspace,
    };
  }

  /** What a principal's decisions keep of its attributes: the values of the placeholders the policies use. */
  async attributesOf(
    principal: Pick<Principal, 'id' | 'email' | 'roles' | 'claims'>,
    scope: PolicyScope,
  ): Promise<DecisionContext['attributes']> {
    const plan = await this.policies.inputsPlan(scope);
    return { plan, placeholders: { principal, workspaceId: scope.workspaceId } };
  }

  /** The platform admin names the workspace in the URL; an unknown one is a plain 404. */
  private async platformAdminOf(request: Request): Promise<Caller> {
    const reference = String(request.params.ws ?? '');
    const tenant = await this.directory.resolve(reference);
    if (!tenant) throw new ProblemError('workspace_not_found', `No workspace "${reference}"`);
    return this.platformAdminIn(request, tenant.workspace.id);
  }

  /** The platform admin acting on one tenant (outside its policies): its decisions go into that tenant's log. */
  platformAdminIn(request: Request, workspaceId: string): Caller {
    const context = contextOf(request, platformAdmin, workspaceId);
    return { principal: platformAdmin, workspaceId, context, ability: undefined, origin: originOf(context, 'admin') };
  }

  /** Decisions with no transaction of their own (reads, denials, checks): durable when this resolves. */
  async decided(caller: Pick<Caller, 'context'>, entries: readonly DecisionEntry[]): Promise<void> {
    await this.writer?.append({ context: caller.context, entries });
  }

  /** Decisions inside the transaction of the change they allowed or refused. */
  async decidedIn(scope: Scope, caller: Pick<Caller, 'context'>, entries: readonly DecisionEntry[]): Promise<void> {
    if (!this.writer || !entries.length) return;
    await scope.query(
      prepared(
        'cordon_append_decisions_in_change',
        sql`with ${scope.cte} ${appendDecisions([{ context: caller.context, entries }])}`,
      ),
    );
  }

  /**
   * Runs a request whose decision is still being taken, and writes that decision exactly once: as
   * `work` left it when it succeeds (unless a committed statement already carried it), or with
   * the outcome that undid it when it fails.
   */
  async decide<T>(caller: Pick<Caller, 'context'>, ruling: Ruling, work: (ruling: Ruling) => Promise<T>): Promise<T> {
    let value: T;
    try {
      value = await work(ruling);
    } catch (error) {
      if (!ruling.written) await this.decided(caller, [ruling.outcome(error)]);
      throw error;
    }
    if (!ruling.written) await this.decided(caller, [ruling.entry]);
    ruling.written = true;
    return value;
  }

  /** A read on an authorized route: its decision is durable before the answer leaves. */
  async read<T>(caller: Caller, work: (ruling: Ruling) => Promise<T>): Promise<T> {
    const ruling = rulingOf(caller);
    const value = await work(ruling);
    await this.decided(caller, [ruling.entry]);
    ruling.written = true;
    return value;
  }

  /**
   * A change on an authorized route: `work` runs in one transaction inside the caller's workspace,
   * and the route's decision commits with it.
   */
  async change<T>(caller: Caller, work: (scope: Scope, ruling: Ruling) => Promise<T>): Promise<T> {
    const ruling = rulingOf(caller);
    const value = await this.database.withWorkspace(caller.workspaceId, async (scope) => {
      const result = await work(scope, ruling);
      await this.decidedIn(scope, caller, [ruling.entry]);
      return result;
    });
    ruling.written = true;
    return value;
  }
}

function rulingOf(caller: Caller): Ruling {
  if (!caller.ruling) throw new Error('a read or change needs the route’s requirement (authorize)');
  return caller.ruling;
}

const originOf = (context: DecisionContext, kind: EventOrigin['actor']['kind']): EventOrigin => ({
  actor: { id: context.principal.id, kind },
  requestId: context.requestId,
  depth: 0,
  fireTriggers: true,
});

function contextOf(
  request: Request,
  principal: Pick<Principal, 'id' | 'roles' | 'provider'>,
  workspaceId: string,
): DecisionContext {
  return {
    workspaceId,
    requestId: String(request.id),
    principal,
    ip: request.ip ?? null,
    userAgent: request.get('user-agent')?.slice(0, 500) ?? null,
    startedAt: request.startedAt ?? process.hrtime.bigint(),
  };
}
