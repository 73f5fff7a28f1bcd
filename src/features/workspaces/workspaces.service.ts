import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import type { ChangeBus } from '../../db/changes.ts';
import type { Database, Transaction } from '../../db/database.ts';
import { decodeCursor, encodeCursor, keysetPage } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
import type { AccessControl, Caller } from '../../policy/access.ts';
import type { DecisionEntry } from '../../policy/decision-log.ts';
import { installDefaultPolicies } from '../policies/default-policies.ts';
import { WorkspaceEntity, type Workspace } from './workspace.entity.ts';
import type { CreateWorkspace, UpdateWorkspace, WorkspaceResponse } from './workspaces.schema.ts';

interface Counts {
  memberCount: number;
  recordCount: number;
}

const cursorPosition = z.object({ after: z.uuid() });
const noCounts: Counts = { memberCount: 0, recordCount: 0 };

function toResponse(workspace: Workspace, counts: Counts): WorkspaceResponse {
  return {
    id: workspace.id,
    slug: workspace.slug,
    name: workspace.name,
    plan: workspace.plan,
    status: workspace.status as WorkspaceResponse['status'],
    createdAt: workspace.createdAt.toISOString(),
    updatedAt: workspace.updatedAt.toISOString(),
    ...counts,
  };
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

const adminEntry = (caller: Caller, action: 'create' | 'update'): DecisionEntry => ({
  action,
  operation: 'admin',
  subject: 'Workspace',
  resourceId: caller.workspaceId,
  decision: {
    allowed: true,
    policyId: null,
    policyVersion: null,
    ruleIndex: null,
    reason: 'platform admin key (outside tenant policy)',
  },
});

export class WorkspacesService {
  private readonly database: Database;
  private readonly changes: ChangeBus;
  private readonly access: AccessControl;

  constructor(options: { database: Database; changes: ChangeBus; access: AccessControl }) {
    this.database = options.database;
    this.changes = options.changes;
    this.access = options.access;
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

  /** The workspace, its default policies and its first decision commit together, or not at all. */
  async create(input: CreateWorkspace, admin: PlatformAdminIn): Promise<WorkspaceResponse> {
    const workspace = await this.announced(async (transaction) => {
      const created = transaction.em.create(WorkspaceEntity, { id: uuidv7(), ...input });
      await transaction.em.flush();
      const scope = await transaction.enter(created.id);
      await installDefaultPolicies(scope);
      const caller = admin(created.id);
      await this.access.decidedIn(scope, caller, [adminEntry(caller, 'create')]);
      return created;
    });
    return toResponse(workspace, noCounts);
  }

  async list(options: { limit: number; cursor?: string | undefined }) {
    const after = options.cursor ? decodeCursor(options.cursor, cursorPosition).after : undefined;
    return this.database.outsideWorkspaces(async (transaction) => {
      const page = await transaction.em.find(WorkspaceEntity, after ? { id: { $gt: after } } : {}, {
        orderBy: { id: 'asc' },
        limit: options.limit + 1,
      });
      const { shown, nextCursor } = keysetPage(page, options.limit, (last) => encodeCursor({ after: last.id }));
      const counts = await countsFor(
        transaction,
        shown.map((workspace) => workspace.id),
      );
      return {
        data: shown.map((workspace) => toResponse(workspace, counts.get(workspace.id) ?? noCounts)),
        nextCursor,
      };
    });
  }

  get(reference: string): Promise<WorkspaceResponse> {
    return this.database.outsideWorkspaces(async (transaction) => {
      const workspace = await this.find(transaction, reference);
      const counts = await countsFor(transaction, [workspace.id]);
      return toResponse(workspace, counts.get(workspace.id) ?? noCounts);
    });
  }

  update(reference: string, patch: UpdateWorkspace, admin: PlatformAdminIn): Promise<WorkspaceResponse> {
    return this.announced(async (transaction) => {
      const workspace = await this.find(transaction, reference);
      transaction.em.assign(workspace, patch);
      await transaction.em.flush();
      const caller = admin(workspace.id);
      await this.access.decidedIn(await transaction.enter(workspace.id), caller, [
        { ...adminEntry(caller, 'update'), fields: Object.keys(patch) },
      ]);
      const counts = await countsFor(transaction, [workspace.id]);
      return toResponse(workspace, counts.get(workspace.id) ?? noCounts);
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
