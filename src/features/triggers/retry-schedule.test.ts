import { defaultRetrySchedule, nextDelay, parseRetryAfter } from './retry-schedule.ts';

const hours = (ms: number) => ms / 3_600_000;

describe('the retry schedule', () => {
  it('retries for about three days, in 13 attempts', () => {
    const total = defaultRetrySchedule.reduce((sum, step) => sum + step, 0);
    expect(hours(total)).toBeCloseTo(77.6, 1);
    expect(defaultRetrySchedule.length + 1).toBe(13);
  });

  it('jitters each step by at most a fifth', () => {
    expect(nextDelay(defaultRetrySchedule, 1, undefined, () => 0)).toBe(4_000);
    expect(nextDelay(defaultRetrySchedule, 1, undefined, () => 1)).toBe(6_000);
    expect(nextDelay(defaultRetrySchedule, 3, undefined, () => 0.5)).toBe(30 * 60_000);
  });

  it('is spent after its last step', () => {
    expect(nextDelay(defaultRetrySchedule, 12, undefined, () => 0.5)).toBe(10 * 3_600_000);
    expect(nextDelay(defaultRetrySchedule, 13)).toBeUndefined();
    expect(nextDelay([], 1)).toBeUndefined();
  });

  it('honours a longer Retry-After, up to a day', () => {
    expect(nextDelay(defaultRetrySchedule, 1, 60_000, () => 0.5)).toBe(60_000);
    expect(nextDelay(defaultRetrySchedule, 1, 1_000, () => 0.5)).toBe(5_000);
    expect(nextDelay(defaultRetrySchedule, 1, 30 * 24 * 3_600_000, () => 0.5)).toBe(24 * 3_600_000);
  });
});

describe('Retry-After', () => {
  const now = Date.parse('2026-11-30T12:00:00Z');

  it('reads delay-seconds and HTTP dates', () => {
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter(' 0 ', now)).toBe(0);
    expect(parseRetryAfter('Mon, 30 Nov 2026 12:01:00 GMT', now)).toBe(60_000);
    expect(parseRetryAfter('Mon, 30 Nov 2026 11:00:00 GMT', now)).toBe(0);
  });

  it('ignores what it cannot read', () => {
    expect(parseRetryAfter(null, now)).toBeUndefined();
    expect(parseRetryAfter('', now)).toBeUndefined();
    expect(parseRetryAfter('soon', now)).toBeUndefined();
    expect(parseRetryAfter('-5', now)).toBeUndefined();
  });
});
