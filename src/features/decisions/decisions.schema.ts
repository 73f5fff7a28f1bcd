import { z } from 'zod';
import { pageQuery } from '../../http/cursor.ts';

const booleanText = z.enum(['true', 'false']).transform((value) => value === 'true');

export const decisionFilters = z.strictObject({
  from: z.iso.datetime({ offset: true }).optional(),
  to: z.iso.datetime({ offset: true }).optional(),
  principalId: z.string().min(1).max(500).optional(),
  role: z.string().min(1).max(100).optional(),
  action: z.string().min(1).max(50).optional(),
  subject: z.string().min(1).max(64).optional(),
  allowed: booleanText.optional(),
  resourceId: z.string().min(1).max(500).optional(),
  policyId: z.uuid().optional(),
});
export type DecisionFilters = z.output<typeof decisionFilters>;

export const listDecisionsQuery = decisionFilters.extend({
  limit: z.coerce.number().int().min(1).max(500).default(100),
  cursor: z.string().max(200).optional(),
  count: pageQuery.shape.count,
});

export const exportDecisionsQuery = decisionFilters.extend({ format: z.enum(['ndjson', 'csv']).default('ndjson') });

export const decisionResponse = z.object({
  id: z.uuid(),
  at: z.iso.datetime(),
  requestId: z.string(),
  workspaceId: z.uuid(),
  principal: z.object({ id: z.string(), roles: z.array(z.string()), provider: z.string() }),
  action: z.string(),
  operation: z.string(),
  subject: z.string(),
  resourceId: z.string().nullable(),
  fields: z.array(z.string()).nullable(),
  allowed: z.boolean(),
  policyId: z.uuid().nullable(),
  policyVersion: z.number().int().nullable(),
  ruleIndex: z.number().int().nullable(),
  reason: z.string(),
  latencyMicros: z.number().int(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  /** What the decision was made on (docs/decision-log.md); absent on rows logged before inputs were kept. */
  // Loose: the verifier hashes the inputs as exported, every key of them.
  inputs: z
    .looseObject({
      principal: z.record(z.string(), z.unknown()).optional(),
      documents: z.array(z.record(z.string(), z.unknown())).optional(),
      kept: z.array(z.string()).optional(),
      dropped: z.literal(true).optional(),
    })
    .optional(),
  seq: z.number().int().nullable(),
  prevHash: z.string().nullable(),
  hash: z.string().nullable(),
});
export type DecisionResponse = z.output<typeof decisionResponse>;

export const decisionListResponse = z.object({
  data: z.array(decisionResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});

export const verifyResponse = z.object({
  verified: z.boolean(),
  sealed: z.number().int(),
  unsealed: z.number().int(),
  firstBreak: z.object({ seq: z.number().int(), reason: z.string() }).optional(),
});
export type VerifyResponse = z.output<typeof verifyResponse>;

const publishedKey = z.object({
  keyId: z.string(),
  algorithm: z.literal('Ed25519'),
  publicKeyPem: z.string(),
  jwk: z.record(z.string(), z.unknown()),
});

/** The key signing now, and every earlier one (newest first) whose checkpoints still verify. */
export const publicKeyResponse = publishedKey.extend({
  previous: z.array(publishedKey.extend({ firstUsedAt: z.iso.datetime() })),
});
export type PublicKeyResponse = z.output<typeof publicKeyResponse>;

export const checkpointsQuery = z.strictObject({
  format: z.enum(['json', 'ndjson']).default('json'),
  limit: z.coerce.number().int().min(1).max(1000).default(100),
  cursor: z.string().max(200).optional(),
  count: pageQuery.shape.count.describe('With format=json: how many checkpoints there are in all'),
});

/** A checkpoint exactly as signed: the signature covers canonical JSON of `{ workspaceId, seq, hash, at }`. */
export const checkpointResponse = z.object({
  workspaceId: z.uuid(),
  seq: z.number().int().positive(),
  hash: z.string().regex(/^[0-9a-f]{64}$/),
  at: z.iso.datetime(),
  keyId: z.string().min(1),
  signature: z.string().min(1),
});
export type CheckpointResponse = z.output<typeof checkpointResponse>;

export const checkpointListResponse = z.object({
  data: z.array(checkpointResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});
