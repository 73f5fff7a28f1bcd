import { z } from 'zod';

export const role = z.string().min(1).max(100).regex(/^[^\s,{}"\\]+$/, 'must be a role name without spaces, commas, braces, quotes or backslashes');
export const roles = z.array(role).max(50).transform((items) => [...new Set(items)]);

export const memberParams = z.object({
  ws: z.string().min(1).max(100),
  userId: z.string().min(1).max(500).describe("The identity provider's subject (sub), URL-encoded"),
});

export const createMemberBody = z.strictObject({
  userId: z.string().min(1).max(500),
  email: z.email().max(320).optional(),
  roles,
});
export type CreateMember = z.output<typeof createMemberBody>;

export const updateMemberBody = z
  .strictObject({ email: z.email().max(320).nullable().optional(), roles: roles.optional() })
  .refine((patch) => Object.keys(patch).length > 0, 'name at least one field to change');
export type UpdateMember = z.output<typeof updateMemberBody>;

export const listQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(1_000).optional(),
});

export const memberResponse = z.object({
  userId: z.string(),
  email: z.string().nullable(),
  roles: z.array(z.string()),
  invitedBy: z.string().nullable(),
  joinedAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type MemberResponse = z.output<typeof memberResponse>;
export const memberListResponse = z.object({ data: z.array(memberResponse), nextCursor: z.string().nullable() });

export interface MemberRow {
  user_id: string;
  email: string | null;
  roles: string[];
  invited_by: string | null;
  joined_at: Date;
  updated_at: Date;
}

export const toResponse = (row: MemberRow): MemberResponse => ({
  userId: row.user_id,
  email: row.email,
  roles: row.roles,
  invitedBy: row.invited_by,
  joinedAt: new Date(row.joined_at).toISOString(),
  updatedAt: new Date(row.updated_at).toISOString(),
});
