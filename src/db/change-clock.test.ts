import { ChangeClock } from './change-clock.ts';

describe('ChangeClock', () => {
  it('counts a change against its own workspace only, and a change to all against every one', () => {
    const clock = new ChangeClock();
    const mark = clock.mark();
    clock.heard('workspace-b');
    expect(clock.unchangedSince(mark, 'workspace-a')).toBe(true);
    expect(clock.unchangedSince(mark, 'workspace-b')).toBe(false);
    expect(clock.unchangedSince(mark)).toBe(true);
    const later = clock.mark();
    expect(clock.unchangedSince(later, 'workspace-b')).toBe(true);
    clock.heard('*');
    expect(clock.unchangedSince(later, 'workspace-a')).toBe(false);
    expect(clock.unchangedSince(later)).toBe(false);
  });

  it('counts a workspace whose moment it had to forget as changed, for loads in flight', () => {
    const clock = new ChangeClock();
    clock.heard('workspace-a');
    const mark = clock.mark();
    // 10,000 other workspaces change while a load of workspace-a is in flight: its moment is evicted.
    for (let index = 0; index < 10_000; index++) clock.heard(`other-${index}`);
    expect(clock.unchangedSince(mark, 'workspace-a')).toBe(false);
    expect(clock.unchangedSince(clock.mark(), 'workspace-a')).toBe(true);
  });
});
