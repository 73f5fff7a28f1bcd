import { authBench } from './auth.ts';
import { decisionsBench } from './decisions.ts';
import { recordsBench } from './records.ts';
import { benchDatabase } from './database.ts';
import { printTable, type Measurement } from './report.ts';

/**
 * `npm run bench [-- --json] [-- --only auth]`: every measurement is a ratio against a baseline
 * measured in the same run, because this machine is noisy.
 */
const args = process.argv.slice(2);
const json = args.includes('--json');
const only = args.includes('--only') ? args[args.indexOf('--only') + 1] : undefined;
const millis = Number(process.env.BENCH_MILLIS ?? 1_000);

const suites: Record<string, (database: { ownerUrl: string; appUrl: string }) => Promise<Measurement[]>> = {
  auth: (database) => authBench(database.appUrl, millis),
  decisions: (database) => decisionsBench(database.appUrl, millis),
  records: (database) => recordsBench(database, Math.max(2, Math.round(millis / 500))),
};

const database = await benchDatabase();
const results: Measurement[] = [];
try {
  for (const [name, suite] of Object.entries(suites)) {
    if (only && only !== name) continue;
    const measured = await suite(database);
    results.push(...measured);
    if (json) for (const entry of measured) console.log(JSON.stringify(entry));
  }
} finally {
  await database.stop();
}
if (!json) printTable(results);
