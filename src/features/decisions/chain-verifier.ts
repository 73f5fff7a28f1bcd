import type { KeyObject } from 'node:crypto';
import { checkpointVerifies, genesisHash, linkHash, type ChainedDecision, type Checkpoint } from './chain.ts';

/**
 * The one verification of a workspace's decision chain, shared by `GET …/decisions/verify` and
 * the offline verifier (`npm run verify-log`). Pure: it reads what it is given, in seq order, and
 * touches no database, file or network.
 */

/** One link of the chain; `decision` is null when the link's decision row is gone. */
export interface ChainLink {
  seq: number;
  prevHash: string;
  hash: string;
  decision: ChainedDecision | null;
}

/** A checkpoint as stored and served: what was signed, the key that signed it and the signature. */
export interface SignedCheckpoint extends Checkpoint {
  keyId: string;
  signature: string;
}

/**
 * Links and checkpoints in ascending seq order, a link before the checkpoint of the same seq. One
 * ordered stream (not a list of checkpoints beside the links) keeps memory flat however many
 * batches were sealed, and lets the server read both through one cursor.
 */
export type ChainEntry = { link: ChainLink } | { checkpoint: SignedCheckpoint };

/** The public keys checkpoints may be signed with, by key id. */
export type KeySet = ReadonlyMap<string, KeyObject>;

export type BreakKind =
  | 'missing-link'
  | 'duplicate-link'
  | 'missing-decision'
  | 'not-linked'
  | 'hash'
  | 'checkpoint-mismatch'
  | 'checkpoint-order'
  | 'foreign-checkpoint'
  | 'unknown-key'
  | 'signature'
  | 'signed-but-missing';

export interface ChainBreak {
  seq: number;
  kind: BreakKind;
  reason: string;
}

export interface ChainVerdict {
  /** The earliest seq at which the chain or a checkpoint is wrong; absent when everything holds. */
  firstBreak?: ChainBreak;
  /** How many links were checked (all of them when there is no break). */
  linked: number;
  /** The seq of the last link checked. */
  lastSeq: number;
  /** How many checkpoints were checked and hold, the highest seq they sign, and by which keys. */
  checkpoints: number;
  signedUpTo: number;
  signedBy: string[];
}

/** Why a checkpoint cannot be trusted, or undefined when it verifies with a known key. */
function untrusted(checkpoint: SignedCheckpoint, workspaceId: string, keys: KeySet): ChainBreak | undefined {
  const { seq } = checkpoint;
  if (checkpoint.workspaceId !== workspaceId)
    return {
      seq,
      kind: 'foreign-checkpoint',
      reason: `the checkpoint belongs to another workspace (${checkpoint.workspaceId})`,
    };
  const key = keys.get(checkpoint.keyId);
  if (!key) return { seq, kind: 'unknown-key', reason: `checkpoint signed by an unknown key (${checkpoint.keyId})` };
  const signed = { workspaceId: checkpoint.workspaceId, seq, hash: checkpoint.hash, at: checkpoint.at };
  if (!checkpointVerifies(signed, checkpoint.signature, key))
    return { seq, kind: 'signature', reason: 'checkpoint signature does not verify' };
  return undefined;
}

function linkBreak(link: ChainLink, expected: number, prevHash: string): ChainBreak | undefined {
  const { seq } = link;
  if (seq < expected) return { seq, kind: 'duplicate-link', reason: `more than one link claims seq ${seq}` };
  if (seq > expected) return { seq: expected, kind: 'missing-link', reason: 'a link of the chain is missing' };
  if (!link.decision) return { seq, kind: 'missing-decision', reason: 'the decision of this link is missing' };
  if (link.prevHash !== prevHash)
    return { seq, kind: 'not-linked', reason: 'the link does not follow the previous one' };
  if (link.decision.seq !== seq || linkHash(prevHash, link.decision) !== link.hash)
    return { seq, kind: 'hash', reason: 'the decision does not match its hash' };
  return undefined;
}

/**
 * Recomputes every link in seq order and checks every checkpoint: signed by a known key, for this
 * workspace, and equal to the chain at its seq. A checkpoint beyond the chain's end that verifies
 * proves signed decisions are missing (a deleted tail). Stops at the first break.
 */
export async function verifyChain(
  workspaceId: string,
  keys: KeySet,
  entries: AsyncIterable<ChainEntry> | Iterable<ChainEntry>,
): Promise<ChainVerdict> {
  const verdict: ChainVerdict = { linked: 0, lastSeq: 0, checkpoints: 0, signedUpTo: 0, signedBy: [] };
  let prevHash = genesisHash;
  // An untrusted checkpoint beyond the chain's end: the first break unless a missing link or a
  // signed checkpoint shows an earlier one.
  let beyond: ChainBreak | undefined;
  const finish = (found?: ChainBreak): ChainVerdict => {
    const firstBreak = [found, beyond].filter((item) => item !== undefined).sort((a, b) => a.seq - b.seq)[0];
    return firstBreak ? { ...verdict, firstBreak } : verdict;
  };

  for await (const entry of entries) {
    if ('link' in entry) {
      const found = linkBreak(entry.link, verdict.lastSeq + 1, prevHash);
      if (found) return finish(found);
      prevHash = entry.link.hash;
      verdict.lastSeq = entry.link.seq;
      verdict.linked += 1;
      continue;
    }
    const { checkpoint } = entry;
    const distrust = untrusted(checkpoint, workspaceId, keys);
    if (checkpoint.seq > verdict.lastSeq) {
      if (!distrust) {
        const missing = verdict.lastSeq + 1;
        return finish({
          seq: missing,
          kind: 'signed-but-missing',
          reason: `decisions up to seq ${checkpoint.seq} were signed but are missing`,
        });
      }
      beyond ??= distrust;
      continue;
    }
    if (checkpoint.seq < verdict.lastSeq || beyond)
      return finish({ seq: checkpoint.seq, kind: 'checkpoint-order', reason: 'checkpoints are out of seq order' });
    if (distrust) return finish(distrust);
    if (checkpoint.hash !== prevHash)
      return finish({
        seq: checkpoint.seq,
        kind: 'checkpoint-mismatch',
        reason: 'the chain does not match its signed checkpoint',
      });
    verdict.checkpoints += 1;
    verdict.signedUpTo = checkpoint.seq;
    if (!verdict.signedBy.includes(checkpoint.keyId)) verdict.signedBy.push(checkpoint.keyId);
  }
  return finish();
}

/**
 * Merges links and checkpoints that are each in seq order into the one stream `verifyChain`
 * reads, for a caller that holds them apart (the offline verifier's two files).
 */
export async function* mergeBySeq(
  links: AsyncIterable<ChainLink>,
  checkpoints: AsyncIterable<SignedCheckpoint>,
): AsyncGenerator<ChainEntry> {
  const pending = checkpoints[Symbol.asyncIterator]();
  try {
    let next = await pending.next();
    for await (const link of links) {
      while (!next.done && next.value.seq < link.seq) {
        yield { checkpoint: next.value };
        next = await pending.next();
      }
      yield { link };
    }
    while (!next.done) {
      yield { checkpoint: next.value };
      next = await pending.next();
    }
  } finally {
    await pending.return?.();
  }
}
