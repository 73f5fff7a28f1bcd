import { z } from 'zod';
import { policyBody } from '../policies/policies.schema.ts';

/** A draft policy: the body of `POST …/policies`, with the id of the stored policy it replaces, if any. */
export const policyDraft = policyBody.extend({ id: z.uuid().optional() });
export type PolicyDraft = z.output<typeof policyDraft>;

export const whatIfBody = z
  .strictObject({
    policies: z.array(policyDraft).max(200),
    from: z.iso.datetime({ offset: true }),
    to: z.iso.datetime({ offset: true }),
    limit: z.number().int().min(0).max(200).default(20),
  })
  .refine((body) => Date.parse(body.from) < Date.parse(body.to), {
    path: ['to'],
    message: 'the window must end after it starts',
  });
export type WhatIfBody = z.output<typeof whatIfBody>;

export const directions = ['allowToDeny', 'denyToAllow'] as const;
export type Direction = (typeof directions)[number];
const outcome = z.enum(['allow', 'deny']);

const ruleReference = z.object({ policyId: z.uuid().nullable(), policyName: z.string(), ruleIndex: z.number().int() });

export const whatIfResponse = z.object({
  window: z.object({ from: z.iso.datetime(), to: z.iso.datetime() }),
  replayed: z.number().int(),
  unchanged: z.number().int(),
  flips: z.object({ allowToDeny: z.number().int(), denyToAllow: z.number().int() }),
  counts: z.array(
    z.object({
      action: z.string(),
      subject: z.string(),
      role: z.string().nullable(),
      direction: z.enum(directions),
      count: z.number().int(),
    }),
  ),
  notReplayable: z.object({ count: z.number().int(), byReason: z.record(z.string(), z.number().int()) }),
  samples: z.array(
    z.object({
      decisionId: z.uuid(),
      at: z.iso.datetime(),
      principalId: z.string(),
      roles: z.array(z.string()),
      action: z.string(),
      subject: z.string(),
      resourceId: z.string().nullable(),
      field: z.string().optional(),
      before: outcome,
      after: outcome,
      rule: ruleReference.nullable(),
      reason: z.string(),
    }),
  ),
});
export type WhatIfResponse = z.output<typeof whatIfResponse>;
