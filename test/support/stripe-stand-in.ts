import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import Stripe from 'stripe';
import { advancePeriod, cancel, completeCheckout, setSubscriptionStatus } from './stripe/controls.ts';
import type { SubscriptionStatus } from './stripe/lifecycle.ts';
import { ApiServer, type LoggedRequest } from './stripe/server.ts';
import type { Stored, StripeEvent } from './stripe/shapes.ts';
import { newId, StripeState, type AcceptedMeterEvent } from './stripe/state.ts';

export type { LoggedRequest, StripeEvent, AcceptedMeterEvent, SubscriptionStatus };

export interface StandInOptions {
  /** The secret key requests must carry; a fresh `sk_test_…` by default. */
  secretKey?: string;
  /** Milliseconds since the epoch, for every timestamp the stand-in writes; Date.now by default. */
  clock?: () => number;
}

export interface SendOptions {
  /** The endpoint's signing secret (`whsec_…`). */
  secret: string;
  /** Seconds since the epoch to sign with; the real now by default. An old one makes a stale delivery. */
  timestamp?: number;
  /** Alters the body after signing, as a forger would. */
  tamper?: (payload: string) => string;
}

/**
 * A local, stateful Stripe for tests: the v1 form-encoded API for what Cordon calls (customers,
 * products, prices by lookup_key, Checkout and portal sessions, subscriptions with items, invoices,
 * billing meters and meter events), Stripe-shaped errors, Idempotency-Key replay, and signed
 * webhook deliveries. Cordon talks to it only through the real `stripe` client:
 * `new Stripe(standIn.secretKey, standIn.clientOptions)`.
 *
 * Knowingly left out: prorations and their amounts, taxes, discounts, payment methods and
 * intents, payment/setup Checkout modes, line_items expansion on sessions, search endpoints,
 * test clocks, other API versions, Connect, and rejection of unknown parameters.
 */
export class StripeStandIn {
  readonly secretKey: string;
  readonly port: number;
  /** http://127.0.0.1:<port>, where Checkout and portal URLs point too. */
  readonly url: string;
  private readonly state: StripeState;
  private readonly api: ApiServer;
  private readonly server: Server;

  private constructor(server: Server, port: number, secretKey: string, clock: () => number) {
    this.server = server;
    this.port = port;
    this.url = `http://127.0.0.1:${port}`;
    this.secretKey = secretKey;
    this.state = new StripeState(this.url, () => clock() / 1000);
    this.api = new ApiServer(this.state, secretKey);
  }

  static async start(options: StandInOptions = {}): Promise<StripeStandIn> {
    const holder: { standIn?: StripeStandIn } = {};
    const server = createServer((request, response) => void holder.standIn!.api.handle(request, response));
    server.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const port = (server.address() as AddressInfo).port;
    const secretKey = options.secretKey ?? newId('sk_test_', 32);
    holder.standIn = new StripeStandIn(server, port, secretKey, options.clock ?? Date.now);
    return holder.standIn;
  }

  /** Options for `new Stripe(secretKey, …)`: this server, plain HTTP, no retries. */
  get clientOptions(): Stripe.StripeConfig {
    return { host: '127.0.0.1', port: this.port, protocol: 'http', maxNetworkRetries: 0 };
  }

  /** A real `stripe` client pointed at the stand-in, with the API version it pins. */
  client(): Stripe {
    return new Stripe(this.secretKey, this.clientOptions);
  }

  /** Every event generated so far, oldest first. */
  get events(): StripeEvent[] {
    return this.state.events;
  }

  /** Every meter event accepted (a refused duplicate is not here), with the meter it reached. */
  get meterEvents(): AcceptedMeterEvent[] {
    return this.state.meterEvents;
  }

  /** Every API request: method, path, idempotency key, params, status, whether it was a replay. */
  get requests(): LoggedRequest[] {
    return this.api.requests;
  }

  /** A copy of a stored object as the API would show it now, or undefined. */
  find<K extends keyof Stored>(kind: K, id: string): Stored[K] | undefined {
    const found = this.state.get(kind, id);
    return found && structuredClone(found);
  }

  /** The customer pays at Checkout: the subscription starts (metadata from subscription_data). */
  completeCheckout(sessionId: string, options: { status?: 'active' | 'trialing' } = {}): StripeEvent[] {
    return completeCheckout(this.state, sessionId, options.status);
  }

  setSubscriptionStatus(subscriptionId: string, status: SubscriptionStatus): StripeEvent[] {
    return setSubscriptionStatus(this.state, subscriptionId, status);
  }

  /**
   * The period ends: the renewal is paid, or fails when `paid: false` or the customer's payments are
   * declined; a subscription set to cancel at period end ends instead.
   */
  advancePeriod(subscriptionId: string, options: { paid?: boolean } = {}): StripeEvent[] {
    const customer = this.state.get('subscription', subscriptionId)?.customer as string | undefined;
    const declined = customer !== undefined && this.state.declinedCustomers.has(customer);
    return advancePeriod(this.state, subscriptionId, options.paid ?? !declined);
  }

  /** The customer's card is declined from now on (402 card_declined where a charge is immediate), or again accepted. */
  declinePayments(customerId: string, declined = true): void {
    if (declined) this.state.declinedCustomers.add(customerId);
    else this.state.declinedCustomers.delete(customerId);
  }

  /**
   * Until called again without one, requests `matches` picks (all, by default) are answered
   * `500 api_error` before anything runs, as in an outage of Stripe's.
   */
  outage(matches: ((method: string, path: string) => boolean) | false = () => true): void {
    this.api.outage = matches || undefined;
  }

  /** The customer cancels in the portal: now, or at the end of the period. */
  cancel(subscriptionId: string, options: { atPeriodEnd: boolean }): StripeEvent[] {
    return cancel(this.state, subscriptionId, options.atPeriodEnd);
  }

  /**
   * Delivers `event` as Stripe does: the JSON body signed in a `Stripe-Signature` header
   * (`t=…,v1=…`, HMAC-SHA256 over `${t}.${body}`) made by the client's own
   * `generateTestHeaderString`. Answers the endpoint's HTTP status.
   */
  async send(event: StripeEvent, url: string, options: SendOptions): Promise<number> {
    const payload = JSON.stringify(event, null, 2);
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret: options.secret,
      // Stripe signs at delivery time, which the receiver checks against its own clock.
      timestamp: options.timestamp ?? Math.floor(Date.now() / 1000),
    });
    const response = await fetch(url, {
      method: 'POST',
      headers: {
        'Content-Type': 'application/json; charset=utf-8',
        'Stripe-Signature': signature,
        'User-Agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
      },
      body: options.tamper ? options.tamper(payload) : payload,
    });
    await response.arrayBuffer();
    return response.status;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
