import type { Change, ChangeBus } from '../db/changes.ts';
import type { Database, Scope } from '../db/database.ts';
import type { AccessControl, Caller } from './access.ts';
import type { Ruling } from './ruling.ts';

/**
 * A feature whose rows configure a workspace (policies, structures, members, identity providers):
 * a change runs in the workspace's RLS scope with the caller's decision in the same transaction,
 * and is announced to every instance when it commits; a read's decision is durable before its
 * answer.
 */
export abstract class WorkspaceConfiguration {
  protected readonly database: Database;
  protected readonly access: AccessControl;
  private readonly changes: ChangeBus;
  private readonly topic: Change['topic'];

  constructor(options: { database: Database; access: AccessControl; changes: ChangeBus }, topic: Change['topic']) {
    this.database = options.database;
    this.access = options.access;
    this.changes = options.changes;
    this.topic = topic;
  }

  protected change<T>(caller: Caller, work: (scope: Scope, ruling: Ruling) => Promise<T>): Promise<T> {
    return this.announced(caller, { topic: this.topic, workspaceId: caller.workspaceId } as Change, work);
  }

  /** A change to one user's membership: caches drop only what they hold of that user. */
  protected changeOfMember<T>(
    caller: Caller,
    userId: string,
    work: (scope: Scope, ruling: Ruling) => Promise<T>,
  ): Promise<T> {
    return this.announced(caller, { topic: 'member', workspaceId: caller.workspaceId, userId }, work);
  }

  private async announced<T>(
    caller: Caller,
    change: Change,
    work: (scope: Scope, ruling: Ruling) => Promise<T>,
  ): Promise<T> {
    const value = await this.access.change(caller, async (scope, ruling) => {
      const result = await work(scope, ruling);
      await this.changes.announce(scope, change);
      return result;
    });
    this.changes.apply(change);
    return value;
  }

  protected read<T>(caller: Caller, work: (scope: Scope, ruling: Ruling) => Promise<T>): Promise<T> {
    return this.access.read(caller, (ruling) =>
      this.database.withWorkspace(caller.workspaceId, (scope) => work(scope, ruling), { readOnly: true }),
    );
  }
}
