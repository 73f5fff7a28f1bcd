import { randomBytes } from 'node:crypto';
import Stripe from 'stripe';
import { StripeApiError } from './errors.ts';
import { integer, strings, text, type Params } from './params.ts';
import type { List, MeterEvent, Stored, StoredObject, StripeEvent } from './shapes.ts';

const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';

/** An id in Stripe's style: a prefix and random base62 (`cus_Na6dX7aXxi11N4`). */
export function newId(prefix: string, length = 24): string {
  const bytes = randomBytes(length);
  let id = '';
  for (const byte of bytes) id += alphabet[byte % alphabet.length];
  return `${prefix}${id}`;
}

/** What the API call that caused an event looked like (Event.request). */
export interface RequestOrigin {
  id: string | null;
  idempotency_key: string | null;
}

export interface AcceptedMeterEvent extends MeterEvent {
  /** The active meter whose event_name matched, or null: Stripe accepts the event and reports it later. */
  meter: string | null;
}

/** One API request as a handler sees it: the decoded params, the id in the path, and its origin. */
export interface ApiCall {
  state: StripeState;
  params: Params;
  id: string;
  origin: RequestOrigin;
}

/** Side data Stripe keeps on a checkout session but does not show on the object. */
export interface CheckoutIntent {
  lineItems: { price: string; quantity: number }[];
  subscriptionMetadata: Record<string, string>;
  trialPeriodDays: number | null;
}

/** Everything the stand-in knows, in creation order. */
export class StripeState {
  readonly apiVersion = Stripe.API_VERSION;
  readonly objects = new Map<string, StoredObject>();
  readonly events: StripeEvent[] = [];
  readonly meterEvents: AcceptedMeterEvent[] = [];
  readonly checkoutIntents = new Map<string, CheckoutIntent>();
  /** Customers whose next charges a test has chosen to decline. */
  readonly declinedCustomers = new Set<string>();
  /** The account's default customer portal configuration, named by every portal session. */
  readonly portalConfiguration = newId('bpc_');
  readonly baseUrl: string;
  private readonly clock: () => number;

  constructor(baseUrl: string, clock: () => number) {
    this.baseUrl = baseUrl;
    this.clock = clock;
  }

  /** Seconds since the epoch, as every Stripe timestamp. */
  now(): number {
    return Math.floor(this.clock());
  }

  add<T extends StoredObject>(object: T): T {
    this.objects.set(object.id, object);
    return object;
  }

  get<K extends keyof Stored>(kind: K, id: string): Stored[K] | undefined {
    const found = this.objects.get(id);
    return found && found.object === kind ? (found as Stored[K]) : undefined;
  }

  /** The object or Stripe's resource_missing error (`No such price: 'x'`, param named). */
  require<K extends keyof Stored>(kind: K, id: string, param = 'id'): Stored[K] {
    const found = this.get(kind, id);
    if (!found) throw StripeApiError.noSuch(kind, id, param);
    return found;
  }

  /** Objects of one kind, newest first, as Stripe lists them. */
  all<K extends keyof Stored>(kind: K): Stored[K][] {
    return [...this.objects.values()].filter((object) => object.object === kind).reverse() as Stored[K][];
  }

  /** Records a snapshot event of `object` as it is now; `previous` holds the old values of changed fields. */
  emit(
    type: StripeEvent['type'],
    object: StoredObject,
    previous?: Record<string, unknown>,
    request: RequestOrigin = { id: null, idempotency_key: null },
  ): StripeEvent {
    const data: StripeEvent['data'] = { object: structuredClone(object) };
    if (previous && Object.keys(previous).length > 0) data.previous_attributes = structuredClone(previous);
    const event: StripeEvent = {
      id: newId('evt_'),
      object: 'event',
      api_version: this.apiVersion,
      created: this.now(),
      data,
      livemode: false,
      pending_webhooks: 1,
      request,
      type,
    };
    this.events.push(event);
    return this.add(event);
  }

  /** A page of `items` (already filtered, newest first) per `limit`, `starting_after`, `ending_before`. */
  page<T extends { id: string }>(items: T[], params: Params, url: string): List<T> {
    const limit = integer(params, 'limit') ?? 10;
    if (limit < 1 || limit > 100) {
      throw StripeApiError.invalidParam('limit', 'This value must be between 1 and 100.', 'parameter_invalid_integer');
    }
    const after = text(params, 'starting_after');
    const before = text(params, 'ending_before');
    let start = 0;
    let end = items.length;
    if (after !== undefined) start = this.cursor(items, after, 'starting_after') + 1;
    if (before !== undefined) {
      end = this.cursor(items, before, 'ending_before');
      start = Math.max(start, end - limit);
    }
    const data = items.slice(start, Math.min(end, start + limit));
    const has_more = before !== undefined ? start > 0 : start + data.length < end;
    return { object: 'list', data, has_more, url };
  }

  private cursor(items: { id: string }[], id: string, param: string): number {
    const index = items.findIndex((item) => item.id === id);
    if (index < 0) throw StripeApiError.noSuch('object', id, param);
    return index;
  }

  /**
   * Answers `expand[]`: each dotted path replaces an id with its object, walking into lists
   * (`data.product` on a list of prices, `latest_invoice` on a subscription). Stripe allows only
   * documented expandable fields; the stand-in expands any id it holds.
   */
  expand<T>(value: T, params: Params): T {
    const paths = strings(params, 'expand');
    if (paths.length === 0) return structuredClone(value);
    const copy = structuredClone(value) as unknown;
    for (const path of paths) this.expandPath(copy, path.split('.'), path);
    return copy as T;
  }

  private expandPath(value: unknown, path: string[], whole: string): void {
    if (Array.isArray(value)) {
      for (const item of value) this.expandPath(item, path, whole);
      return;
    }
    if (typeof value !== 'object' || value === null || path.length === 0) return;
    const [head, ...rest] = path as [string, ...string[]];
    const holder = value as Record<string, unknown>;
    if (!(head in holder)) {
      throw StripeApiError.invalidRequest(`This property cannot be expanded (${whole}).`, { param: 'expand' });
    }
    const field = holder[head];
    if (typeof field === 'string') {
      const found = this.objects.get(field);
      if (found) holder[head] = structuredClone(found);
    }
    this.expandPath(holder[head], rest, whole);
  }
}
