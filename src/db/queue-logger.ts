import { Logger as QueueLogger } from 'graphile-worker';
import type { Logger } from 'pino';

/** graphile-worker's log lines, through pino (its debug chatter at trace). */
export const queueLogger = (logger: Logger): QueueLogger =>
  new QueueLogger((scope) => (level, message, meta) => {
    const fields = { queue: scope, ...(meta ?? {}) };
    if (level === 'error') logger.error(fields, message);
    else if (level === 'warning') logger.warn(fields, message);
    else if (level === 'info') logger.debug(fields, message);
    else logger.trace(fields, message);
  });
