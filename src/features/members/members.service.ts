import { sql } from 'kysely';
import { z } from 'zod';
import type { Scope } from '../../db/database.ts';
import { exactTime } from '../../db/exact-time.ts';
import { decodeCursor, encodeCursor, keysetPage, type PageQuery } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import type { Caller } from '../../policy/access.ts';
import { Managers } from '../../policy/managers.ts';
import { WorkspaceConfiguration } from '../../policy/workspace-configuration.ts';
import type { Plans } from '../../policy/plans.ts';
import { effectivePlan, unbilled } from '../../policy/standing.ts';
import { checkGrant } from './grants.ts';
import { requireMemberRoom } from './member-limit.ts';
import {
  toResponse,
  type CreateMember,
  type MemberResponse,
  type MemberRow,
  type UpdateMember,
} from './members.schema.ts';

const columns = sql`user_id, email, roles, invited_by, joined_at, updated_at`;
const position = z.object({ at: exactTime.schema, user: z.string() });

/** Members of a workspace: one row per (workspace, userId), the source of roles for `roleSource: members`. */
export class MembersService extends WorkspaceConfiguration {
  private readonly plans: Plans;

  constructor(options: ConstructorParameters<typeof WorkspaceConfiguration>[0] & { plans: Plans }) {
    super(options, 'member');
    this.plans = options.plans;
  }

  private async load(scope: Scope, userId: string, lock = false): Promise<MemberRow> {
    const [row] = await scope.query(
      sql<MemberRow>`select ${columns} from members
        where workspace_id = ${scope.workspaceId}::uuid and user_id = ${userId} ${lock ? sql`for update` : sql``}`,
    );
    if (!row) throw new ProblemError('member_not_found', `No member "${userId}" in this workspace`);
    return row;
  }

  list(
    caller: Caller,
    query: PageQuery,
  ): Promise<{ data: MemberResponse[]; nextCursor: string | null; count?: number }> {
    const after = query.cursor ? decodeCursor(query.cursor, position) : undefined;
    return this.read(caller, async (scope) => {
      const rows = await scope.query(
        sql<
          MemberRow & { position: string }
        >`select ${columns}, ${exactTime.of(sql`joined_at`)} as position from members
          where workspace_id = ${scope.workspaceId}::uuid
            ${after ? sql`and (joined_at, user_id) > (${exactTime.at(after.at)}, ${after.user}::text)` : sql``}
          order by joined_at, user_id limit ${query.limit + 1}::integer`,
      );
      const count = query.count
        ? await scope.count(sql`members where workspace_id = ${scope.workspaceId}::uuid`)
        : undefined;
      const { shown, nextCursor } = keysetPage(rows, query.limit, (last) =>
        encodeCursor({ at: last.position, user: last.user_id }),
      );
      return { data: shown.map(toResponse), nextCursor, ...(count !== undefined && { count }) };
    });
  }

  get(caller: Caller, userId: string): Promise<MemberResponse> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: userId });
      return toResponse(await this.load(scope, userId));
    });
  }

  async create(caller: Caller, input: CreateMember): Promise<MemberResponse> {
    caller.ruling?.refine({ resourceId: input.userId });
    checkGrant(caller, input.roles);
    const plan = effectivePlan(this.plans, (await this.access.tenantOf(caller))?.billing ?? unbilled);
    return this.changeOfMember(caller, input.userId, async (scope) => {
      await requireMemberRoom(scope, plan);
      const [row] = await scope.query(
        sql<MemberRow>`insert into members (workspace_id, user_id, email, roles, invited_by, joined_at, updated_at)
          values (${scope.workspaceId}::uuid, ${input.userId}, ${input.email ?? null}::text, ${input.roles}::text[],
                  ${caller.principal.id}, now(), now())
          returning ${columns}`,
      );
      return toResponse(row!);
    });
  }

  update(caller: Caller, userId: string, patch: UpdateMember): Promise<MemberResponse> {
    return this.changeOfMember(caller, userId, async (scope, ruling) => {
      ruling.refine({ resourceId: userId });
      const current = await this.load(scope, userId, true);
      if (patch.roles) {
        const added = patch.roles.filter((role) => !current.roles.includes(role));
        const removed = current.roles.filter((role) => !patch.roles!.includes(role));
        checkGrant(caller, [...added, ...removed]);
        await (await Managers.of(scope)).keepOne(userId, current.roles, patch.roles);
      }
      const [row] = await scope.query(
        sql<MemberRow>`update members set email = ${patch.email === undefined ? current.email : patch.email}::text,
            roles = ${patch.roles ?? current.roles}::text[], updated_at = now()
          where workspace_id = ${scope.workspaceId}::uuid and user_id = ${userId}
          returning ${columns}`,
      );
      return toResponse(row!);
    });
  }

  /** Removing a member takes all its roles away: the grantor must hold them, as for a demotion. */
  async remove(caller: Caller, userId: string): Promise<void> {
    await this.changeOfMember(caller, userId, async (scope, ruling) => {
      ruling.refine({ resourceId: userId });
      const current = await this.load(scope, userId, true);
      checkGrant(caller, current.roles);
      await (await Managers.of(scope)).keepOne(userId, current.roles, undefined);
      await scope.query(
        sql`delete from members where workspace_id = ${scope.workspaceId}::uuid and user_id = ${userId}`,
      );
    });
  }
}
