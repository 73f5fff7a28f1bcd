import { createPublicKey, type JsonWebKey, type KeyObject } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { z } from 'zod';
import type { ChainedDecision } from './chain.ts';
import type { ChainLink, SignedCheckpoint } from './chain-verifier.ts';
import { checkpointResponse, decisionResponse, type DecisionResponse } from './decisions.schema.ts';
import { publicKeyId } from './signing.ts';

/**
 * What an auditor saved, read back for the offline verifier: the export, the checkpoints and the
 * public keys, as files. Nothing here trusts the server: key ids are computed from the keys, rows
 * are checked against the schemas of the routes that produced them.
 */

/** A file the verifier cannot read as what it should be: exit code 2, not a verdict. */
export class BadInput extends Error {}

async function* jsonLines<Schema extends z.ZodType>(file: string, schema: Schema): AsyncGenerator<z.output<Schema>> {
  const stream = createReadStream(file, { encoding: 'utf8' });
  const opened = new Promise<void>((resolve, reject) => stream.once('open', () => resolve()).once('error', reject));
  await opened.catch((error: Error) => {
    throw new BadInput(`${file}: ${error.message}`);
  });
  const lines = createInterface({ input: stream, crlfDelay: Infinity });
  let number = 0;
  try {
    for await (const line of lines) {
      number += 1;
      if (!line.trim()) continue;
      let value: unknown;
      try {
        value = JSON.parse(line);
      } catch {
        throw new BadInput(`${file}:${number}: not a JSON line (NDJSON expected)`);
      }
      const parsed = schema.safeParse(value);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw new BadInput(`${file}:${number}: ${issue?.path.join('.') || 'line'}: ${issue?.message ?? 'invalid'}`);
      }
      yield parsed.data;
    }
  } finally {
    lines.close();
    stream.destroy();
  }
}

export const exportRows = (file: string) => jsonLines(file, decisionResponse);
export const checkpointLines = (file: string): AsyncGenerator<SignedCheckpoint> => jsonLines(file, checkpointResponse);

/** The row as it was hashed: every field of the decision with its seq, without prevHash and hash. */
function hashedDecision(row: DecisionResponse, seq: number): ChainedDecision {
  return {
    id: row.id,
    workspaceId: row.workspaceId,
    seq,
    at: row.at,
    requestId: row.requestId,
    principal: { id: row.principal.id, roles: row.principal.roles, provider: row.principal.provider },
    action: row.action,
    operation: row.operation,
    subject: row.subject,
    resourceId: row.resourceId,
    fields: row.fields,
    allowed: row.allowed,
    policyId: row.policyId,
    policyVersion: row.policyVersion,
    ruleIndex: row.ruleIndex,
    reason: row.reason,
    latencyMicros: row.latencyMicros,
    ip: row.ip,
    userAgent: row.userAgent,
    ...(row.inputs !== undefined && { inputs: row.inputs as ChainedDecision['inputs'] }),
  };
}

export interface ExportCounts {
  unsealed: number;
}

/**
 * The export's sealed rows as links in seq order. The export is in append order, and a row that
 * committed late was sealed with a later seq, so a few rows come early: they wait until their
 * turn. Unsealed rows (seq null) are only counted. Every row must be of `workspaceId`.
 */
export async function* linksInSeqOrder(
  rows: AsyncIterable<DecisionResponse>,
  workspaceId: string,
  counts: ExportCounts,
): AsyncGenerator<ChainLink> {
  const waiting = new Map<number, ChainLink[]>();
  let next = 1;
  for await (const row of rows) {
    if (row.workspaceId !== workspaceId)
      throw new BadInput(`the export mixes workspaces (${workspaceId} and ${row.workspaceId})`);
    if (row.seq === null) {
      counts.unsealed += 1;
      continue;
    }
    if (row.prevHash === null || row.hash === null)
      throw new BadInput(`the row of seq ${row.seq} has no prevHash or hash`);
    const link = { seq: row.seq, prevHash: row.prevHash, hash: row.hash, decision: hashedDecision(row, row.seq) };
    // A seq already passed is a second row claiming it: the verifier names it.
    if (link.seq < next) {
      yield link;
      continue;
    }
    waiting.set(link.seq, [...(waiting.get(link.seq) ?? []), link]);
    for (let ready = waiting.get(next); ready; ready = waiting.get(next)) {
      waiting.delete(next);
      next += 1;
      yield* ready;
    }
  }
  // Left over: the rows after a gap, in seq order; the verifier reports the gap.
  for (const seq of [...waiting.keys()].sort((left, right) => left - right)) yield* waiting.get(seq)!;
}

function publicKey(source: string, material: string | Record<string, unknown>): KeyObject {
  let key: KeyObject;
  try {
    key =
      typeof material === 'string'
        ? createPublicKey(material)
        : createPublicKey({ key: material as JsonWebKey, format: 'jwk' });
  } catch (error) {
    throw new BadInput(`${source}: not a public key (${(error as Error).message})`);
  }
  if (key.asymmetricKeyType !== 'ed25519') throw new BadInput(`${source}: not an Ed25519 key`);
  return key;
}

/** The keys of one published key: the public-key route's answer (with `previous`), a JWK or JWKS. */
function keysOfJson(source: string, value: unknown): KeyObject[] {
  if (typeof value !== 'object' || value === null) throw new BadInput(`${source}: not a public key document`);
  const document = value as Record<string, unknown>;
  if (Array.isArray(document.keys)) return document.keys.flatMap((item) => keysOfJson(source, item));
  const keys: KeyObject[] = [];
  if (typeof document.publicKeyPem === 'string') keys.push(publicKey(source, document.publicKeyPem));
  else if (typeof document.kty === 'string') keys.push(publicKey(source, document));
  else throw new BadInput(`${source}: no publicKeyPem or JWK in it`);
  if (Array.isArray(document.previous)) keys.push(...document.previous.flatMap((item) => keysOfJson(source, item)));
  return keys;
}

/** Public keys by the id computed from each key: PEM files (one or more keys) or JSON documents. */
export async function readKeys(files: string[]): Promise<Map<string, KeyObject>> {
  const keys = new Map<string, KeyObject>();
  for (const file of files) {
    const text = await readFile(file, 'utf8').catch((error: Error) => {
      throw new BadInput(`${file}: ${error.message}`);
    });
    let found: KeyObject[];
    if (text.trimStart().startsWith('{')) {
      let value: unknown;
      try {
        value = JSON.parse(text);
      } catch {
        throw new BadInput(`${file}: not JSON`);
      }
      found = keysOfJson(file, value);
    } else {
      const blocks = text.match(/-----BEGIN PUBLIC KEY-----[\s\S]*?-----END PUBLIC KEY-----/g) ?? [];
      if (!blocks.length) throw new BadInput(`${file}: no "BEGIN PUBLIC KEY" block in it`);
      found = blocks.map((block) => publicKey(file, block));
    }
    for (const key of found) keys.set(publicKeyId(key), key);
  }
  return keys;
}
