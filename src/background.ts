import type { Logger } from 'pino';
import type { Config } from './config.ts';
import type { Database } from './db/database.ts';
import { EventDispatcher, type EventConsumer } from './events/dispatcher.ts';
import type { EventLog } from './events/event-log.ts';
import { JobQueue } from './events/queue.ts';
import { purgeExpired } from './events/retention.ts';

export interface BackgroundDependencies {
  config: Pick<Config, 'events'>;
  database: Database;
  events: EventLog;
  logger: Logger;
}

/**
 * The work every instance shares in the background: the job queue (deliveries, function runs,
 * retention) and the dispatcher that turns committed events into jobs. Features register their
 * tasks and their event consumer before `start`.
 */
export class Background {
  readonly queue: JobQueue;
  private readonly dependencies: BackgroundDependencies;
  private dispatcher: EventDispatcher | undefined;

  constructor(dependencies: BackgroundDependencies) {
    this.dependencies = dependencies;
    const { config, database, logger } = dependencies;
    this.queue = new JobQueue(database, logger, {
      concurrency: config.events.workerConcurrency,
      crontab: '*/10 * * * * cordon_retention ?max=1&id=retention',
    });
    this.queue.task('cordon_retention', async () => {
      await purgeExpired(database, logger, {
        eventHours: config.events.retentionHours,
        deliveryDays: config.events.deliveryRetentionDays,
      });
    });
  }

  /** The consumer that every committed event is handed to, once, in seq order per workspace. */
  consume(consumer: EventConsumer, options?: ConstructorParameters<typeof EventDispatcher>[4]): EventDispatcher {
    const { database, events, logger } = this.dependencies;
    this.dispatcher = new EventDispatcher(database, events, consumer, logger, options);
    return this.dispatcher;
  }

  async start(): Promise<void> {
    await this.queue.start();
    this.dispatcher?.start();
  }

  async stop(): Promise<void> {
    await this.dispatcher?.stop();
    await this.queue.stop();
  }
}
