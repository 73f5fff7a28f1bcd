import { z } from 'zod';

const oneOrMany = (item: z.ZodString) => z.union([item, z.array(item).min(1).max(20)]);

/**
 * zod's record drops a `__proto__` key without a word: `{ "__proto__": { "$eq": "x" } }` would
 * parse to `{}`, conditions every record meets, and a conditional allow would allow everything.
 * So every own `__proto__` key, at any depth, is refused before zod sees the conditions.
 */
const refuseProtoKeys = (value: unknown, context: z.RefinementCtx) => {
  const pending: { value: unknown; path: PropertyKey[] }[] = [{ value, path: [] }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    if (typeof next.value !== 'object' || next.value === null) continue;
    for (const [key, item] of Object.entries(next.value)) {
      const path = [...next.path, Array.isArray(next.value) ? Number(key) : key];
      if (key === '__proto__')
        context.addIssue({ code: 'custom', path, message: '"__proto__" cannot be used as a field name', input: item });
      else pending.push({ value: item, path });
    }
  }
  return value;
};

export const ruleSchema = z.strictObject({
  action: oneOrMany(z.string().min(1).max(50)),
  subject: oneOrMany(z.string().min(1).max(64)),
  conditions: z.preprocess(refuseProtoKeys, z.record(z.string(), z.unknown())).optional(),
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
