import type { Logger } from 'pino';
import type { Config } from './config.ts';
import type { ChangeBus } from './db/changes.ts';
import type { Database } from './db/database.ts';
import { EventDispatcher, type DispatcherOptions, type EventConsumer } from './events/dispatcher.ts';
import type { EventLog } from './events/event-log.ts';
import { JobQueue } from './events/queue.ts';
import { purgeExpired } from './events/retention.ts';
import type { EventSecrets } from './events/secrets.ts';
import type { BillingJobs } from './features/billing/billing-jobs.ts';
import type { FunctionAction } from './features/triggers/action.ts';
import { TriggerCatalog } from './features/triggers/trigger-catalog.ts';
import { deliveryOptions, TriggerDelivery, type DeliveryOptions } from './features/triggers/trigger-delivery.ts';
import { TriggerDispatch } from './features/triggers/trigger-dispatch.ts';

export interface BackgroundDependencies {
  config: Pick<Config, 'env' | 'auth' | 'events'> & { billing?: Pick<Config['billing'], 'reconcileMinutes'> };
  database: Database;
  /** The event log's in-process news of commits: this instance's dispatcher looks at once. */
  events: EventLog;
  changes: ChangeBus;
  /** Opens webhook signing secrets and sealed event data just before a delivery. */
  secrets: EventSecrets;
  logger: Logger;
  /** Runs function triggers (features/functions). */
  functions: FunctionAction;
  /** With Stripe configured: reconciliation and meter reporting, run on the queue's crontab. */
  billing?: BillingJobs | undefined;
  /** Tests shorten the retry schedule and the dispatcher's interval. */
  tuning?: {
    delivery?: Partial<Omit<DeliveryOptions, 'webhook'>> & { webhook?: Partial<DeliveryOptions['webhook']> };
    dispatcher?: Partial<DispatcherOptions>;
  };
}

/**
 * The work every instance shares in the background: the job queue (webhook deliveries and
 * function runs, retention) and the dispatcher that turns committed events into deliveries.
 */
export class Background {
  readonly queue: JobQueue;
  /** The recurring jobs registered with the queue (graphile-worker's crontab syntax). */
  readonly crontab: string;
  /** Hands committed events to the trigger matcher. */
  readonly triggers: EventDispatcher;
  private readonly dependencies: BackgroundDependencies;
  private readonly dispatchers: EventDispatcher[] = [];

  constructor(dependencies: BackgroundDependencies) {
    this.dependencies = dependencies;
    const { config, database, changes, events, secrets, logger, functions, tuning, billing } = dependencies;
    const crontab = ['*/10 * * * * cordon_retention ?max=1&id=retention'];
    if (billing) {
      crontab.push(
        `${every(config.billing?.reconcileMinutes ?? 15)} cordon_billing_reconcile ?max=1&id=billing_reconcile`,
        // Last month's API calls go to Stripe's meter once it has been closed an hour; hourly tries suffice.
        '7 * * * * cordon_billing_meter ?max=3&id=billing_meter',
      );
    }
    this.crontab = crontab.join('\n');
    this.queue = new JobQueue(database, logger, {
      concurrency: config.events.workerConcurrency,
      crontab: this.crontab,
    });
    if (billing) {
      this.queue.task('cordon_billing_reconcile', async () => void (await billing.reconcile()));
      this.queue.task('cordon_billing_meter', async () => void (await billing.reportUsage()));
    }
    this.queue.task('cordon_retention', async () => {
      await purgeExpired(database, logger, {
        eventHours: config.events.retentionHours,
        deliveryDays: config.events.deliveryRetentionDays,
        billingEventDays: config.events.billingEventRetentionDays,
      });
    });

    const settings = { allowPrivateNetworks: config.auth.allowPrivateNetworks, httpsOnly: config.env === 'production' };
    const options = deliveryOptions(settings, tuning?.delivery);
    new TriggerDelivery({ database, changes, events, sealer: secrets, logger, functions, options }).register(
      this.queue,
    );
    const dispatch = new TriggerDispatch(new TriggerCatalog(changes), config.events.functionChainDepth);
    this.triggers = this.consume(dispatch, tuning?.dispatcher);
  }

  /** A consumer that every committed event is handed to, once, in seq order per workspace (before `start`). */
  consume(consumer: EventConsumer, options?: Partial<DispatcherOptions>): EventDispatcher {
    const { database, events, logger } = this.dependencies;
    const dispatcher = new EventDispatcher(database, events, consumer, logger, options);
    this.dispatchers.push(dispatcher);
    return dispatcher;
  }

  async start(): Promise<void> {
    await this.queue.start();
    for (const dispatcher of this.dispatchers) dispatcher.start();
  }

  async stop(): Promise<void> {
    for (const dispatcher of this.dispatchers) await dispatcher.stop();
    await this.queue.stop();
  }
}

/** A crontab schedule every `minutes` (minutes that divide an hour, or whole hours that divide a day). */
export function every(minutes: number): string {
  if (minutes < 60) return minutes === 1 ? '* * * * *' : `*/${minutes} * * * *`;
  const hours = minutes / 60;
  return hours === 24 ? '0 0 * * *' : `0 */${hours} * * *`;
}
