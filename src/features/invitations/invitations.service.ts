import { createHash, randomBytes } from 'node:crypto';
import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import type { Change, ChangeBus } from '../../db/changes.ts';
import type { Database, Scope } from '../../db/database.ts';
import { exactTime } from '../../db/exact-time.ts';
import type { EventLog } from '../../events/event-log.ts';
import type { EventSecrets } from '../../events/secrets.ts';
import { decodeCursor, encodeCursor, keysetPage, type PageQuery } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
import { ruleless } from '../../policy/ability.ts';
import type { AccessControl, Caller, PrincipalCaller } from '../../policy/access.ts';
import { Refusal, Ruling } from '../../policy/ruling.ts';
import type { Plans } from '../../policy/plans.ts';
import { effectivePlan, unbilled } from '../../policy/standing.ts';
import { checkGrant } from '../members/grants.ts';
import { requireMemberRoom } from '../members/member-limit.ts';
import { toResponse as memberResponse, type MemberResponse, type MemberRow } from '../members/members.schema.ts';
import {
  statusOf,
  toResponse,
  type CreateInvitation,
  type InvitationResponse,
  type InvitationRow,
} from './invitations.schema.ts';

const columns = sql`id, workspace_id, email, roles, invited_by, status, expires_at, created_at, accepted_at, accepted_by`;
const tokenShape = /^[A-Za-z0-9_-]{43}$/;
const hashOf = (token: string) => createHash('sha256').update(token).digest();
const position = z.object({ at: exactTime.schema, id: z.uuid() });

export interface InvitationSettings {
  ttlHours: number;
  /** With `{token}` where the token goes. */
  acceptUrl: string;
}

/** How the accepting request proves who it is: a token of the invitation's workspace. */
export type AuthenticateIn = (workspaceId: string) => Promise<PrincipalCaller>;

export class InvitationsService {
  private readonly database: Database;
  private readonly access: AccessControl;
  private readonly changes: ChangeBus;
  private readonly events: EventLog;
  private readonly secrets: EventSecrets;
  private readonly settings: InvitationSettings;
  private readonly plans: Plans;

  constructor(
    options: { database: Database; access: AccessControl; changes: ChangeBus; events: EventLog; plans: Plans },
    secrets: EventSecrets,
    settings: InvitationSettings,
  ) {
    this.plans = options.plans;
    this.database = options.database;
    this.access = options.access;
    this.changes = options.changes;
    this.events = options.events;
    this.secrets = secrets;
    this.settings = settings;
  }

  list(
    caller: Caller,
    query: PageQuery,
  ): Promise<{ data: InvitationResponse[]; nextCursor: string | null; count?: number }> {
    const after = query.cursor ? decodeCursor(query.cursor, position) : undefined;
    return this.access.read(caller, () =>
      this.database.withWorkspace(
        caller.workspaceId,
        async (scope) => {
          const rows = await scope.query(
            sql<InvitationRow & { position: string }>`select ${columns}, ${exactTime.of(sql`created_at`)} as position
              from invitations where workspace_id = ${scope.workspaceId}::uuid
                ${after ? sql`and (created_at, id) < (${exactTime.at(after.at)}, ${after.id}::uuid)` : sql``}
              order by created_at desc, id desc limit ${query.limit + 1}::integer`,
          );
          const count = query.count
            ? await scope.count(sql`invitations where workspace_id = ${scope.workspaceId}::uuid`)
            : undefined;
          const { shown, nextCursor } = keysetPage(rows, query.limit, (last) =>
            encodeCursor({ at: last.position, id: last.id }),
          );
          return { data: shown.map(toResponse), nextCursor, ...(count !== undefined && { count }) };
        },
        { readOnly: true },
      ),
    );
  }

  /**
   * A new invitation replaces a pending one for the same email, if the caller may revoke that one
   * (`revokeIn`). Its token is returned once; the `invitation.created` event for the app to email
   * carries the accept URL, sealed.
   */
  async create(
    caller: Caller,
    input: CreateInvitation,
  ): Promise<InvitationResponse & { token: string; acceptUrl: string }> {
    checkGrant(caller, input.roles);
    const token = randomBytes(32).toString('base64url');
    const acceptUrl = this.settings.acceptUrl.replace(/\{token\}|%7Btoken%7D/, token);
    const expiresAt = new Date(Date.now() + (input.expiresInHours ?? this.settings.ttlHours) * 3_600_000);
    const plan = effectivePlan(this.plans, (await this.access.tenantOf(caller))?.billing ?? unbilled);
    const created = await this.access.change(caller, async (scope, ruling) => {
      const workspaceId = scope.workspaceId;
      // Concurrent invitations of one email queue here: each replaces the one before it, instead
      // of all but one failing on the one-pending-invitation-per-email index.
      await scope.query(
        sql`select pg_advisory_xact_lock(hashtextextended('cordon.invitations:' || ${workspaceId}::text || ':' || lower(${input.email}::text), 0))`,
      );
      const [replaced] = await scope.query(
        sql<InvitationRow>`select ${columns} from invitations
          where workspace_id = ${workspaceId}::uuid and lower(email) = lower(${input.email}::text) and status = 'pending'
          for update`,
      );
      if (replaced) await this.revokeIn(scope, caller, replaced, 'replacing');
      // Counted after the replaced invitation is revoked: re-inviting an email takes no more room.
      await requireMemberRoom(scope, plan);
      const [row] = await scope.query(
        sql<InvitationRow>`insert into invitations (id, workspace_id, email, roles, invited_by, token_hash, expires_at)
          values (${uuidv7()}::uuid, ${workspaceId}::uuid, ${input.email}, ${input.roles}::text[], ${caller.principal.id},
                  ${hashOf(token)}::bytea, ${expiresAt}::timestamptz)
          returning ${columns}`,
      );
      const invitation = toResponse(row!);
      ruling.refine({ resourceId: invitation.id });
      await this.events.appendIn(scope, caller.origin, [
        {
          type: 'invitation.created',
          data: {
            invitationId: invitation.id,
            workspaceId,
            email: invitation.email,
            roles: invitation.roles,
            invitedBy: invitation.invitedBy,
            expiresAt: invitation.expiresAt,
            acceptUrl: { sealed: this.secrets.seal(acceptUrl) },
          },
        },
      ]);
      return { ...invitation, token, acceptUrl };
    });
    this.events.committed(caller.workspaceId);
    return created;
  }

  get(caller: Caller, id: string): Promise<InvitationResponse> {
    return this.access.read(caller, async (ruling) => {
      ruling.refine({ resourceId: id });
      const [row] = isUuid(id)
        ? await this.database.withWorkspace(
            caller.workspaceId,
            (scope) =>
              scope.query(
                sql<InvitationRow>`select ${columns} from invitations
                  where workspace_id = ${scope.workspaceId}::uuid and id = ${id.toLowerCase()}::uuid`,
              ),
            { readOnly: true },
          )
        : [];
      if (!row) throw new ProblemError('invitation_not_found', `No invitation "${id}" in this workspace`);
      return toResponse(row);
    });
  }

  async revoke(caller: Caller, id: string): Promise<void> {
    await this.access.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const [row] = isUuid(id)
        ? await scope.query(
            sql<InvitationRow>`select ${columns} from invitations
              where workspace_id = ${scope.workspaceId}::uuid and id = ${id.toLowerCase()}::uuid for update`,
          )
        : [];
      if (!row) throw new ProblemError('invitation_not_found', `No invitation "${id}" in this workspace`);
      // An expired invitation is no longer pending either: revoking it would only rewrite its history.
      if (statusOf(row) !== 'pending')
        throw new ProblemError('invitation_not_pending', `The invitation is ${statusOf(row)}`);
      await this.revokeIn(scope, caller, row, 'revoking');
    });
  }

  /**
   * Takes back an invitation, by DELETE or by inviting its email again: either way the roles it
   * would grant are taken away, so it needs what removing a member needs, `delete` on `Invitation`
   * (DELETE's route asks for it; a re-invite is a `create`) and checkGrant over its roles. A refusal
   * is the request's decision and changes nothing. One that expired while pending grants nothing:
   * a re-invite replaces it freely.
   */
  private async revokeIn(
    scope: Scope,
    caller: Caller,
    invitation: InvitationRow,
    how: 'revoking' | 'replacing',
  ): Promise<void> {
    if (statusOf(invitation) === 'pending') {
      try {
        const revoking = caller.ability?.decide('delete', 'Invitation');
        if (revoking && !revoking.allowed) throw new Refusal(revoking);
        checkGrant(caller, invitation.roles);
      } catch (error) {
        if (how === 'revoking' || !(error instanceof Refusal)) throw error;
        // Why (the roles it would grant, say) is the invitation's, for a principal who may read it.
        const mayRead = caller.ability?.decide('read', 'Invitation').allowed ?? true;
        const why = mayRead ? `: ${error.decision.reason}` : '';
        throw new Refusal({
          ...error.decision,
          reason: `its email has a pending invitation that this principal may not revoke${why}`,
        });
      }
    }
    await scope.query(
      sql`update invitations set status = 'revoked', revoked_at = now()
        where workspace_id = ${scope.workspaceId}::uuid and id = ${invitation.id}::uuid`,
    );
  }

  /**
   * Exactly once: the invitation row is locked, so of two racing accepts one creates the member
   * and the other finds it accepted. The caller's token must belong to the invitation's workspace
   * and assert the invitation's email (compared case-insensitively). Not a policy decision: the
   * invitation is the grant, so the decision names no rule; a used, revoked or expired invitation,
   * or another email, is a refusal.
   */
  async accept(token: string, authenticate: AuthenticateIn): Promise<MemberResponse> {
    const missing = () => new ProblemError('invitation_not_found', 'No such invitation');
    if (!tokenShape.test(token)) throw missing();
    const hash = hashOf(token);
    const [found] = await this.database.query(
      sql<{ workspace_id: string | null }>`select cordon_invitation_workspace(${hash}::bytea) as workspace_id`,
    );
    if (!found?.workspace_id) throw missing();
    const caller = await authenticate(found.workspace_id);
    const ruling = new Ruling({
      action: 'create',
      operation: 'create',
      subject: 'Member',
      resourceId: caller.principal.id,
      decision: ruleless(true, 'an invitation grants its roles'),
    });
    const change: Change = { topic: 'member', workspaceId: caller.workspaceId, userId: caller.principal.id };
    const member = await this.access.decide(caller, ruling, async () => {
      await this.access.requireWritable(caller.workspaceId);
      const accepted = await this.database.withWorkspace(caller.workspaceId, async (scope) => {
        const value = await this.acceptIn(scope, caller, hash, ruling);
        await this.access.decidedIn(scope, caller, [ruling.entry]);
        await this.changes.announce(scope, change);
        return value;
      });
      ruling.written = true;
      return accepted;
    });
    this.changes.apply(change);
    return member;
  }

  private async acceptIn(scope: Scope, caller: PrincipalCaller, hash: Buffer, ruling: Ruling): Promise<MemberResponse> {
    const [invitation] = await scope.query(
      sql<InvitationRow>`select ${columns} from invitations
        where workspace_id = ${scope.workspaceId}::uuid and token_hash = ${hash}::bytea for update`,
    );
    if (!invitation) throw new ProblemError('invitation_not_found', 'No such invitation');
    const refuse = (
      code: 'invitation_used' | 'invitation_revoked' | 'invitation_expired' | 'invitation_email_mismatch',
      detail: string,
    ) => new Refusal(ruleless(false, `invitation ${invitation.id} not accepted: ${detail}`), code);
    const status = statusOf(invitation);
    if (status === 'accepted') throw refuse('invitation_used', 'The invitation has already been accepted');
    if (status === 'revoked') throw refuse('invitation_revoked', 'The invitation was revoked');
    if (status === 'expired') throw refuse('invitation_expired', 'The invitation has expired');
    const email = caller.principal.email;
    if (!email || email.toLowerCase() !== invitation.email.toLowerCase()) {
      throw refuse(
        'invitation_email_mismatch',
        'Sign in with the account of the invited email address: the token must carry it in its email claim, not marked unverified',
      );
    }
    ruling.refine({ decision: { ...ruling.entry.decision, reason: `invitation ${invitation.id} accepted` } });
    const [member] = await scope.query(
      sql<MemberRow>`insert into members (workspace_id, user_id, email, roles, invited_by, joined_at, updated_at)
        values (${scope.workspaceId}::uuid, ${caller.principal.id}, ${email}, ${invitation.roles}::text[], ${invitation.invited_by}, now(), now())
        on conflict (workspace_id, user_id) do update
          set roles = array(select distinct unnest(members.roles || excluded.roles)), email = excluded.email, updated_at = now()
        returning user_id, email, roles, invited_by, joined_at, updated_at`,
    );
    await scope.query(
      sql`update invitations set status = 'accepted', accepted_at = now(), accepted_by = ${caller.principal.id}
        where workspace_id = ${scope.workspaceId}::uuid and id = ${invitation.id}::uuid`,
    );
    return memberResponse(member!);
  }
}
