/** One measured line: a value, the baseline measured in the same run, and their ratio. */
export interface Measurement {
  name: string;
  unit: string;
  /** The median over the rounds. */
  value: number;
  baseline: string | null;
  /** The baseline's median over the same rounds. */
  baselineValue: number | null;
  /**
   * The median of the per-round ratios, each round measuring both sides back to back (not
   * value / baselineValue, which would pair one side's good moment with the other's bad one).
   */
  ratio: number | null;
  /** e.g. ">= 0.8" (ratio) or "< 5" (value); null when informative only. */
  target: string | null;
  /** Interquartile range of the per-round ratios. */
  spread: [number, number] | null;
  /** Lowest and highest per-round ratio. */
  range: [number, number] | null;
  /** How many rounds the value (and the ratio) come from. */
  rounds: number;
  /**
   * Cores busy with other work — neither the bench nor its PostgreSQL — while the suite ran, on
   * average; null where it cannot be told (no /proc).
   */
  otherWork: number | null;
}

/** A value without a baseline: the median of its rounds. */
export function measurement(name: string, unit: string, values: number[], target?: string): Measurement {
  return {
    name,
    unit,
    value: round(median(values)),
    baseline: null,
    baselineValue: null,
    ratio: null,
    target: target ?? null,
    spread: null,
    range: null,
    rounds: values.length,
    otherWork: null,
  };
}

/** A value against its baseline, from rounds that measured both back to back. */
export function compared(
  name: string,
  unit: string,
  rounds: { subject: number; baseline: number }[],
  baseline: string,
  target?: string,
): Measurement {
  const ratios = rounds.map((pair) => pair.subject / pair.baseline);
  return {
    name,
    unit,
    value: round(median(rounds.map((pair) => pair.subject))),
    baseline,
    baselineValue: round(median(rounds.map((pair) => pair.baseline))),
    ratio: round(median(ratios), 3),
    target: target ?? null,
    spread: [round(quantile(ratios, 0.25), 3), round(quantile(ratios, 0.75), 3)],
    range: [round(Math.min(...ratios), 3), round(Math.max(...ratios), 3)],
    rounds: rounds.length,
    otherWork: null,
  };
}

const round = (value: number, digits = 1) => Number(value.toFixed(digits));

/** Linear interpolation between the closest ranks. */
function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  const position = (sorted.length - 1) * q;
  const below = Math.floor(position);
  const above = Math.min(below + 1, sorted.length - 1);
  return sorted[below]! + (sorted[above]! - sorted[below]!) * (position - below);
}

const median = (values: number[]) => quantile(values, 0.5);

/**
 * Runs every side once per round, back to back, in declaration order on even rounds and in
 * reverse on odd ones: what the first side of a round gains or loses (a warm cache, the tail of
 * the previous round's background work) falls on each side alike.
 */
export async function interleaved<Side extends string, T>(
  rounds: number,
  sides: Record<Side, () => Promise<T> | T>,
): Promise<Record<Side, T>[]> {
  const names = Object.keys(sides) as Side[];
  const results: Record<Side, T>[] = [];
  for (let index = 0; index < rounds; index++) {
    const result = {} as Record<Side, T>;
    for (const name of index % 2 ? [...names].reverse() : names) result[name] = await sides[name]();
    results.push(result);
  }
  return results;
}

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

/** A ratio target whose bound lies inside the interquartile range: this run cannot tell. */
function straddles(entry: Measurement): boolean {
  const bound = /^ratio\s*[<>]=?\s*([\d.]+)$/.exec(entry.target ?? '')?.[1];
  return (
    bound !== undefined && entry.spread !== null && entry.spread[0] < Number(bound) && Number(bound) < entry.spread[1]
  );
}

export function printTable(entries: Measurement[]): void {
  const rows = entries.map((entry) => {
    const met = meetsTarget(entry);
    return [
      entry.name,
      `${entry.value} ${entry.unit}`,
      entry.baseline ? `${entry.baselineValue} (${entry.baseline})` : '',
      entry.ratio === null ? '' : `${entry.ratio}×`,
      entry.spread ? `${entry.spread[0]}–${entry.spread[1]}` : '',
      entry.range ? `${entry.range[0]}–${entry.range[1]}` : '',
      String(entry.rounds),
      entry.target ? `${entry.target} ${met ? 'ok' : 'MISSED'}${straddles(entry) ? ' (IQR straddles it)' : ''}` : '',
    ];
  });
  const header = ['measurement', 'value (median)', 'baseline (median)', 'ratio', 'IQR', 'min–max', 'rounds', 'target'];
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join('  ');
  console.log(line(header));
  console.log(widths.map((width) => '-'.repeat(width)).join('  '));
  for (const row of rows) console.log(line(row));
  console.log('\nratio: median of the per-round ratios, each round measuring both sides back to back.');
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
