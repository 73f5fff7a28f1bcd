import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { genesisHash, linkHash, signCheckpoint, type ChainedDecision } from './chain.ts';
import { mergeBySeq, verifyChain, type ChainLink, type SignedCheckpoint } from './chain-verifier.ts';
import { generateSigningKey, type SigningKey } from './signing.ts';

const workspaceId = randomUUID();
const signer = generateSigningKey();
const keys = new Map([[signer.keyId, signer.publicKey]]);

function decision(seq: number): ChainedDecision {
  return {
    id: randomUUID(),
    workspaceId,
    seq,
    at: new Date(Date.UTC(2026, 0, 1, 0, 0, seq)).toISOString(),
    requestId: `request-${seq}`,
    principal: { id: 'user_a', roles: ['viewer'], provider: 'clerk' },
    action: 'read',
    operation: 'check',
    subject: 'Task',
    resourceId: null,
    fields: null,
    allowed: true,
    policyId: null,
    policyVersion: null,
    ruleIndex: null,
    reason: 'viewers read',
    latencyMicros: seq,
    ip: null,
    userAgent: null,
  };
}

function chain(length: number): ChainLink[] {
  let prevHash = genesisHash;
  return Array.from({ length }, (_, index) => {
    const seq = index + 1;
    const linked = decision(seq);
    const link = { seq, prevHash, hash: linkHash(prevHash, linked), decision: linked };
    prevHash = link.hash;
    return link;
  });
}

function checkpoint(link: ChainLink, key: SigningKey = signer, workspace = workspaceId): SignedCheckpoint {
  const signed = { workspaceId: workspace, seq: link.seq, hash: link.hash, at: new Date().toISOString() };
  return { ...signed, keyId: key.keyId, signature: signCheckpoint(signed, key.privateKey) };
}

async function* each<T>(items: T[]): AsyncGenerator<T> {
  yield* items;
}

const verify = (links: ChainLink[], checkpoints: SignedCheckpoint[]) =>
  verifyChain(workspaceId, keys, mergeBySeq(each(links), each(checkpoints)));

/** A chain of 1–30 links with checkpoints at some seqs, always one at the end (as the sealer does). */
const sealedChain = fc
  .integer({ min: 1, max: 30 })
  .chain((length) =>
    fc.tuple(fc.constant(length), fc.uniqueArray(fc.integer({ min: 1, max: length }), { maxLength: 5 })),
  )
  .map(([length, seqs]) => {
    const links = chain(length);
    const at = [...new Set([...seqs, length])].sort((left, right) => left - right);
    return { links, checkpoints: at.map((seq) => checkpoint(links[seq - 1]!)) };
  });

describe('verifyChain', () => {
  it('verifies an intact chain, however it was sealed', async () => {
    await fc.assert(
      fc.asyncProperty(sealedChain, async ({ links, checkpoints }) => {
        const verdict = await verify(links, checkpoints);
        expect(verdict).toEqual({
          linked: links.length,
          lastSeq: links.length,
          checkpoints: checkpoints.length,
          signedUpTo: links.length,
          signedBy: [signer.keyId],
        });
      }),
    );
  });

  it('reports a changed decision at its own seq', async () => {
    await fc.assert(
      fc.asyncProperty(sealedChain, fc.nat(), async ({ links, checkpoints }, pick) => {
        const seq = (pick % links.length) + 1;
        const changed = links.map((link) =>
          link.seq === seq ? { ...link, decision: { ...link.decision!, reason: 'rewritten' } } : link,
        );
        const { firstBreak } = await verify(changed, checkpoints);
        expect(firstBreak).toMatchObject({ seq, kind: 'hash' });
      }),
    );
  });

  it('reports a removed link at its seq, and a removed tail right after the last link left', async () => {
    await fc.assert(
      fc.asyncProperty(sealedChain, fc.nat(), async ({ links, checkpoints }, pick) => {
        const seq = (pick % links.length) + 1;
        const { firstBreak } = await verify(
          links.filter((link) => link.seq !== seq),
          checkpoints,
        );
        expect(firstBreak?.seq).toBe(seq);
        const tail = await verify(
          links.filter((link) => link.seq < seq),
          checkpoints,
        );
        expect(tail.firstBreak).toMatchObject({ seq, kind: 'signed-but-missing' });
      }),
    );
  });

  it('distrusts a checkpoint of an unknown key, of another workspace or with a bad signature', async () => {
    const links = chain(6);
    const good = checkpoint(links[5]!);
    const cases: [SignedCheckpoint, string][] = [
      [checkpoint(links[2]!, generateSigningKey()), 'unknown-key'],
      [checkpoint(links[2]!, signer, randomUUID()), 'foreign-checkpoint'],
      [{ ...checkpoint(links[2]!), signature: good.signature }, 'signature'],
      [{ ...checkpoint(links[2]!), at: new Date(0).toISOString() }, 'signature'],
    ];
    for (const [forged, kind] of cases)
      expect((await verify(links, [forged, good])).firstBreak).toMatchObject({ seq: 3, kind });
  });

  it('does not take an untrusted checkpoint beyond the chain for a deleted tail', async () => {
    const links = chain(4);
    const beyond = chain(9);
    const forged = checkpoint(beyond[8]!, generateSigningKey());
    expect((await verify(links, [checkpoint(links[3]!), forged])).firstBreak).toMatchObject({
      seq: 9,
      kind: 'unknown-key',
    });
    // A trusted one beyond it still proves the missing decisions, from the first one missing.
    expect(
      (
        await verify(
          links,
          [forged, checkpoint(beyond[6]!)].sort((a, b) => a.seq - b.seq),
        )
      ).firstBreak,
    ).toEqual({
      seq: 5,
      kind: 'signed-but-missing',
      reason: 'decisions up to seq 7 were signed but are missing',
    });
  });

  it('names a second link claiming a seq already passed', async () => {
    const links = chain(5);
    const entries = [...links.slice(0, 4).map((link) => ({ link })), { link: links[2]! }];
    expect((await verifyChain(workspaceId, keys, entries)).firstBreak).toMatchObject({
      seq: 3,
      kind: 'duplicate-link',
    });
  });
});
