import type { EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import type { ChangeBus } from '../../db/changes.ts';
import type { Orm } from '../../db/orm.ts';
import { decodeCursor, encodeCursor, keysetPage } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import { installDefaultPolicies } from '../policies/default-policies.ts';
import { WorkspaceEntity, type Workspace } from './workspace.entity.ts';
import { isUuid, type CreateWorkspace, type UpdateWorkspace, type WorkspaceResponse } from './workspaces.schema.ts';

interface Counts {
  memberCount: number;
  recordCount: number;
}

const cursorPosition = z.object({ after: z.uuid() });

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
async function countsFor(em: EntityManager, ids: string[]): Promise<Map<string, Counts>> {
  if (!ids.length) return new Map();
  const rows = await em.execute<{ workspace_id: string; member_count: string; record_count: string }[]>(
    'select * from cordon_workspace_counts(?::uuid[])',
    [`{${ids.join(',')}}`],
  );
  return new Map(
    rows.map((row) => [
      row.workspace_id,
      { memberCount: Number(row.member_count), recordCount: Number(row.record_count) },
    ]),
  );
}

const noCounts: Counts = { memberCount: 0, recordCount: 0 };

export class WorkspacesService {
  private readonly orm: Orm;
  private readonly changes: ChangeBus;

  constructor(orm: Orm, changes: ChangeBus) {
    this.orm = orm;
    this.changes = changes;
  }

  /** Workspace rows are few and rarely change: any change drops every cached tenant. */
  private async announced<T>(work: (em: EntityManager) => Promise<T>): Promise<T> {
    return this.changes.committing(
      { topic: 'workspace', workspaceId: '*' },
      (transaction) => this.orm.em.fork().transactional(transaction),
      work,
    );
  }

  /** The workspace of a tenant route: a principal is already bound to it; the platform admin names it. */
  async idOf(reference: string, bound: { id: string } | undefined): Promise<string> {
    return bound?.id ?? (await this.find(this.orm.em.fork(), reference)).id;
  }

  /** Finds a workspace by id or slug; unknown and malformed references are the same 404. */
  async find(em: EntityManager, reference: string): Promise<Workspace> {
    const workspace = await em.findOne(
      WorkspaceEntity,
      isUuid(reference) ? { id: reference.toLowerCase() } : { slug: reference },
    );
    if (!workspace) throw new ProblemError('workspace_not_found', `No workspace "${reference}"`);
    return workspace;
  }

  /** The workspace and its default policies commit together, or not at all. */
  async create(input: CreateWorkspace): Promise<WorkspaceResponse> {
    const workspace = await this.announced(async (em) => {
      const created = em.create(WorkspaceEntity, { id: uuidv7(), ...input });
      await em.flush();
      await em.execute("select set_config('cordon.workspace_id', ?, true)", [created.id]);
      await installDefaultPolicies(em, created.id);
      return created;
    });
    return toResponse(workspace, noCounts);
  }

  async list(options: {
    limit: number;
    cursor?: string | undefined;
  }): Promise<{ data: WorkspaceResponse[]; nextCursor: string | null }> {
    const em = this.orm.em.fork();
    const after = options.cursor ? decodeCursor(options.cursor, cursorPosition).after : undefined;
    const page = await em.find(WorkspaceEntity, after ? { id: { $gt: after } } : {}, {
      orderBy: { id: 'asc' },
      limit: options.limit + 1,
    });
    const { shown, nextCursor } = keysetPage(page, options.limit, (last) => encodeCursor({ after: last.id }));
    const counts = await countsFor(
      em,
      shown.map((workspace) => workspace.id),
    );
    return { data: shown.map((workspace) => toResponse(workspace, counts.get(workspace.id) ?? noCounts)), nextCursor };
  }

  async get(reference: string): Promise<WorkspaceResponse> {
    const em = this.orm.em.fork();
    const workspace = await this.find(em, reference);
    const counts = await countsFor(em, [workspace.id]);
    return toResponse(workspace, counts.get(workspace.id) ?? noCounts);
  }

  async update(reference: string, patch: UpdateWorkspace): Promise<WorkspaceResponse> {
    return this.announced(async (em) => {
      const workspace = await this.find(em, reference);
      em.assign(workspace, patch);
      await em.flush();
      const counts = await countsFor(em, [workspace.id]);
      return toResponse(workspace, counts.get(workspace.id) ?? noCounts);
    });
  }

  /** Tenant tables go by ON DELETE CASCADE; the decision log (no foreign key) is purged alongside. */
  async remove(reference: string): Promise<void> {
    await this.announced(async (em) => {
      const workspace = await this.find(em, reference);
      await em.nativeDelete(WorkspaceEntity, { id: workspace.id });
      await em.execute('select cordon_purge_decision_log(?)', [workspace.id]);
    });
  }
}
