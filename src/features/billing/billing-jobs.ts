import type { Logger } from 'pino';
import Stripe from 'stripe';
import type { Database } from '../../db/database.ts';
import { monthOf } from '../../policy/usage-meter.ts';
import { stripeStore } from './billing-store.ts';
import type { StripeCatalog } from './stripe-catalog.ts';
import type { SubscriptionSync } from './subscription-sync.ts';

const hourMillis = 3_600_000;

/** Stripe answers a meter event identifier it has seen (within 24 hours at least) with this refusal. */
const isDuplicateIdentifier = (error: unknown) =>
  error instanceof Stripe.errors.StripeInvalidRequestError && /already exists with identifier/i.test(error.message);

/** The meter event identifier of one workspace's calls in one month: what makes a retry harmless. */
export const meterIdentifier = (workspaceId: string, metric: string, period: string) =>
  `cordon_${metric}_${workspaceId}_${period}`;

/**
 * The recurring billing work on the job queue: reconciliation (every subscription read again,
 * missed webhooks repaired by the webhook's own apply), and API calls reported to Stripe's meter.
 */
export class BillingJobs {
  private readonly stripe: Stripe;
  private readonly database: Database;
  private readonly sync: SubscriptionSync;
  private readonly logger: Logger;
  private readonly meterEventName: string;
  private readonly catalog: Pick<StripeCatalog, 'syncIfNeeded'>;

  constructor(
    stripe: Stripe,
    options: {
      database: Database;
      sync: SubscriptionSync;
      catalog: Pick<StripeCatalog, 'syncIfNeeded'>;
      logger: Logger;
      meterEventName: string;
    },
  ) {
    this.stripe = stripe;
    this.database = options.database;
    this.sync = options.sync;
    this.catalog = options.catalog;
    this.logger = options.logger;
    this.meterEventName = options.meterEventName;
  }

  /** Every workspace with a Stripe customer, one after the other; one failure does not stop the rest. */
  async reconcile(): Promise<{ checked: number; repaired: number; failed: number }> {
    const totals = { checked: 0, repaired: 0, failed: 0 };
    for (const row of await stripeStore.customers(this.database)) {
      totals.checked += 1;
      try {
        if ((await this.sync.apply(row.stripe_customer_id)) === 'applied') totals.repaired += 1;
      } catch (error) {
        totals.failed += 1;
        this.logger.warn(
          { err: error, workspaceId: row.workspace_id },
          'billing reconciliation failed for a workspace',
        );
      }
    }
    if (totals.repaired || totals.failed) this.logger.info(totals, 'billing reconciled');
    if (totals.failed) throw new Error(`billing reconciliation failed for ${totals.failed} workspaces`);
    return totals;
  }

  /**
   * Last month's API calls, one meter event per workspace with the identifier of (workspace,
   * metric, month), reported once the month has been closed for an hour (the last flushes are in).
   * Marked reported afterwards; a run that dies between the two sends the same identifier again,
   * which Stripe refuses (or, within 24 hours, replays under the same Idempotency-Key).
   */
  async reportUsage(now = new Date()): Promise<{ reported: number }> {
    const before = monthOf(new Date(now.getTime() - hourMillis)).period;
    const since = monthOf(new Date(Date.parse(before) - 1)).period;
    let reported = 0;
    // Stripe drops meter events of an event name without a meter: a start that could not sync makes it now.
    await this.catalog.syncIfNeeded();
    for (const row of await stripeStore.unreportedUsage(this.database, since, before)) {
      const identifier = meterIdentifier(row.workspace_id, 'api_calls', row.period);
      try {
        await this.stripe.billing.meterEvents.create(
          {
            event_name: this.meterEventName,
            payload: { stripe_customer_id: row.stripe_customer_id, value: String(row.calls) },
            identifier,
          },
          { idempotencyKey: identifier },
        );
      } catch (error) {
        if (!isDuplicateIdentifier(error)) throw error;
      }
      await this.database.withWorkspace(row.workspace_id, (scope) => stripeStore.markReported(scope, row.period));
      reported += 1;
    }
    return { reported };
  }
}
