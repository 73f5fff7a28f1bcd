import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import type { ChangeBus } from '../../db/changes.ts';
import type { Database, Scope, Transaction } from '../../db/database.ts';
import { decodeCursor, encodeCursor, keysetPage, type PageQuery } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
import { adminDecision, type AccessControl, type Caller } from '../../policy/access.ts';
import type { DecisionEntry } from '../../policy/decision-log.ts';
import type { Plans } from '../../policy/plans.ts';
import { effectivePlan } from '../../policy/standing.ts';
import { billingStore } from '../billing/billing-store.ts';
import { monthlyRevenue, revenueCurrency } from '../billing/revenue.ts';
import { installDefaultPolicies } from '../policies/default-policies.ts';
import { WorkspaceEntity, type Workspace } from './workspace.entity.ts';
import type { CreateWorkspace, UpdateWorkspace, WorkspaceResponse } from './workspaces.schema.ts';

interface Counts {
  memberCount: number;
  recordCount: number;
}

interface Billing {
  plan: string;
  billingStatus: WorkspaceResponse['billingStatus'];
  mrr: WorkspaceResponse['mrr'];
}

const cursorPosition = z.object({ after: z.uuid() });
const noCounts: Counts = { memberCount: 0, recordCount: 0 };
const unbilled = (plans: Plans): Billing => ({
  plan: 'free',
  billingStatus: 'none',
  mrr: { amount: 0, currency: revenueCurrency(plans) },
});

function toResponse(workspace: Workspace, counts: Counts, billing: Billing): WorkspaceResponse {
  return {
    id: workspace.id,
    slug: workspace.slug,
    name: workspace.name,
    plan: billing.plan,
    billingStatus: billing.billingStatus,
    mrr: billing.mrr,
    status: workspace.status as WorkspaceResponse['status'],
    createdAt: workspace.createdAt.toISOString(),
    updatedAt: workspace.updatedAt.toISOString(),
    ...counts,
  };
}

/** Counts and billing of a page of workspaces: two statements, whatever the page's size. */
async function summariesOf(transaction: Transaction, workspaces: Workspace[], plans: Plans) {
  const ids = workspaces.map((workspace) => workspace.id);
  const counts = await countsFor(transaction, ids);
  const billings = await billingStore.plansOf(transaction, ids);
  const currency = revenueCurrency(plans);
  const now = new Date();
  return workspaces.map((workspace) => {
    const billing = billings.get(workspace.id);
    return toResponse(
      workspace,
      counts.get(workspace.id) ?? noCounts,
      billing
        ? {
            // The plan whose limits apply: free once a canceled subscription's period is over.
            plan: effectivePlan(plans, { ...billing, graceEndsAt: null, updatedAt: now }, now).id,
            billingStatus: billing.status as Billing['billingStatus'],
            mrr: { amount: Math.round(monthlyRevenue(plans, billing)), currency },
          }
        : unbilled(plans),
    );
  });
}

/** Member and record counts across tenants come from a definer function that returns numbers only. */
async function countsFor(transaction: Pick<Transaction, 'query'>, ids: string[]): Promise<Map<string, Counts>> {
  if (!ids.length) return new Map();
  const rows = await transaction.query(
    sql<{
      workspace_id: string;
      member_count: string;
      record_count: string;
    }>`select * from cordon_workspace_counts(${ids}::uuid[])`,
  );
  return new Map(
    rows.map((row) => [
      row.workspace_id,
      { memberCount: Number(row.member_count), recordCount: Number(row.record_count) },
    ]),
  );
}

/** The platform admin acting on one tenant: its decision goes into that tenant's log. */
export type PlatformAdminIn = (workspaceId: string) => Caller;

/** Templates, as the lifecycle feature applies them: `check` refuses an unknown name before any write. */
export interface WorkspaceTemplates {
  check(name: string): void;
  apply(scope: Scope, name: string): Promise<void>;
}

const adminEntry = (caller: Caller, action: 'create' | 'update'): DecisionEntry => ({
  action,
  operation: 'admin',
  subject: 'Workspace',
  resourceId: caller.workspaceId,
  decision: adminDecision,
});

export class WorkspacesService {
  private readonly database: Database;
  private readonly changes: ChangeBus;
  private readonly access: AccessControl;
  private readonly plans: Plans;
  private readonly templates: WorkspaceTemplates | undefined;

  constructor(options: {
    database: Database;
    changes: ChangeBus;
    access: AccessControl;
    plans: Plans;
    templates?: WorkspaceTemplates;
  }) {
    this.database = options.database;
    this.changes = options.changes;
    this.access = options.access;
    this.plans = options.plans;
    this.templates = options.templates;
  }

  private knownPlan(plan: string): string {
    if (this.plans.find(plan)) return plan;
    throw new ProblemError('validation_failed', `No plan "${plan}"`, {
      errors: [
        {
          pointer: '/plan',
          in: 'body',
          detail: `must be one of ${this.plans.all.map((entry) => entry.id).join(', ')}`,
        },
      ],
    });
  }

  /** Workspace rows are few and rarely change: any change drops every cached tenant. */
  private async announced<T>(work: (transaction: Transaction) => Promise<T>): Promise<T> {
    const change = { topic: 'workspace', workspaceId: '*' } as const;
    const value = await this.database.outsideWorkspaces(async (transaction) => {
      const result = await work(transaction);
      await this.changes.announce(transaction, change);
      return result;
    });
    this.changes.apply(change);
    return value;
  }

  /** Finds a workspace by id or slug; unknown and malformed references are the same 404. */
  private async find(transaction: Transaction, reference: string): Promise<Workspace> {
    const workspace = await transaction.em.findOne(
      WorkspaceEntity,
      isUuid(reference) ? { id: reference.toLowerCase() } : { slug: reference },
    );
    if (!workspace) throw new ProblemError('workspace_not_found', `No workspace "${reference}"`);
    return workspace;
  }

  /**
   * The workspace, its billing row, its default policies (or its template's), the template's
   * structures and records, and its first decision commit together, or not at all.
   */
  async create(input: CreateWorkspace, admin: PlatformAdminIn): Promise<WorkspaceResponse> {
    const { plan, template, ...fields } = input;
    this.knownPlan(plan);
    if (template !== undefined) {
      if (!this.templates) throw new ProblemError('template_not_found', 'No templates are installed');
      this.templates.check(template);
    }
    const workspace = await this.announced(async (transaction) => {
      const created = transaction.em.create(WorkspaceEntity, { id: uuidv7(), ...fields });
      await transaction.em.flush();
      const scope = await transaction.enter(created.id);
      await billingStore.create(scope, plan);
      await installDefaultPolicies(scope);
      if (template !== undefined) await this.templates!.apply(scope, template);
      const caller = admin(created.id);
      await this.access.decidedIn(scope, caller, [adminEntry(caller, 'create')]);
      // A template brings records (and the counts see this transaction's own rows).
      const counts = template === undefined ? noCounts : (await countsFor(transaction, [created.id])).get(created.id);
      return { created, counts: counts ?? noCounts };
    });
    return toResponse(workspace.created, workspace.counts, {
      plan,
      billingStatus: plan === 'free' ? 'none' : 'active',
      mrr: unbilled(this.plans).mrr,
    });
  }

  async list(options: PageQuery) {
    const after = options.cursor ? decodeCursor(options.cursor, cursorPosition).after : undefined;
    return this.database.outsideWorkspaces(async (transaction) => {
      const page = await transaction.em.find(WorkspaceEntity, after ? { id: { $gt: after } } : {}, {
        orderBy: { id: 'asc' },
        limit: options.limit + 1,
      });
      const count = options.count ? await transaction.em.count(WorkspaceEntity) : undefined;
      const { shown, nextCursor } = keysetPage(page, options.limit, (last) => encodeCursor({ after: last.id }));
      return {
        data: await summariesOf(transaction, shown, this.plans),
        nextCursor,
        ...(count !== undefined && { count }),
      };
    });
  }

  get(reference: string): Promise<WorkspaceResponse> {
    return this.database.outsideWorkspaces(async (transaction) => {
      const workspace = await this.find(transaction, reference);
      const [response] = await summariesOf(transaction, [workspace], this.plans);
      return response!;
    });
  }

  /** A plan named in the patch is assigned (active, no period end): how plans are given without Stripe. */
  update(reference: string, patch: UpdateWorkspace, admin: PlatformAdminIn): Promise<WorkspaceResponse> {
    return this.announced(async (transaction) => {
      const { plan, ...fields } = patch;
      if (plan !== undefined) this.knownPlan(plan);
      const workspace = await this.find(transaction, reference);
      transaction.em.assign(workspace, fields);
      await transaction.em.flush();
      const caller = admin(workspace.id);
      const scope = await transaction.enter(workspace.id);
      if (plan !== undefined) await billingStore.assign(scope, plan);
      await this.access.decidedIn(scope, caller, [{ ...adminEntry(caller, 'update'), fields: Object.keys(patch) }]);
      const [response] = await summariesOf(transaction, [workspace], this.plans);
      return response!;
    });
  }

  /** Tenant tables go by ON DELETE CASCADE; the decision and event logs (no foreign key) are purged alongside. */
  async remove(reference: string): Promise<void> {
    await this.announced(async (transaction) => {
      const workspace = await this.find(transaction, reference);
      await transaction.em.nativeDelete(WorkspaceEntity, { id: workspace.id });
      await transaction.query(sql`select cordon_purge_decision_log(${workspace.id}::uuid)`);
      await transaction.query(sql`select cordon_purge_events(${workspace.id}::uuid)`);
    });
  }
}
