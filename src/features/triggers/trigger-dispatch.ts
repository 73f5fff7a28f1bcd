import { v7 as uuidv7 } from 'uuid';
import type { Scope } from '../../db/database.ts';
import type { EventConsumer } from '../../events/dispatcher.ts';
import type { StoredEvent } from '../../events/event-log.ts';
import { addJobs } from '../../events/queue.ts';
import { drainJob } from './delivery-jobs.ts';
import { insertDeliveries, type NewDelivery } from './delivery-log.ts';
import { fires, type TriggerCatalog } from './trigger-catalog.ts';

/**
 * Turns committed events into deliveries: for each event that may fire triggers, one delivery per
 * enabled trigger it fires, and one drain job per (trigger, stream). It runs in the dispatcher's
 * transaction, which also moves its progress past the events: each event is matched exactly once.
 * Jobs are added here, not in the request that wrote the event: graphile-worker's NOTIFY would make
 * every such request commit one at a time on PostgreSQL's notification queue.
 */
export class TriggerDispatch implements EventConsumer {
  readonly name = 'triggers';
  private readonly catalog: TriggerCatalog;
  private readonly chainDepth: number;

  constructor(catalog: TriggerCatalog, chainDepth: number) {
    this.catalog = catalog;
    this.chainDepth = chainDepth;
  }

  async handle(scope: Scope, events: readonly StoredEvent[]): Promise<void> {
    const triggers = await this.catalog.enabled(scope);
    if (!triggers.length) return;
    const deliveries: NewDelivery[] = [];
    for (const event of events) {
      if (!event.fireTriggers) continue;
      // A record's events share its stream, so they go out in seq order; other events stand alone.
      const stream = event.recordId ?? event.id;
      for (const trigger of triggers) {
        if (fires(trigger, event, this.chainDepth))
          deliveries.push({ id: uuidv7(), triggerId: trigger.id, stream, event });
      }
    }
    if (!deliveries.length) return;
    await insertDeliveries(scope, deliveries);
    await addJobs(
      scope,
      deliveries.map((delivery) =>
        drainJob({ workspaceId: scope.workspaceId, triggerId: delivery.triggerId, stream: delivery.stream }),
      ),
    );
  }
}
