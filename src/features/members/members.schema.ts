import { z } from 'zod';

/**
 * Roles are free strings, as in policies: they are stored as quoted array elements, so any
 * character is safe (text PostgreSQL cannot hold is refused before any route, see http/storable.ts).
 */
export const role = z.string().min(1).max(100);
export const roles = z
  .array(role)
  .max(50)
  .transform((items) => [...new Set(items)]);

/** The identity provider's `sub`: any string, never assumed to be a uuid. */
export const userId = z.string().min(1).max(500);

export const memberParams = z.object({
  ws: z.string().min(1).max(100),
  userId: userId.describe("The identity provider's subject (sub), URL-encoded"),
});

export const createMemberBody = z.strictObject({
  userId,
  email: z.email().max(320).optional(),
  roles,
});
export type CreateMember = z.output<typeof createMemberBody>;

export const updateMemberBody = z
  .strictObject({ email: z.email().max(320).nullable().optional(), roles: roles.optional() })
  .refine((patch) => Object.keys(patch).length > 0, 'name at least one field to change');
export type UpdateMember = z.output<typeof updateMemberBody>;

export const memberResponse = z.object({
  userId: z.string(),
  email: z.string().nullable(),
  roles: z.array(z.string()),
  invitedBy: z.string().nullable(),
  joinedAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type MemberResponse = z.output<typeof memberResponse>;
export const memberListResponse = z.object({
  data: z.array(memberResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});

export interface MemberRow {
  user_id: string;
  email: string | null;
  roles: string[];
  invited_by: string | null;
  joined_at: Date;
  updated_at: Date;
  /** `joined_at` to the microsecond, for the list's cursor. */
  position?: string;
}

export const toResponse = (row: MemberRow): MemberResponse => ({
  userId: row.user_id,
  email: row.email,
  roles: row.roles,
  invitedBy: row.invited_by,
  joinedAt: new Date(row.joined_at).toISOString(),
  updatedAt: new Date(row.updated_at).toISOString(),
});
