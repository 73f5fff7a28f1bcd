import { z } from 'zod';
import { roles } from '../members/members.schema.ts';

export const createInvitationBody = z.strictObject({
  email: z.email().max(320),
  roles: roles.refine((items) => items.length > 0, 'name at least one role'),
  expiresInHours: z
    .number()
    .int()
    .min(1)
    .max(24 * 90)
    .optional()
    .describe('Default: INVITATION_TTL_HOURS (7 days)'),
});
export type CreateInvitation = z.output<typeof createInvitationBody>;

export const invitationParams = z.object({ ws: z.string().min(1).max(100), id: z.string().min(1).max(100) });
export const acceptParams = z.object({ token: z.string().min(1).max(200) });

export const invitationStatuses = ['pending', 'accepted', 'revoked', 'expired'] as const;

export const invitationResponse = z.object({
  id: z.uuid(),
  email: z.string(),
  roles: z.array(z.string()),
  invitedBy: z.string(),
  status: z.enum(invitationStatuses),
  expiresAt: z.iso.datetime(),
  createdAt: z.iso.datetime(),
  acceptedAt: z.iso.datetime().nullable(),
  acceptedBy: z.string().nullable(),
});
export type InvitationResponse = z.output<typeof invitationResponse>;
export const createdInvitationResponse = invitationResponse.extend({
  token: z.string().describe('256 random bits, shown this once; only its SHA-256 is stored'),
  acceptUrl: z.string(),
});
export const invitationListResponse = z.object({
  data: z.array(invitationResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});

export interface InvitationRow {
  id: string;
  workspace_id: string;
  email: string;
  roles: string[];
  invited_by: string;
  status: 'pending' | 'accepted' | 'revoked';
  expires_at: Date;
  created_at: Date;
  accepted_at: Date | null;
  accepted_by: string | null;
  /** `created_at` to the microsecond, for the list's cursor. */
  position?: string;
}

const iso = (value: Date | string) => new Date(value).toISOString();

/** `expired` is not stored: a pending invitation past its time is expired. */
export const statusOf = (row: InvitationRow, now = Date.now()) =>
  row.status === 'pending' && new Date(row.expires_at).getTime() <= now ? 'expired' : row.status;

export const toResponse = (row: InvitationRow): InvitationResponse => ({
  id: row.id,
  email: row.email,
  roles: row.roles,
  invitedBy: row.invited_by,
  status: statusOf(row),
  expiresAt: iso(row.expires_at),
  createdAt: iso(row.created_at),
  acceptedAt: row.accepted_at ? iso(row.accepted_at) : null,
  acceptedBy: row.accepted_by,
});
