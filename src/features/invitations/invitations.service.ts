import { createHash, randomBytes } from 'node:crypto';
import type { EntityManager } from '@mikro-orm/postgresql';
import { v7 as uuidv7 } from 'uuid';
import { z } from 'zod';
import type { Principal } from '../../auth/principal.ts';
import type { ChangeBus } from '../../db/changes.ts';
import type { Orm } from '../../db/orm.ts';
import { appendEvent, type EventSecrets } from '../../db/outbox.ts';
import { withWorkspace } from '../../db/scope.ts';
import { decodeCursor, encodeCursor, keysetPage, type PageQuery } from '../../http/cursor.ts';
import { ProblemError } from '../../http/errors.ts';
import type { Actor } from '../../policy/access.ts';
import { toArrayLiteral } from '../decisions/decision-log.ts';
import { checkGrant, type Grantor } from '../members/grants.ts';
import {
  exactTime,
  toResponse as memberResponse,
  type MemberResponse,
  type MemberRow,
} from '../members/members.schema.ts';
import { isUuid } from '../workspaces/workspaces.schema.ts';
import {
  statusOf,
  toResponse,
  type CreateInvitation,
  type InvitationResponse,
  type InvitationRow,
} from './invitations.schema.ts';

const columns = 'id, workspace_id, email, roles, invited_by, status, expires_at, created_at, accepted_at, accepted_by';
const tokenShape = /^[A-Za-z0-9_-]{43}$/;
const hashOf = (token: string) => createHash('sha256').update(token).digest();
const position = z.object({ at: exactTime.schema, id: z.uuid() });

export interface InvitationSettings {
  ttlHours: number;
  /** With `{token}` where the token goes. */
  acceptUrl: string;
}

/** How the accepting request proves who it is: a token of the invitation's workspace. */
export type AuthenticateIn = (workspaceId: string) => Promise<Principal>;
/** Records the acceptance decision: in the acceptance's transaction, or on its own when refused. */
export interface AuditAcceptance {
  accepted(em: EntityManager, principal: Principal, invitationId: string): Promise<void>;
  refused(principal: Principal, reason: string): Promise<void>;
}

/** Answers to an authenticated invitee that are decisions about it, and logged as denials. */
const refusals = new Set<string>([
  'invitation_used',
  'invitation_revoked',
  'invitation_expired',
  'invitation_email_mismatch',
]);

export class InvitationsService {
  private readonly orm: Orm;
  private readonly changes: ChangeBus;
  private readonly secrets: EventSecrets;
  private readonly settings: InvitationSettings;

  constructor(orm: Orm, changes: ChangeBus, secrets: EventSecrets, settings: InvitationSettings) {
    this.orm = orm;
    this.changes = changes;
    this.secrets = secrets;
    this.settings = settings;
  }

  async list(
    workspaceId: string,
    query: PageQuery,
  ): Promise<{ data: InvitationResponse[]; nextCursor: string | null; count?: number }> {
    const after = query.cursor ? decodeCursor(query.cursor, position) : undefined;
    const { rows, count } = await withWorkspace(this.orm, workspaceId, async (em) => ({
      rows: await em.execute<InvitationRow[]>(
        `select ${columns}, ${exactTime.select('created_at')} as position from invitations
         where workspace_id = ? ${after ? `and (created_at, id) < (${exactTime.parameter}, ?::uuid)` : ''} order by created_at desc, id desc limit ?`,
        [workspaceId, ...(after ? [after.at, after.id] : []), query.limit + 1],
      ),
      count: query.count
        ? Number(
            (
              await em.execute<{ count: string }[]>('select count(*) from invitations where workspace_id = ?', [
                workspaceId,
              ])
            )[0]?.count ?? 0,
          )
        : undefined,
    }));
    const { shown, nextCursor } = keysetPage(rows, query.limit, (last) =>
      encodeCursor({ at: last.position, id: last.id }),
    );
    return {
      data: shown.map(toResponse),
      nextCursor,
      ...(count !== undefined && { count }),
    };
  }

  /**
   * A new invitation replaces a pending one for the same email. Its token is returned once; the
   * `invitation.created` event for the app to email carries the accept URL, sealed.
   */
  async create(
    actor: Actor,
    grantor: Grantor,
    workspaceId: string,
    input: CreateInvitation,
  ): Promise<InvitationResponse & { token: string; acceptUrl: string }> {
    await checkGrant(grantor, input.roles);
    const token = randomBytes(32).toString('base64url');
    const acceptUrl = this.settings.acceptUrl.replace(/\{token\}|%7Btoken%7D/, token);
    const expiresAt = new Date(Date.now() + (input.expiresInHours ?? this.settings.ttlHours) * 3_600_000);
    return withWorkspace(this.orm, workspaceId, async (em) => {
      // Concurrent invitations of one email queue here: each replaces the one before it, instead
      // of all but one failing on the one-pending-invitation-per-email index.
      await em.execute(
        "select pg_advisory_xact_lock(hashtextextended('cordon.invitations:' || ? || ':' || lower(?), 0))",
        [workspaceId, input.email],
      );
      await em.execute(
        "update invitations set status = 'revoked', revoked_at = now() where workspace_id = ? and lower(email) = lower(?) and status = 'pending'",
        [workspaceId, input.email],
      );
      const [row] = await em.execute<InvitationRow[]>(
        `insert into invitations (id, workspace_id, email, roles, invited_by, token_hash, expires_at)
         values (?, ?, ?, ?::text[], ?, decode(?, 'hex'), ?) returning ${columns}`,
        [
          uuidv7(),
          workspaceId,
          input.email,
          toArrayLiteral(input.roles),
          actor.id,
          hashOf(token).toString('hex'),
          expiresAt,
        ],
      );
      const invitation = toResponse(row!);
      await appendEvent(em, workspaceId, 'invitation.created', {
        invitationId: invitation.id,
        workspaceId,
        email: invitation.email,
        roles: invitation.roles,
        invitedBy: invitation.invitedBy,
        expiresAt: invitation.expiresAt,
        acceptUrl: { sealed: this.secrets.seal(acceptUrl) },
      });
      await actor.audit(em);
      return { ...invitation, token, acceptUrl };
    });
  }

  async get(workspaceId: string, id: string): Promise<InvitationResponse> {
    const [row] = isUuid(id)
      ? await withWorkspace(this.orm, workspaceId, (em) =>
          em.execute<InvitationRow[]>(`select ${columns} from invitations where workspace_id = ? and id = ?`, [
            workspaceId,
            id.toLowerCase(),
          ]),
        )
      : [];
    if (!row) throw new ProblemError('invitation_not_found', `No invitation "${id}" in this workspace`);
    return toResponse(row);
  }

  async revoke(actor: Actor, workspaceId: string, id: string): Promise<void> {
    await withWorkspace(this.orm, workspaceId, async (em) => {
      const [row] = isUuid(id)
        ? await em.execute<InvitationRow[]>(
            `select ${columns} from invitations where workspace_id = ? and id = ? for update`,
            [workspaceId, id.toLowerCase()],
          )
        : [];
      if (!row) throw new ProblemError('invitation_not_found', `No invitation "${id}" in this workspace`);
      // An expired invitation is no longer pending either: revoking it would only rewrite its history.
      if (statusOf(row) !== 'pending')
        throw new ProblemError('invitation_not_pending', `The invitation is ${statusOf(row)}`);
      await em.execute(
        "update invitations set status = 'revoked', revoked_at = now() where workspace_id = ? and id = ?",
        [workspaceId, row.id],
      );
      await actor.audit(em);
    });
  }

  /**
   * Exactly once: the invitation row is locked, so of two racing accepts one creates the member
   * and the other finds it accepted. The caller's token must belong to the invitation's workspace
   * and assert the invitation's email (compared case-insensitively).
   */
  async accept(token: string, authenticate: AuthenticateIn, audit: AuditAcceptance): Promise<MemberResponse> {
    const missing = () => new ProblemError('invitation_not_found', 'No such invitation');
    if (!tokenShape.test(token)) throw missing();
    const hash = hashOf(token).toString('hex');
    const [found] = await this.orm.em
      .fork()
      .execute<{ workspace_id: string | null }[]>(
        "select cordon_invitation_workspace(decode(?, 'hex')) as workspace_id",
        [hash],
      );
    const workspaceId = found?.workspace_id;
    if (!workspaceId) throw missing();
    const principal = await authenticate(workspaceId);
    let invitationId: string | undefined;
    try {
      return await this.acceptAs(principal, workspaceId, hash, audit, (id) => (invitationId = id));
    } catch (error) {
      if (invitationId && error instanceof ProblemError && refusals.has(error.code)) {
        await audit.refused(principal, `invitation ${invitationId} not accepted: ${error.message}`);
      }
      throw error;
    }
  }

  private acceptAs(
    principal: Principal,
    workspaceId: string,
    hash: string,
    audit: AuditAcceptance,
    found: (id: string) => void,
  ): Promise<MemberResponse> {
    return this.changes.inWorkspace(this.orm, { topic: 'member', workspaceId }, async (em) => {
      const [invitation] = await em.execute<InvitationRow[]>(
        `select ${columns} from invitations where workspace_id = ? and token_hash = decode(?, 'hex') for update`,
        [workspaceId, hash],
      );
      if (!invitation) throw new ProblemError('invitation_not_found', 'No such invitation');
      found(invitation.id);
      const status = statusOf(invitation);
      if (status === 'accepted') throw new ProblemError('invitation_used');
      if (status === 'revoked') throw new ProblemError('invitation_revoked');
      if (status === 'expired') throw new ProblemError('invitation_expired');
      const tokenEmail = principal.email;
      if (!tokenEmail || tokenEmail.toLowerCase() !== invitation.email.toLowerCase()) {
        throw new ProblemError(
          'invitation_email_mismatch',
          'Sign in with the account of the invited email address: the token must carry it in its email claim, not marked unverified',
        );
      }
      const [member] = await em.execute<MemberRow[]>(
        `insert into members (workspace_id, user_id, email, roles, invited_by, joined_at, updated_at)
         values (?, ?, ?, ?::text[], ?, now(), now())
         on conflict (workspace_id, user_id) do update
           set roles = array(select distinct unnest(members.roles || excluded.roles)), email = excluded.email, updated_at = now()
         returning user_id, email, roles, invited_by, joined_at, updated_at`,
        [workspaceId, principal.id, tokenEmail, toArrayLiteral(invitation.roles), invitation.invited_by],
      );
      await em.execute(
        "update invitations set status = 'accepted', accepted_at = now(), accepted_by = ? where workspace_id = ? and id = ?",
        [principal.id, workspaceId, invitation.id],
      );
      await audit.accepted(em, principal, invitation.id);
      return memberResponse(member!);
    });
  }
}
