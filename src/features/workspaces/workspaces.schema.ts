import { isUuid, slugPattern } from '../../json.ts';
import { z } from 'zod';
import { billingStatuses } from '../../policy/standing.ts';
import { pageQuery } from '../../http/cursor.ts';

export const slug = z
  .string()
  .regex(slugPattern, 'must be 2–63 characters of a-z, 0-9 and "-", starting with a letter or digit')
  .refine((value) => !isUuid(value), 'must not look like a uuid (ids and slugs share the URL)');

const plan = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, 'must be a plan identifier');
const name = z.string().trim().min(1).max(200);

export const createWorkspaceBody = z.strictObject({
  slug,
  name,
  plan: plan.default('free'),
  template: z
    .string()
    .regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'must be a template name')
    .optional()
    .describe("A template's name (GET /v1/templates): its structures, policies and sample records"),
});

export const updateWorkspaceBody = z
  .strictObject({
    slug: slug.optional(),
    name: name.optional(),
    plan: plan.optional(),
    status: z.enum(['active', 'suspended']).optional(),
  })
  .refine((patch) => Object.keys(patch).length > 0, 'name at least one field to change');

export const workspaceParams = z.object({
  ws: z.string().min(1).max(100).describe('The workspace slug or id'),
});

/**
 * A page of workspaces. Not strict, unlike the lists of a workspace: this list has always ignored
 * unknown parameters, and docs/api.md promises that to the platform admin's tools.
 */
export const listWorkspacesQuery = z.object(pageQuery.shape);

export const workspaceResponse = z.object({
  id: z.uuid(),
  slug: z.string(),
  name: z.string(),
  plan: z.string().describe('The plan whose limits apply now: free once a canceled subscription’s period is over'),
  billingStatus: z.enum(billingStatuses).describe('The subscription status (none: no subscription, free plan)'),
  mrr: z
    .object({ amount: z.number().int().describe('In minor units (cents)'), currency: z.string() })
    .describe("The workspace's monthly recurring revenue: its active or past-due subscription, yearly price / 12"),
  status: z.enum(['active', 'suspended']),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  memberCount: z.number().int(),
  recordCount: z.number().int(),
});

export const workspaceListResponse = z.object({
  data: z.array(workspaceResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});

export type CreateWorkspace = z.output<typeof createWorkspaceBody>;
export type UpdateWorkspace = z.output<typeof updateWorkspaceBody>;
export type WorkspaceResponse = z.output<typeof workspaceResponse>;
