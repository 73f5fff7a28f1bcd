import { availableParallelism } from 'node:os';
import { authBench } from './auth.ts';
import { billingBench } from './billing.ts';
import { decisionsBench } from './decisions.ts';
import { functionsBench } from './functions.ts';
import { realtimeBench } from './realtime.ts';
import { recordsBench } from './records.ts';
import { triggersBench } from './triggers.ts';
import { whatIfBench } from './whatif.ts';
import { benchDatabase } from './database.ts';
import { watchOtherWork } from './machine.ts';
import { printTable, type Measurement } from './report.ts';

/**
 * `npm run bench [-- --json] [-- --only auth]`: every measurement is a ratio against a baseline
 * measured in the same run, because this machine is noisy: each comparison runs many short
 * rounds, both sides back to back in each, and reports the median of the per-round ratios and
 * their spread.
 */
const args = process.argv.slice(2);
const json = args.includes('--json');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
// BENCH_MILLIS (default 1000) scales every measured window in proportion — an HTTP load window
// lasts BENCH_MILLIS / 4 (a whole BENCH_MILLIS for slow requests), an in-process window
// BENCH_MILLIS / 20 — while the number of rounds stays: 500 halves the measuring time (a quick
// look), 2000 doubles it.
const millis = Number(process.env.BENCH_MILLIS ?? 1_000);

const suites: Record<
  string,
  (database: { ownerUrl: string; appUrl: string; postmaster: number | undefined }) => Promise<Measurement[]>
> = {
  auth: (database) => authBench(database.appUrl, millis),
  decisions: (database) => decisionsBench(database.appUrl, millis),
  records: (database) => recordsBench(database, millis),
  functions: (database) => functionsBench(database, millis),
  triggers: (database) => triggersBench(database, millis),
  billing: (database) => billingBench(database, millis),
  realtime: (database) => realtimeBench(database, millis),
  whatif: (database) => whatIfBench(database),
};

const database = await benchDatabase();
const results: Measurement[] = [];
const otherWork: string[] = [];
try {
  for (const [name, suite] of Object.entries(suites)) {
    if (only && only !== name) continue;
    const watch = watchOtherWork(database.postmaster);
    const measured = await suite(database);
    const busy = watch();
    for (const entry of measured) entry.otherWork = busy;
    if (busy !== null) otherWork.push(`${name} ${busy}`);
    results.push(...measured);
    if (json) for (const entry of measured) console.log(JSON.stringify(entry));
  }
} finally {
  await database.stop();
}
if (!json) {
  printTable(results);
  if (otherWork.length)
    console.log(
      `cores busy with other work while each suite ran (of ${availableParallelism()}): ${otherWork.join(', ')}`,
    );
}
