import { z } from 'zod';
import { refusingProtoKey } from '../../json.ts';

const oneOrMany = (item: z.ZodString) => z.union([item, z.array(item).min(1).max(20)]);

export const ruleSchema = z.strictObject({
  action: oneOrMany(z.string().min(1).max(50)),
  subject: oneOrMany(z.string().min(1).max(64)),
  conditions: refusingProtoKey(z.record(z.string(), z.unknown()), {
    deep: true,
    message: '"__proto__" cannot be used as a field name',
  }).optional(),
  fields: oneOrMany(z.string().min(1).max(200)).optional(),
  inverted: z.boolean().optional(),
  reason: z.string().max(500).optional(),
});

export const policyBody = z.strictObject({
  name: z.string().trim().min(1).max(100),
  description: z.string().max(2_000).default(''),
  roles: z.array(z.string().min(1).max(100)).min(1).max(50),
  rules: z.array(ruleSchema).min(1).max(200),
});

export type PolicyInput = z.output<typeof policyBody>;

export const policyParams = z.object({ ws: z.string().min(1).max(100), id: z.string().min(1).max(100) });

export const policyResponse = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string(),
  roles: z.array(z.string()),
  rules: z.array(ruleSchema),
  version: z.number().int(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
  updatedBy: z.string(),
});
export type PolicyResponse = z.output<typeof policyResponse>;

export const policyListResponse = z.object({
  data: z.array(policyResponse),
  nextCursor: z.null(),
  count: z.number().int().optional(),
});

export const policyVersionResponse = policyResponse.omit({ createdAt: true }).extend({ deleted: z.boolean() });
export type PolicyVersionResponse = z.output<typeof policyVersionResponse>;
export const policyVersionListResponse = z.object({
  data: z.array(policyVersionResponse),
  nextCursor: z.null(),
  count: z.number().int().optional(),
});
