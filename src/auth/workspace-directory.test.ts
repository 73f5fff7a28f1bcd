import { pino } from 'pino';
import { ChangeBus } from '../db/changes.ts';
import type { Database } from '../db/database.ts';
import { WorkspaceDirectory } from './workspace-directory.ts';

/** An ORM whose lookups wait for the test to let them answer, and answer "no such workspace". */
function pausedOrm() {
  const pending: (() => void)[] = [];
  let lookups = 0;
  const orm = {
    inWorkspace: async () => {
      lookups += 1;
      await new Promise<void>((resolve) => pending.push(resolve));
      return [{ id: null, providers: [] }];
    },
  } as unknown as Database;
  return { orm, release: () => pending.splice(0).forEach((resolve) => resolve()), lookups: () => lookups };
}

describe('WorkspaceDirectory', () => {
  it('caches an answer, found or not', async () => {
    const { orm, release, lookups } = pausedOrm();
    const directory = new WorkspaceDirectory(orm, new ChangeBus(undefined, pino({ level: 'silent' })));
    const answer = directory.resolve('acme');
    await Promise.resolve();
    release();
    expect(await answer).toBeUndefined();
    expect(directory.cached('acme')).toBeUndefined();
    expect(lookups()).toBe(1);
  });

  it('does not cache a lookup that a change overtook (a workspace created while "missing" was on its way)', async () => {
    const { orm, release, lookups } = pausedOrm();
    const changes = new ChangeBus(undefined, pino({ level: 'silent' }));
    const directory = new WorkspaceDirectory(orm, changes);
    const answer = directory.resolve('acme');
    await Promise.resolve();
    changes.apply({ topic: 'workspace', workspaceId: '*' });
    release();
    expect(await answer).toBeUndefined();
    expect(directory.cached('acme')).toBeNull();
    const again = directory.resolve('acme');
    await Promise.resolve();
    release();
    await again;
    expect(lookups()).toBe(2);
  });
});
