/** One measured line: a value, the baseline measured in the same run, and their ratio. */
export interface Measurement {
  name: string;
  unit: string;
  value: number;
  baseline: string | null;
  baselineValue: number | null;
  ratio: number | null;
  /** e.g. ">= 0.8" (ratio) or "< 5" (value); null when informative only. */
  target: string | null;
}

export function measurement(
  name: string,
  unit: string,
  value: number,
  baseline?: { name: string; value: number },
  target?: string,
): Measurement {
  return {
    name,
    unit,
    value: round(value),
    baseline: baseline?.name ?? null,
    baselineValue: baseline ? round(baseline.value) : null,
    ratio: baseline ? round(value / baseline.value, 3) : null,
    target: target ?? null,
  };
}

const round = (value: number, digits = 1) => Number(value.toFixed(digits));

/** Whether a measurement meets its target; null when it has none. */
export function meetsTarget(entry: Measurement): boolean | null {
  if (!entry.target) return null;
  const match = /^(ratio|value)\s*(>=|<=|<|>)\s*([\d.]+)$/.exec(entry.target);
  if (!match) return null;
  const actual = match[1] === 'ratio' ? entry.ratio : entry.value;
  if (actual === null) return null;
  const bound = Number(match[3]);
  switch (match[2]) {
    case '>=':
      return actual >= bound;
    case '<=':
      return actual <= bound;
    case '<':
      return actual < bound;
    default:
      return actual > bound;
  }
}

export function printTable(entries: Measurement[]): void {
  const rows = entries.map((entry) => {
    const met = meetsTarget(entry);
    return [
      entry.name,
      `${entry.value} ${entry.unit}`,
      entry.baseline ? `${entry.baselineValue} (${entry.baseline})` : '',
      entry.ratio === null ? '' : `${entry.ratio}×`,
      entry.target ? `${entry.target} ${met ? 'ok' : 'MISSED'}` : '',
    ];
  });
  const header = ['measurement', 'value', 'baseline', 'ratio', 'target'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ');
  console.log(line(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) console.log(line(row));
}

/**
 * Measures two operations in alternating rounds and keeps each one's best round, so a burst of
 * noise on this shared machine does not land on one side only.
 */
export async function compareOps(
  subject: (iteration: number) => Promise<unknown> | unknown,
  baseline: (iteration: number) => Promise<unknown> | unknown,
  options: { millis?: number; rounds?: number; maxIterations?: number; concurrency?: number } = {},
): Promise<{ subject: number; baseline: number }> {
  const rounds = options.rounds ?? 5;
  const millis = (options.millis ?? 1_000) / rounds;
  const best = { subject: 0, baseline: 0 };
  let offset = 0;
  for (let round = 0; round < rounds; round += 1) {
    const start = offset;
    const maxIterations = options.maxIterations === undefined ? undefined : Math.floor(options.maxIterations / rounds);
    best.baseline = Math.max(
      best.baseline,
      await opsPerSecond((index) => baseline(start + index), {
        millis,
        maxIterations,
        warmup: 20,
        concurrency: options.concurrency ?? 1,
      }),
    );
    best.subject = Math.max(
      best.subject,
      await opsPerSecond((index) => subject(start + index), {
        millis,
        maxIterations,
        warmup: 20,
        concurrency: options.concurrency ?? 1,
      }),
    );
    offset += maxIterations ?? 0;
  }
  return best;
}

/** Runs `operation` repeatedly for about `millis` and returns operations per second. */
export async function opsPerSecond(
  operation: (iteration: number) => Promise<unknown> | unknown,
  options: { millis?: number; maxIterations?: number | undefined; warmup?: number; concurrency?: number } = {},
): Promise<number> {
  const { millis = 1_000, warmup = 50, concurrency = 1 } = options;
  const maxIterations = options.maxIterations ?? Number.POSITIVE_INFINITY;
  for (let warm = 0; warm < warmup; warm += 1) await operation(-1 - warm);
  let iterations = 0;
  const started = performance.now();
  const deadline = started + millis;
  // `concurrency` callers at once, like the requests a server has in flight.
  const caller = async () => {
    while (iterations < maxIterations && (iterations % 16 !== 0 || performance.now() < deadline))
      await operation(iterations++);
  };
  await Promise.all(Array.from({ length: concurrency }, caller));
  return (iterations / (performance.now() - started)) * 1000;
}
