import type { Logger } from 'pino';
import Stripe from 'stripe';
import type { Plan, Plans } from '../../policy/plans.ts';

export const intervals = ['month', 'year'] as const;
export type Interval = (typeof intervals)[number];

/** The lookup_key of a plan's price: how Cordon finds its prices in Stripe and maps them back to plans. */
export const lookupKeyOf = (plan: string, interval: Interval) => `cordon_${plan}_${interval}`;

export function planOfLookupKey(key: string | null | undefined): { plan: string; interval: Interval } | undefined {
  const match = /^cordon_([a-z0-9][a-z0-9-]*)_(month|year)$/.exec(key ?? '');
  return match ? { plan: match[1]!, interval: match[2] as Interval } : undefined;
}

const productIdOf = (plan: string) => `cordon_${plan}`;

const planPattern = /^[a-z0-9][a-z0-9-]*$/;
const isInterval = (value: unknown): value is Interval => value === 'month' || value === 'year';

/**
 * The plan and interval a subscription's price stands for. A price keeps its metadata
 * (`cordon_plan`, `cordon_interval`, set when Cordon created it) and its product (`cordon_<plan>`)
 * for ever, but loses its lookup_key when a new amount takes the key over: subscribers on the old
 * price must still map to their plan. The lookup_key is the fallback for prices made by hand.
 */
export function planOfPrice(
  price: Pick<Stripe.Price, 'metadata' | 'product' | 'recurring' | 'lookup_key'>,
): { plan: string; interval: Interval } | undefined {
  const { cordon_plan: plan, cordon_interval: interval } = price.metadata ?? {};
  if (plan && planPattern.test(plan) && isInterval(interval)) return { plan, interval };
  const product = typeof price.product === 'string' ? price.product : price.product?.id;
  const fromProduct = /^cordon_([a-z0-9][a-z0-9-]*)$/.exec(product ?? '');
  const recurring = price.recurring;
  if (fromProduct && recurring?.interval_count === 1 && isInterval(recurring.interval)) {
    return { plan: fromProduct[1]!, interval: recurring.interval };
  }
  return planOfLookupKey(price.lookup_key);
}

interface Wanted {
  plan: Plan;
  interval: Interval;
  key: string;
  amount: number;
}

const isStripeError = (error: unknown, code: string) =>
  error instanceof Stripe.errors.StripeError && (error.code === code || error.type === code);

/**
 * Products and prices of the paid plans in Stripe, found by lookup_key and created when missing.
 * Safe with several instances starting at once: a product has a chosen id (a second create is
 * "already exists"), and a price's Idempotency-Key is derived from plan, interval, amount and
 * currency, so racing creates get the same price. A price whose amount changed in the plans file
 * is replaced by a new one that takes over the lookup_key (`transfer_lookup_key`); subscriptions
 * keep the price they have. A plan that costs nothing in an interval has no price for it.
 */
export class StripeCatalog {
  private readonly stripe: Stripe;
  private readonly plans: Plans;
  private readonly logger: Logger;
  private readonly meterEventName: string;
  /** lookup_key → price id, as synced or looked up. */
  private readonly prices = new Map<string, string>();
  /** Whether a sync has completed: the start's may have failed (Stripe down), and is then made up later. */
  private synced = false;

  constructor(stripe: Stripe, plans: Plans, options: { logger: Logger; meterEventName: string }) {
    this.stripe = stripe;
    this.plans = plans;
    this.logger = options.logger;
    this.meterEventName = options.meterEventName;
  }

  private wanted(): Wanted[] {
    return this.plans.all.flatMap((plan) =>
      intervals
        .filter((interval) => plan.prices[interval] > 0)
        .map((interval) => ({ plan, interval, key: lookupKeyOf(plan.id, interval), amount: plan.prices[interval] })),
    );
  }

  async sync(): Promise<void> {
    const wanted = this.wanted();
    const found = await this.find(wanted.map((entry) => entry.key));
    for (const entry of wanted) {
      const price = found.get(entry.key);
      if (price && matches(price, entry)) {
        this.prices.set(entry.key, price.id);
        continue;
      }
      const created = await this.createPrice(entry, price !== undefined);
      this.prices.set(entry.key, created.id);
      this.logger.info({ lookupKey: entry.key, price: created.id }, 'Stripe price created');
    }
    await this.meter();
    this.synced = true;
  }

  /** The sync the start could not do, before anything that needs the catalog (the meter's events). */
  async syncIfNeeded(): Promise<void> {
    if (!this.synced) await this.sync();
  }

  /** The Billing Meter API calls are reported to (sum of `value` per customer), made when missing. */
  private async meter(): Promise<void> {
    const active = async () =>
      (await this.stripe.billing.meters.list({ status: 'active', limit: 100 })).data.some(
        (meter) => meter.event_name === this.meterEventName,
      );
    if (await active()) return;
    try {
      await this.stripe.billing.meters.create(
        {
          display_name: 'Cordon API calls',
          event_name: this.meterEventName,
          default_aggregation: { formula: 'sum' },
          customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
          value_settings: { event_payload_key: 'value' },
        },
        { idempotencyKey: `cordon-meter-${this.meterEventName}` },
      );
      this.logger.info({ eventName: this.meterEventName }, 'Stripe billing meter created');
    } catch (error) {
      if (!(await active())) throw error;
    }
  }

  /** The price to check out a plan in an interval: synced at start, or looked up (another instance made it). */
  async priceFor(plan: string, interval: Interval): Promise<string | undefined> {
    const key = lookupKeyOf(plan, interval);
    if (!this.prices.has(key)) {
      const price = (await this.find([key])).get(key);
      if (price?.active) this.prices.set(key, price.id);
      else await this.sync();
    }
    return this.prices.get(key);
  }

  /** Active prices by lookup_key, ten keys a request (Stripe's limit). */
  private async find(keys: string[]): Promise<Map<string, Stripe.Price>> {
    const found = new Map<string, Stripe.Price>();
    for (let start = 0; start < keys.length; start += 10) {
      const page = await this.stripe.prices.list({
        lookup_keys: keys.slice(start, start + 10),
        active: true,
        limit: 100,
      });
      for (const price of page.data) if (price.lookup_key) found.set(price.lookup_key, price);
    }
    return found;
  }

  private async createPrice(entry: Wanted, takeOver: boolean): Promise<Stripe.Price> {
    const product = await this.product(entry.plan);
    const idempotencyKey = `cordon-price-${entry.key}-${entry.amount}-${entry.plan.currency}`;
    try {
      return await this.stripe.prices.create(
        {
          product,
          currency: entry.plan.currency,
          unit_amount: entry.amount,
          recurring: { interval: entry.interval },
          lookup_key: entry.key,
          transfer_lookup_key: takeOver,
          nickname: `${entry.plan.name} (${entry.interval}ly)`,
          metadata: { cordon_plan: entry.plan.id, cordon_interval: entry.interval },
        },
        { idempotencyKey },
      );
    } catch (error) {
      // Another instance got there first under another key (its saved key expired) or at the same moment.
      const price = (await this.find([entry.key])).get(entry.key);
      if (price && matches(price, entry)) return price;
      throw error;
    }
  }

  /** The plan's product, with the chosen id `cordon_<plan>`. */
  private async product(plan: Plan): Promise<string> {
    const id = productIdOf(plan.id);
    try {
      await this.stripe.products.create(
        { id, name: `Cordon ${plan.name}`, metadata: { cordon_plan: plan.id } },
        { idempotencyKey: `cordon-product-${plan.id}` },
      );
    } catch (error) {
      if (!isStripeError(error, 'resource_already_exists')) throw error;
    }
    return id;
  }
}

function matches(price: Stripe.Price, entry: Wanted): boolean {
  return (
    price.active &&
    price.unit_amount === entry.amount &&
    price.currency === entry.plan.currency &&
    price.recurring?.interval === entry.interval &&
    price.recurring.interval_count === 1
  );
}
