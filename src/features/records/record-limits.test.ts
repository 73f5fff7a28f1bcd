import { jest } from '@jest/globals';
import { Registry } from 'prom-client';
import { LimitHeadroom, RecordLimit } from './record-limits.ts';

const margin = 100;
const limits = () => [new RecordLimit('records.Task', 1500, margin), new RecordLimit('records.*', 2000, margin)];

describe('LimitHeadroom', () => {
  it('learns the room of the tighter limit, both margins off, from the position of the count', () => {
    const headroom = new LimitHeadroom(new Registry());
    const both = limits();
    const key = LimitHeadroom.key('w', 'Task', both);
    headroom.counted(key, both, [1000, 1100], 50);
    // Task: 1500 − 200 − 1000 = 300; "*": 2000 − 200 − 1100 = 700.
    expect(headroom.find(key, both, false)).toMatchObject({ base: 50, ceiling: 350 });
    headroom.counted(key, both, [1000, 1750], 60);
    // "*" has no room left, but the ceiling known (a bound of its own) stays.
    expect(headroom.find(key, both, false)).toMatchObject({ ceiling: 350 });
    headroom.counted(key, both, [1000, 1000], 100);
    expect(headroom.find(key, both, false)).toMatchObject({ base: 100, ceiling: 400 });
    expect(headroom.find(key, both, true)).toBeUndefined();
  });

  it('learns nothing near a limit, without limits, or for a limit checked exclusively', () => {
    const headroom = new LimitHeadroom(new Registry());
    const both = limits();
    const key = LimitHeadroom.key('w', 'Task', both);
    headroom.counted(key, both, [1300, 1300], 10);
    expect(headroom.find(key, both, false)).toBeUndefined();
    const none = [new RecordLimit('records.Task', null, margin), new RecordLimit('records.*', null, margin)];
    headroom.counted(LimitHeadroom.key('w', 'Task', none), none, [0, 0], 10);
    expect(headroom.find(LimitHeadroom.key('w', 'Task', none), none, false)).toBeUndefined();
    headroom.counted(key, both, [0, 0], 10);
    both[1]!.exclusive = true;
    expect(headroom.find(key, both, false)).toBeUndefined();
  });

  it('keys the headroom by the limits: other limits start from a count', () => {
    const headroom = new LimitHeadroom(new Registry());
    const both = limits();
    headroom.counted(LimitHeadroom.key('w', 'Task', both), both, [0, 0], 10);
    const smaller = [new RecordLimit('records.Task', 1000, margin), new RecordLimit('records.*', 2000, margin)];
    expect(headroom.find(LimitHeadroom.key('w', 'Task', smaller), smaller, false)).toBeUndefined();
  });

  it('is spent by a position outside it (at the ceiling, below the base, none), and forgets only that headroom', () => {
    const headroom = new LimitHeadroom(new Registry());
    const both = limits();
    const key = LimitHeadroom.key('w', 'Task', both);
    headroom.counted(key, both, [1000, 1000], 50);
    const found = headroom.find(key, both, false)!;
    expect(headroom.spent(key, found, 349)).toBe(false);
    expect(headroom.spent(key, found, 50)).toBe(false);
    expect(headroom.spent(key, found, 49)).toBe(true);
    expect(headroom.find(key, both, false)).toBeUndefined();
    headroom.counted(key, both, [1000, 1000], 60);
    // A stale headroom spent does not forget the one learned since.
    expect(headroom.spent(key, found, null)).toBe(true);
    expect(headroom.find(key, both, false)).toMatchObject({ base: 60 });
    expect(headroom.spent(key, headroom.find(key, both, false)!, 360)).toBe(true);
    expect(headroom.find(key, both, false)).toBeUndefined();
  });

  it('expires, and is forgotten when the database connection is lost', () => {
    const headroom = new LimitHeadroom(new Registry());
    const both = limits();
    const key = LimitHeadroom.key('w', 'Task', both);
    const now = jest.spyOn(Date, 'now').mockReturnValue(1_000_000);
    try {
      headroom.counted(key, both, [0, 0], 1);
      now.mockReturnValue(1_010_000);
      expect(headroom.find(key, both, false)).toBeDefined();
      now.mockReturnValue(1_010_001);
      expect(headroom.find(key, both, false)).toBeUndefined();
      headroom.counted(key, both, [0, 0], 1);
      headroom.forget();
      expect(headroom.find(key, both, false)).toBeUndefined();
    } finally {
      now.mockRestore();
    }
  });
});
