import type { EntityManager } from '@mikro-orm/postgresql';
import type { Change, ChangeBus } from './changes.ts';
import type { Orm } from './orm.ts';

/**
 * A feature whose rows configure a workspace (policies, structures, members): every change runs
 * in the workspace's RLS scope, records the actor's decision in the same transaction, and is
 * announced to every instance on commit.
 */
export abstract class WorkspaceConfiguration {
  protected readonly orm: Orm;
  protected readonly changes: ChangeBus;
  private readonly topic: Change['topic'];

  constructor(orm: Orm, changes: ChangeBus, topic: Change['topic']) {
    this.orm = orm;
    this.changes = changes;
    this.topic = topic;
  }

  protected change<T>(
    workspaceId: string,
    actor: { audit(em: EntityManager): Promise<void> },
    work: (em: EntityManager) => Promise<T>,
  ): Promise<T> {
    return this.changes.inWorkspace(this.orm, { topic: this.topic, workspaceId }, async (em) => {
      const value = await work(em);
      await actor.audit(em);
      return value;
    });
  }
}
