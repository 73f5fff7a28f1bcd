const second = 1_000;
const minute = 60 * second;
const hour = 60 * minute;

/**
 * How long to wait after each failed attempt of a delivery: Svix's schedule (5 s, 5 min, 30 min,
 * 2 h, 5 h, 10 h, 10 h, which ends after 27.6 h) with five more 10 h steps, so a receiver that is
 * down gets about 3 days (77.6 h, 13 attempts) before its trigger is disabled.
 */
export const defaultRetrySchedule: readonly number[] = [
  5 * second,
  5 * minute,
  30 * minute,
  2 * hour,
  5 * hour,
  ...Array<number>(7).fill(10 * hour),
];

/** Each wait is stretched or shrunk by up to this share, so receivers that failed together are not retried together. */
const jitter = 0.2;

/** The longest wait a receiver's `Retry-After` may ask for. */
export const retryAfterCap = 24 * hour;

/**
 * The wait before the next attempt, after `failed` attempts of this round (1 after the first), or
 * undefined once the schedule is spent. A receiver's `Retry-After` is honoured when it asks for
 * longer, up to a day: a receiver cannot park a delivery for a month.
 */
export function nextDelay(
  schedule: readonly number[],
  failed: number,
  retryAfterMs?: number,
  random: () => number = Math.random,
): number | undefined {
  const step = schedule[failed - 1];
  if (step === undefined) return undefined;
  const jittered = Math.round(step * (1 - jitter + 2 * jitter * random()));
  if (retryAfterMs === undefined) return jittered;
  return Math.max(jittered, Math.min(retryAfterMs, retryAfterCap));
}

/** `Retry-After` as delay-seconds or an HTTP date (IMF-fixdate), in milliseconds from `now`; undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  const text = value?.trim();
  if (!text) return undefined;
  if (/^\d{1,10}$/.test(text)) return Number(text) * second;
  // An HTTP date (IMF-fixdate); Date.parse alone would read "-5" as a year.
  if (!/^[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT$/.test(text)) return undefined;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
