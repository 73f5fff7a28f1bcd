import type { EntityManager } from '@mikro-orm/postgresql';
import { z } from 'zod';
import type { ChangeBus } from '../../db/changes.ts';
import type { Orm } from '../../db/orm.ts';
import { withWorkspace } from '../../db/scope.ts';
import { WorkspaceConfiguration } from '../../db/workspace-configuration.ts';
import { decodeCursor, encodeCursor, keysetPage, type PageQuery } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import type { Actor } from '../../policy/access.ts';
import { toArrayLiteral } from '../decisions/decision-log.ts';
import { checkGrant, keepAManager, type Grantor } from './grants.ts';
import {
  exactTime,
  toResponse,
  type CreateMember,
  type MemberResponse,
  type MemberRow,
  type UpdateMember,
} from './members.schema.ts';

const columns = 'user_id, email, roles, invited_by, joined_at, updated_at';
const position = z.object({ at: exactTime.schema, user: z.string() });

/** Members of a workspace: one row per (workspace, userId), the source of roles for `roleSource: members`. */
export class MembersService extends WorkspaceConfiguration {
  constructor(orm: Orm, changes: ChangeBus) {
    super(orm, changes, 'member');
  }

  private async load(em: EntityManager, workspaceId: string, userId: string, lock = false): Promise<MemberRow> {
    const [row] = await em.execute<MemberRow[]>(
      `select ${columns} from members where workspace_id = ? and user_id = ?${lock ? ' for update' : ''}`,
      [workspaceId, userId],
    );
    if (!row) throw new ProblemError('member_not_found', `No member "${userId}" in this workspace`);
    return row;
  }

  async list(
    workspaceId: string,
    query: PageQuery,
  ): Promise<{ data: MemberResponse[]; nextCursor: string | null; count?: number }> {
    const after = query.cursor ? decodeCursor(query.cursor, position) : undefined;
    const { rows, count } = await withWorkspace(this.orm, workspaceId, async (em) => ({
      rows: await em.execute<MemberRow[]>(
        `select ${columns}, ${exactTime.select('joined_at')} as position from members
         where workspace_id = ? ${after ? `and (joined_at, user_id) > (${exactTime.parameter}, ?)` : ''} order by joined_at, user_id limit ?`,
        [workspaceId, ...(after ? [after.at, after.user] : []), query.limit + 1],
      ),
      count: query.count
        ? Number(
            (
              await em.execute<{ count: string }[]>('select count(*) from members where workspace_id = ?', [
                workspaceId,
              ])
            )[0]?.count ?? 0,
          )
        : undefined,
    }));
    const { shown, nextCursor } = keysetPage(rows, query.limit, (last) =>
      encodeCursor({ at: last.position, user: last.user_id }),
    );
    return {
      data: shown.map(toResponse),
      nextCursor,
      ...(count !== undefined && { count }),
    };
  }

  async get(workspaceId: string, userId: string): Promise<MemberResponse> {
    return withWorkspace(this.orm, workspaceId, async (em) => toResponse(await this.load(em, workspaceId, userId)));
  }

  async create(actor: Actor, grantor: Grantor, workspaceId: string, input: CreateMember): Promise<MemberResponse> {
    await checkGrant(grantor, input.roles);
    return this.change(workspaceId, actor, async (em) => {
      const [row] = await em.execute<MemberRow[]>(
        `insert into members (workspace_id, user_id, email, roles, invited_by, joined_at, updated_at)
         values (?, ?, ?, ?::text[], ?, now(), now()) returning ${columns}`,
        [workspaceId, input.userId, input.email ?? null, toArrayLiteral(input.roles), actor.id],
      );
      return toResponse(row!);
    });
  }

  async update(
    actor: Actor,
    grantor: Grantor,
    workspaceId: string,
    userId: string,
    patch: UpdateMember,
  ): Promise<MemberResponse> {
    return this.change(workspaceId, actor, async (em) => {
      const current = await this.load(em, workspaceId, userId, true);
      if (patch.roles) {
        const added = patch.roles.filter((role) => !current.roles.includes(role));
        const removed = current.roles.filter((role) => !patch.roles!.includes(role));
        await checkGrant(grantor, [...added, ...removed]);
        await keepAManager(em, workspaceId, userId, patch.roles);
      }
      const [row] = await em.execute<MemberRow[]>(
        `update members set email = ?, roles = ?::text[], updated_at = now() where workspace_id = ? and user_id = ? returning ${columns}`,
        [
          patch.email === undefined ? current.email : patch.email,
          toArrayLiteral(patch.roles ?? current.roles),
          workspaceId,
          userId,
        ],
      );
      return toResponse(row!);
    });
  }

  /** Removing a member takes all its roles away: the grantor must hold them, as for a demotion. */
  async remove(actor: Actor, grantor: Grantor, workspaceId: string, userId: string): Promise<void> {
    await this.change(workspaceId, actor, async (em) => {
      const current = await this.load(em, workspaceId, userId, true);
      await checkGrant(grantor, current.roles);
      await keepAManager(em, workspaceId, userId, undefined);
      await em.execute('delete from members where workspace_id = ? and user_id = ?', [workspaceId, userId]);
    });
  }
}
