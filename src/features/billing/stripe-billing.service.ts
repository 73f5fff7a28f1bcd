import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import Stripe from 'stripe';
import type { Database } from '../../db/database.ts';
import { ProblemError } from '../../http/errors.ts';
import type { Caller } from '../../policy/access.ts';
import type { Plans } from '../../policy/plans.ts';
import { stripeStore } from './billing-store.ts';
import type { CheckoutBody, PortalBody } from './billing.schema.ts';
import { stripeFailure } from './stripe-client.ts';
import type { StripeCatalog } from './stripe-catalog.ts';
import type { SubscriptionSync } from './subscription-sync.ts';

/** The events Cordon's endpoint subscribes to; each only says "read this customer again". */
export const handledEvents = [
  'checkout.session.completed',
  'customer.subscription.created',
  'customer.subscription.updated',
  'customer.subscription.deleted',
  'invoice.paid',
  'invoice.payment_failed',
] as const;

const handled = new Set<string>(handledEvents);

/** A subscription that still bills: a second Checkout would start a second one (changes go through the portal). */
const subscribed = new Set(['trialing', 'active', 'past_due', 'unpaid']);
/** The same in Stripe's words: paused (a trial ended unpaid, stored as unpaid) resumes in the portal. */
const billing = new Set<string>([...subscribed, 'paused']);

const subscriptionExists = () =>
  new ProblemError(
    'subscription_exists',
    'The workspace has a subscription: change its plan in the customer portal (POST …/billing/portal)',
  );

const customerOf = (event: Stripe.Event): string | undefined => {
  const customer = (event.data.object as { customer?: string | { id: string } | null }).customer;
  return typeof customer === 'string' ? customer : (customer?.id ?? undefined);
};

/** Checkout, the customer portal and the webhook: the routes that talk to Stripe. */
export class StripeBilling {
  private readonly stripe: Stripe;
  private readonly database: Database;
  private readonly plans: Plans;
  private readonly catalog: StripeCatalog;
  private readonly sync: SubscriptionSync;
  private readonly webhookSecret: string;
  private readonly logger: Logger;

  constructor(
    stripe: Stripe,
    options: {
      database: Database;
      plans: Plans;
      catalog: StripeCatalog;
      sync: SubscriptionSync;
      webhookSecret: string;
      logger: Logger;
    },
  ) {
    this.stripe = stripe;
    this.database = options.database;
    this.plans = options.plans;
    this.catalog = options.catalog;
    this.sync = options.sync;
    this.webhookSecret = options.webhookSecret;
    this.logger = options.logger;
  }

  /** A Checkout Session for a paid plan; the subscription it starts carries the workspace id. */
  async checkout(caller: Caller, body: CheckoutBody): Promise<{ url: string }> {
    const plan = this.plans.find(body.plan);
    if (!plan || plan.prices[body.interval] === 0) {
      throw new ProblemError('validation_failed', `No paid plan "${body.plan}" billed by the ${body.interval}`, {
        errors: [{ pointer: '/plan', in: 'body', detail: 'must be a plan with a price for the interval' }],
      });
    }
    const current = await this.database.withWorkspace(caller.workspaceId, (scope) => stripeStore.customer(scope));
    if (current.subscription && subscribed.has(current.status)) throw subscriptionExists();
    try {
      // Our row lags the webhooks: a Checkout completed a moment ago has a subscription only Stripe knows of.
      if (current.customer && (await this.billingSubscription(current.customer))) throw subscriptionExists();
      const customer = await this.customerOf(caller.workspaceId, current.customer);
      const price = await this.catalog.priceFor(plan.id, body.interval);
      if (!price) throw new Error(`no Stripe price for ${plan.id} by the ${body.interval}`);
      const session = await this.stripe.checkout.sessions.create(
        {
          mode: 'subscription',
          customer,
          line_items: [{ price, quantity: 1 }],
          success_url: body.successUrl,
          cancel_url: body.cancelUrl,
          client_reference_id: caller.workspaceId,
          metadata: { workspace_id: caller.workspaceId },
          subscription_data: { metadata: { workspace_id: caller.workspaceId } },
        },
        { idempotencyKey: `cordon-checkout-${randomUUID()}` },
      );
      if (!session.url) throw new Error(`checkout session ${session.id} has no url`);
      return { url: session.url };
    } catch (error) {
      throw stripeFailure(error);
    }
  }

  /** Whether the customer has a subscription in Stripe that still bills (Stripe lists the not canceled ones). */
  private async billingSubscription(customer: string): Promise<boolean> {
    for await (const subscription of this.stripe.subscriptions.list({ customer, limit: 100 })) {
      if (billing.has(subscription.status)) return true;
    }
    return false;
  }

  async portal(caller: Caller, body: PortalBody): Promise<{ url: string }> {
    const current = await this.database.withWorkspace(caller.workspaceId, (scope) => stripeStore.customer(scope));
    try {
      const customer = await this.customerOf(caller.workspaceId, current.customer);
      const session = await this.stripe.billingPortal.sessions.create(
        { customer, return_url: body.returnUrl },
        { idempotencyKey: `cordon-portal-${randomUUID()}` },
      );
      return { url: session.url };
    } catch (error) {
      throw stripeFailure(error);
    }
  }

  /**
   * The workspace's one Stripe customer, created before its first Checkout and kept. Racing
   * creates share an Idempotency-Key derived from the workspace, so Stripe makes one customer,
   * and the row keeps the first id stored.
   */
  private async customerOf(workspaceId: string, known: string | null): Promise<string> {
    if (known) return known;
    const customer = await this.stripe.customers.create(
      { description: `Cordon workspace ${workspaceId}`, metadata: { workspace_id: workspaceId } },
      { idempotencyKey: `cordon-customer-${workspaceId}` },
    );
    return this.database.withWorkspace(workspaceId, (scope) => stripeStore.keepCustomer(scope, customer.id));
  }

  /**
   * A webhook delivery: the raw body's signature and timestamp (5 minutes) verified, then the
   * customer's subscription read again and applied with the event's id. Events of customers
   * Cordon did not create are acknowledged and logged; Stripe would retry anything else.
   */
  async receive(payload: Buffer, signature: string | undefined): Promise<{ received: true }> {
    let event: Stripe.Event;
    try {
      event = this.stripe.webhooks.constructEvent(payload, signature ?? '', this.webhookSecret);
    } catch (error) {
      if (!(error instanceof Stripe.errors.StripeSignatureVerificationError)) throw error;
      throw new ProblemError('webhook_signature_invalid', error.message);
    }
    if (!handled.has(event.type)) return { received: true };
    const customer = customerOf(event);
    if (!customer) {
      this.logger.warn({ event: event.id, type: event.type }, 'Stripe event without a customer: ignored');
      return { received: true };
    }
    // Stripe failing to answer the re-read is a 502: Stripe retries any non-2xx delivery.
    const outcome = await this.sync.apply(customer, { id: event.id, type: event.type }).catch((error: unknown) => {
      throw stripeFailure(error);
    });
    this.logger.info({ event: event.id, type: event.type, outcome }, 'Stripe event');
    return { received: true };
  }
}
