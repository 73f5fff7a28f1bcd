import { mergeBySeq, verifyChain, type ChainBreak, type SignedCheckpoint } from './chain-verifier.ts';
import { BadInput, checkpointLines, exportRows, linksInSeqOrder, readKeys } from './offline-files.ts';

/**
 * The auditor's offline check: `npm run verify-log -- <export.ndjson> <checkpoints.ndjson>
 * <public-key>...`. Reads files only — no database, no network, no trust in the server beyond the
 * public keys given — and verifies with the code the server's `…/decisions/verify` runs.
 * Exit code 0: verified; 1: not verified (the first break is named); 2: the input is not usable.
 */

const usage = 'usage: npm run verify-log -- <export.ndjson> <checkpoints.ndjson> <public-key.pem | public-key.json>...';

/** The route streams checkpoints by ascending seq; anything else was edited or concatenated. */
async function* ascending(
  file: string,
  checkpoints: AsyncIterable<SignedCheckpoint>,
): AsyncGenerator<SignedCheckpoint> {
  let last = 0;
  for await (const checkpoint of checkpoints) {
    if (checkpoint.seq <= last) throw new BadInput(`${file}: checkpoints are not in ascending seq order`);
    last = checkpoint.seq;
    yield checkpoint;
  }
}

/** An export holds no deletion, only absence: a gap is reported as what it may be. */
function explained(found: ChainBreak): string {
  switch (found.kind) {
    case 'missing-link':
      return `seq ${found.seq} is not in the export: the export is filtered or incomplete, or the decision was deleted (verify an unfiltered export)`;
    case 'signed-but-missing':
      return `${found.reason} from the export: deleted, or the export is filtered or older than the checkpoints`;
    case 'unknown-key':
      return `${found.reason}: none of the public keys given has this id`;
    default:
      return found.reason;
  }
}

async function verifyFiles(exportFile: string, checkpointsFile: string, keyFiles: string[]): Promise<0 | 1> {
  const keys = await readKeys(keyFiles);
  const rows = exportRows(exportFile);
  const first = await rows.next();
  if (first.done) throw new BadInput(`${exportFile}: empty (the export always holds at least its own decision)`);
  const workspaceId = first.value.workspaceId;
  const counts = { unsealed: 0 };
  const links = linksInSeqOrder(
    (async function* () {
      yield first.value;
      yield* rows;
    })(),
    workspaceId,
    counts,
  );
  const checkpoints = ascending(checkpointsFile, checkpointLines(checkpointsFile));
  const verdict = await verifyChain(workspaceId, keys, mergeBySeq(links, checkpoints));

  const print = (line: string) => process.stdout.write(`${line}\n`);
  const signed = verdict.checkpoints
    ? `signed up to seq ${verdict.signedUpTo} by ${verdict.checkpoints} checkpoint(s) of key(s) ${verdict.signedBy.join(', ')}`
    : 'no checkpoint signs it';
  if (verdict.firstBreak) {
    const held = verdict.lastSeq
      ? `the chain holds up to seq ${verdict.lastSeq}${verdict.checkpoints ? `, ${signed}` : ''}`
      : 'the chain does not hold from its first link';
    print(`NOT VERIFIED: workspace ${workspaceId}: ${held}`);
    print(`first break at seq ${verdict.firstBreak.seq}: ${explained(verdict.firstBreak)}`);
    return 1;
  }
  const unsealed = `${counts.unsealed} unsealed decision(s) not in the chain yet`;
  if (!verdict.linked) {
    print(`VERIFIED: workspace ${workspaceId}: nothing sealed yet; ${unsealed}`);
    return 0;
  }
  if (!verdict.checkpoints) {
    print(`NOT VERIFIED: workspace ${workspaceId}: seq 1–${verdict.lastSeq} link up, but ${signed}`);
    print('first break: none, but a chain no checkpoint signs proves nothing (are these the right checkpoints?)');
    return 1;
  }
  const unsigned =
    verdict.signedUpTo < verdict.lastSeq
      ? `; seq ${verdict.signedUpTo + 1}–${verdict.lastSeq} are linked but newer than your checkpoints`
      : '';
  print(`VERIFIED: workspace ${workspaceId}: seq 1–${verdict.lastSeq} recomputed, ${signed}${unsigned}; ${unsealed}`);
  return 0;
}

const [exportFile, checkpointsFile, ...keyFiles] = process.argv.slice(2);
if (!exportFile || !checkpointsFile || !keyFiles.length) {
  process.stderr.write(`${usage}\n`);
  process.exitCode = 2;
} else {
  // Exit code 1 means "not verified" and nothing else: any failure to read is 2.
  process.exitCode = await verifyFiles(exportFile, checkpointsFile, keyFiles).catch((error: unknown) => {
    const detail = error instanceof BadInput ? error.message : error instanceof Error ? error.stack : String(error);
    process.stderr.write(`cannot verify: ${detail}\n`);
    return 2;
  });
}
