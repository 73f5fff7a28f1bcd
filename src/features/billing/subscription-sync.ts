import type { Logger } from 'pino';
import type Stripe from 'stripe';
import type { ChangeBus } from '../../db/changes.ts';
import type { Database } from '../../db/database.ts';
import type { Plans } from '../../policy/plans.ts';
import type { BillingStatus } from '../../policy/standing.ts';
import { stripeStore, type SubscriptionState } from './billing-store.ts';
import { planOfPrice } from './stripe-catalog.ts';

export type SyncOutcome = 'applied' | 'unchanged' | 'duplicate' | 'unknown_customer' | 'no_subscription';

/** Subscriptions that started; incomplete ones never did (their first payment is still owed). */
const started = new Set(['trialing', 'active', 'past_due', 'unpaid', 'paused', 'canceled']);
const live = new Set(['trialing', 'active', 'past_due', 'unpaid', 'paused']);

/** Stripe's statuses in Cordon's words: a paused subscription (a trial ended unpaid) is read-only like unpaid. */
const statusOf = (status: Stripe.Subscription.Status): BillingStatus =>
  status === 'paused' ? 'unpaid' : (status as BillingStatus);

/**
 * The one way Stripe's state reaches a workspace, for webhooks and reconciliation alike: the
 * customer's subscriptions are read again from Stripe, under a lock on the workspace's billing
 * row, and the current one is written. What an event says is never applied, only that something
 * changed: so delivery order, duplicates and events of the same second do not matter, and the
 * last sync to commit has read Stripe last. An event's id is stored in the same transaction, so
 * an event is applied once.
 */
export class SubscriptionSync {
  private readonly stripe: Stripe;
  private readonly database: Database;
  private readonly changes: ChangeBus;
  private readonly plans: Plans;
  private readonly logger: Logger;
  private readonly graceDays: number;

  constructor(
    stripe: Stripe,
    options: { database: Database; changes: ChangeBus; plans: Plans; logger: Logger; graceDays: number },
  ) {
    this.stripe = stripe;
    this.database = options.database;
    this.changes = options.changes;
    this.plans = options.plans;
    this.logger = options.logger;
    this.graceDays = options.graceDays;
  }

  async apply(customer: string, event?: { id: string; type: string }): Promise<SyncOutcome> {
    const workspaceId = await stripeStore.workspaceOf(this.database, customer);
    if (!workspaceId) {
      this.logger.warn(
        { customer, event: event?.id, type: event?.type },
        'Stripe event for an unknown customer: ignored',
      );
      return 'unknown_customer';
    }
    const change = { topic: 'billing', workspaceId } as const;
    const outcome = await this.database.withWorkspace(workspaceId, async (scope): Promise<SyncOutcome> => {
      if (event && !(await stripeStore.recordEvent(scope, event))) return 'duplicate';
      await stripeStore.lock(scope);
      const stored = (await stripeStore.customer(scope)).subscription;
      const state = await this.current(customer, stored);
      if (!state) return 'no_subscription';
      if (!(await stripeStore.apply(scope, state, this.graceDays))) return 'unchanged';
      await this.changes.announce(scope, change);
      return 'applied';
    });
    if (outcome === 'applied') this.changes.apply(change);
    return outcome;
  }

  /**
   * The customer's current subscription: the newest live one, else the stored one if it ended. An
   * ended subscription that is not the stored one is never applied: the platform admin may have
   * assigned a plan since (stored id null), or another subscription took its place.
   */
  private async current(customer: string, stored: string | null): Promise<SubscriptionState | undefined> {
    const subscriptions: Stripe.Subscription[] = [];
    for await (const subscription of this.stripe.subscriptions.list({ customer, status: 'all', limit: 100 })) {
      if (started.has(subscription.status)) subscriptions.push(subscription);
    }
    const newest = subscriptions
      .filter((subscription) => live.has(subscription.status))
      .sort((a, b) => b.created - a.created)[0];
    const subscription = newest ?? subscriptions.find((ended) => ended.id === stored);
    return subscription && this.stateOf(subscription);
  }

  private stateOf(subscription: Stripe.Subscription): SubscriptionState | undefined {
    const items = subscription.items.data;
    const priced = items.map((item) => planOfPrice(item.price)).find((found) => found !== undefined);
    if (!priced || !this.plans.find(priced.plan)) {
      this.logger.warn(
        { subscription: subscription.id, prices: items.map((item) => item.price.id) },
        'Stripe subscription without a price of a known plan: not applied',
      );
      return undefined;
    }
    // Since API version 2025-03-31 the period lives on each item.
    const periodEnd = Math.max(...items.map((item) => item.current_period_end));
    const endedAt = subscription.ended_at ? new Date(subscription.ended_at * 1000) : null;
    const status = statusOf(subscription.status);
    return {
      plan: priced.plan,
      status,
      interval: priced.interval,
      subscriptionId: subscription.id,
      // A canceled subscription's plan holds until it ended: at once, or at the end of its period.
      currentPeriodEnd: status === 'canceled' && endedAt ? endedAt : new Date(periodEnd * 1000),
      cancelAtPeriodEnd: subscription.cancel_at_period_end || subscription.cancel_at !== null,
      endedAt,
    };
  }
}
