import { createHash, sign, verify, type KeyObject } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { DecisionInputs } from '../../policy/decision-inputs.ts';

/** The first link of every workspace's chain points at this. */
export const genesisHash = '0'.repeat(64);

/** A decision row as it is hashed: every column but the position, plus its place in the chain. */
export interface ChainedDecision {
  id: string;
  workspaceId: string;
  seq: number;
  at: string;
  requestId: string;
  principal: { id: string; roles: string[]; provider: string };
  action: string;
  operation: string;
  subject: string;
  resourceId: string | null;
  fields: string[] | null;
  allowed: boolean;
  policyId: string | null;
  policyVersion: number | null;
  ruleIndex: number | null;
  reason: string;
  latencyMicros: number;
  ip: string | null;
  userAgent: string | null;
  /** Present only when the row kept inputs: rows logged before inputs hash exactly as they did. */
  inputs?: DecisionInputs;
}

export interface DecisionRow {
  id: string;
  workspace_id: string;
  at: Date | string;
  request_id: string;
  principal_id: string;
  principal_roles: string[];
  principal_provider: string;
  action: string;
  operation: string;
  subject: string;
  resource_id: string | null;
  fields: string[] | null;
  allowed: boolean;
  policy_id: string | null;
  policy_version: number | null;
  rule_index: number | null;
  reason: string;
  latency_micros: number;
  ip: string | null;
  user_agent: string | null;
  inputs?: DecisionInputs | null;
}

export function chained(row: DecisionRow, seq: number): ChainedDecision {
  return {
    id: row.id,
    workspaceId: row.workspace_id,
    seq,
    at: new Date(row.at).toISOString(),
    requestId: row.request_id,
    principal: { id: row.principal_id, roles: row.principal_roles, provider: row.principal_provider },
    action: row.action,
    operation: row.operation,
    subject: row.subject,
    resourceId: row.resource_id,
    fields: row.fields,
    allowed: row.allowed,
    policyId: row.policy_id,
    policyVersion: row.policy_version === null ? null : Number(row.policy_version),
    ruleIndex: row.rule_index === null ? null : Number(row.rule_index),
    reason: row.reason,
    latencyMicros: Number(row.latency_micros),
    ip: row.ip,
    userAgent: row.user_agent,
    ...(row.inputs != null && { inputs: row.inputs }),
  };
}

/** hash = SHA-256(prevHash ‖ canonical JSON (RFC 8785) of the row), hex. */
export function linkHash(prevHash: string, decision: ChainedDecision): string {
  return createHash('sha256')
    .update(prevHash)
    .update(canonicalize(decision) ?? '')
    .digest('hex');
}

export interface Checkpoint {
  workspaceId: string;
  seq: number;
  hash: string;
  at: string;
}

/** What an Ed25519 checkpoint signature covers: the canonical JSON of the checkpoint. */
export const checkpointBytes = (checkpoint: Checkpoint) => Buffer.from(canonicalize(checkpoint) ?? '');

export const signCheckpoint = (checkpoint: Checkpoint, privateKey: KeyObject) =>
  sign(null, checkpointBytes(checkpoint), privateKey).toString('base64url');

export function checkpointVerifies(checkpoint: Checkpoint, signature: string, publicKey: KeyObject): boolean {
  try {
    return verify(null, checkpointBytes(checkpoint), publicKey, Buffer.from(signature, 'base64url'));
  } catch {
    return false;
  }
}
