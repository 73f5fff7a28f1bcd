import { z } from 'zod';
import { suiteSchema } from '../../policy/policy-suite.ts';
import { policyBody } from '../policies/policies.schema.ts';

export const forceQuery = z.strictObject({
  force: z
    .enum(['true', 'false'])
    .default('false')
    .transform((value) => value === 'true')
    .describe('Apply even if stored policy tests would fail'),
});

export const runBody = z.strictObject({
  suite: suiteSchema,
  /** The whole draft set, evaluated instead of the stored policies. */
  policies: z.array(policyBody).min(1).max(200).optional(),
});

export const storeBody = z.strictObject({ suite: suiteSchema });

const ruleReference = z.object({
  policyId: z.uuid().nullable(),
  policyName: z.string(),
  ruleIndex: z.number().int(),
});

export const testResult = z.object({
  name: z.string(),
  expected: z.enum(['allow', 'deny']),
  actual: z.enum(['allow', 'deny']),
  passed: z.boolean(),
  rule: ruleReference.nullable(),
  reason: z.string(),
  expectedRule: z.string().optional(),
});

export const runResponse = z.object({
  passed: z.boolean(),
  total: z.number().int(),
  failed: z.number().int(),
  results: z.array(testResult),
  coverage: z.object({
    rules: z.array(
      ruleReference.extend({
        action: z.union([z.string(), z.array(z.string())]),
        subject: z.union([z.string(), z.array(z.string())]),
        effect: z.enum(['allow', 'deny']),
        decided: z.number().int(),
      }),
    ),
    total: z.number().int(),
    exercised: z.number().int(),
    unexercisedShare: z.number(),
  }),
});

export const storedResponse = z.object({
  suite: suiteSchema,
  updatedAt: z.iso.datetime(),
  updatedBy: z.string(),
});
export type StoredSuiteResponse = z.output<typeof storedResponse>;
