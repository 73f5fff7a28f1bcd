import type { Logger } from 'pino';
import type { ChangeBus } from '../../db/changes.ts';
import type { Database } from '../../db/database.ts';
import type { EventLog, EventOrigin } from '../../events/event-log.ts';
import { addJobs, type JobQueue } from '../../events/queue.ts';
import type { EventSecrets } from '../../events/secrets.ts';
import type { ActionAttempt, ActionOutcome, FunctionAction } from './action.ts';
import { deliverTask, drainJob, type StreamRef } from './delivery-jobs.ts';
import {
  claimHead,
  claimHeadIn,
  deliveryTarget,
  disableTrigger,
  discardPending,
  recordAttempt,
  type DeliveryTarget,
  type Head,
  type PendingDelivery,
} from './delivery-log.ts';
import { defaultRetrySchedule, nextDelay } from './retry-schedule.ts';
import { defaultWebhookOptions, WebhookAction, webhookBody, type WebhookOptions } from './webhook-action.ts';

export interface DeliveryOptions {
  /** The wait after each failed attempt (ms); spent, the delivery fails and its trigger is disabled. */
  retrySchedule: readonly number[];
  webhook: WebhookOptions;
  /** Deliveries one job makes before the other streams of its queue get a turn. */
  batch: number;
}

export const deliveryOptions = (
  settings: Pick<WebhookOptions, 'allowPrivateNetworks' | 'httpsOnly'>,
  overrides: Partial<Omit<DeliveryOptions, 'webhook'>> & { webhook?: Partial<WebhookOptions> } = {},
): DeliveryOptions => ({
  retrySchedule: overrides.retrySchedule ?? defaultRetrySchedule,
  batch: overrides.batch ?? 100,
  webhook: { ...defaultWebhookOptions, ...settings, ...overrides.webhook },
});

export interface TriggerDeliveryDependencies {
  database: Database;
  changes: ChangeBus;
  events: EventLog;
  sealer: EventSecrets;
  logger: Logger;
  /** Runs a function trigger's function. */
  functions: FunctionAction;
  options: DeliveryOptions;
}

const system: EventOrigin = { actor: { id: 'cordon', kind: 'system' }, requestId: null, depth: 0, fireTriggers: true };

/**
 * The drain task: delivers one stream's pending deliveries in seq order, one attempt at a time,
 * each written to the delivery log. At the first failure it records when to try again, adds
 * itself back for then and returns — it never throws for a receiver's failure, so graphile-worker's
 * own retries only cover crashes. A delivery whose retries are spent fails, and its trigger is
 * disabled with a `trigger.disabled` event; so does a 410 at once.
 */
export class TriggerDelivery {
  private readonly dependencies: TriggerDeliveryDependencies;
  private readonly webhook: WebhookAction;

  constructor(dependencies: TriggerDeliveryDependencies) {
    this.dependencies = dependencies;
    this.webhook = new WebhookAction(dependencies.options.webhook);
  }

  register(queue: JobQueue): void {
    queue.task(deliverTask, async (payload, helpers) => {
      await this.drain(payload as StreamRef, helpers.abortSignal);
    });
  }

  async drain(ref: StreamRef, signal: AbortSignal): Promise<void> {
    const { database, options } = this.dependencies;
    let target = await this.target(ref);
    if (!target) return;
    // A claim outlasts any attempt: the webhook timeout (or a function's, 10 s at most) twice, and more.
    const leaseMs = 2 * Math.max(options.webhook.timeoutMs, 10_000) + 30_000;
    let head = await claimHead(database, ref, leaseMs);
    for (let made = 1; ; made++) {
      if (head.kind === 'none') return;
      if (head.kind === 'waiting') return this.again(ref, { runAt: head.at });
      // Another job's attempt: it goes on with the stream; come back when its claim lapses, in case it died.
      if (head.kind === 'claimed') return this.again(ref, { runAt: head.until, key: 'claimed' });
      // The trigger or its secrets changed since it was read: the delivery goes where it points now.
      if (head.stamp !== target.stamp) {
        target = await this.target(ref);
        if (!target) return;
      }
      const outcome = await this.attempt(ref, target, head.delivery, signal);
      const next = await this.record(ref, head.delivery, outcome, made < options.batch ? leaseMs : undefined);
      if (next === 'stop') return;
      // Enough for one job: the streams waiting behind it get their turn.
      if (next === 'yield') return this.again(ref);
      head = next;
    }
  }

  /**
   * The trigger as it is now, if its deliveries are to be attempted: none when it was deleted (its
   * deliveries went with it) or disabled (matched before the dispatcher heard, and discarded like
   * the rest; a claim this job holds goes with its delivery).
   */
  private async target(ref: StreamRef): Promise<DeliveryTarget | undefined> {
    const { database } = this.dependencies;
    const target = await deliveryTarget(database, ref);
    if (target && !target.enabled) {
      await database.withWorkspace(ref.workspaceId, (scope) => discardPending(scope, ref.triggerId, ref.stream));
      return undefined;
    }
    return target;
  }

  private again(ref: StreamRef, options: Parameters<typeof drainJob>[1] = {}): Promise<void> {
    return this.dependencies.database.outsideWorkspaces((transaction) =>
      addJobs(transaction, [drainJob(ref, options)]),
    );
  }

  private async attempt(
    ref: StreamRef,
    target: DeliveryTarget,
    head: PendingDelivery,
    signal: AbortSignal,
  ): Promise<ActionOutcome> {
    const { sealer, functions } = this.dependencies;
    const attempt: ActionAttempt = {
      workspaceId: ref.workspaceId,
      triggerId: ref.triggerId,
      deliveryId: head.id,
      attempt: head.attempts + 1,
      event: head.event,
      signal,
    };
    const open = (sealed: string) => sealer.open(sealed);
    if (target.action.type === 'webhook') {
      // Sealed under another key (ADMIN_API_KEY changed), a value never opens: trying again cannot
      // help, and the job must not fail for ever. A rotated secret signs while older ones do not open.
      const unopened = { ok: false, latencyMs: 0, retry: false } as const;
      const secrets = target.sealedSecrets.flatMap((sealed) => {
        try {
          return [open(sealed)];
        } catch {
          return [];
        }
      });
      if (!secrets.length)
        return { ...unopened, error: 'no signing secret could be opened (was ADMIN_API_KEY changed?)' };
      let body: string;
      try {
        body = webhookBody(head.event, open);
      } catch {
        return { ...unopened, error: "the event's sealed values could not be opened (was ADMIN_API_KEY changed?)" };
      }
      return this.webhook.deliver(target.action.url, secrets, attempt, body);
    }
    const started = performance.now();
    try {
      return await functions.run(target.action.function, attempt);
    } catch (error) {
      if (signal.aborted) throw error;
      const message = error instanceof Error ? error.message : String(error);
      return { ok: false, latencyMs: Math.round(performance.now() - started), error: message, retry: true };
    }
  }

  /**
   * Writes the attempt and, when the stream goes on, claims its next delivery in the same
   * transaction (`leaseMs`); `stop` when it does not (a retry is scheduled, the trigger was
   * disabled, another job wrote this attempt), `yield` when this job has done its share.
   */
  private async record(
    ref: StreamRef,
    head: PendingDelivery,
    outcome: ActionOutcome,
    leaseMs: number | undefined,
  ): Promise<Head | 'stop' | 'yield'> {
    const { database, events, changes, logger, options } = this.dependencies;
    const failed = head.attempts + 1 - head.roundStart;
    const delayMs =
      outcome.ok || !outcome.retry ? undefined : nextDelay(options.retrySchedule, failed, outcome.retryAfterMs);
    const spent = !outcome.ok && outcome.retry && delayMs === undefined;
    const disable = outcome.ok
      ? undefined
      : (outcome.disable ??
        (spent ? `every attempt of a delivery failed (${failed} attempts); the last: ${outcome.error}` : undefined));
    let disabled = false;
    const next = await database.withWorkspace(ref.workspaceId, async (scope): Promise<Head | 'stop' | 'yield'> => {
      const status =
        delayMs !== undefined
          ? ({ status: 'pending', delayMs } as const)
          : ({ status: outcome.ok ? 'delivered' : 'failed' } as const);
      const written = await recordAttempt(scope, head, outcome, status);
      if (!written) return 'stop';
      if (written.nextAttemptAt) await addJobs(scope, [drainJob(ref, { runAt: written.nextAttemptAt })]);
      if (disable) {
        const trigger = await disableTrigger(scope, ref.triggerId, disable);
        if (trigger) {
          disabled = true;
          await events.appendIn(scope, system, [
            {
              type: 'trigger.disabled',
              data: { triggerId: ref.triggerId, name: trigger.name, reason: disable, deliveryId: head.id },
            },
          ]);
          await changes.announce(scope, { topic: 'trigger', workspaceId: ref.workspaceId });
        }
      }
      if (written.nextAttemptAt || disable) return 'stop';
      return leaseMs === undefined ? 'yield' : claimHeadIn(scope, ref, leaseMs);
    });
    if (disabled) {
      changes.apply({ topic: 'trigger', workspaceId: ref.workspaceId });
      events.committed(ref.workspaceId);
      logger.warn({ workspaceId: ref.workspaceId, triggerId: ref.triggerId, reason: disable }, 'disabled a trigger');
    }
    return next;
  }
}
