import { planOf } from './billing.ts';
import { StripeApiError } from './errors.ts';
import { boolean, integer, mergeMetadata, object, strings, text, type Params } from './params.ts';
import type { Customer, Price, Product } from './shapes.ts';
import { newId, type ApiCall, type StripeState } from './state.ts';

export function createCustomer({ state, params }: ApiCall): Customer {
  return state.add<Customer>({
    id: newId('cus_', 14),
    object: 'customer',
    address: null,
    balance: 0,
    created: state.now(),
    currency: null,
    default_source: null,
    delinquent: false,
    description: text(params, 'description') ?? null,
    email: text(params, 'email') ?? null,
    invoice_prefix: newId('', 8).toUpperCase(),
    invoice_settings: { custom_fields: null, default_payment_method: null, footer: null, rendering_options: null },
    livemode: false,
    metadata: mergeMetadata({}, params),
    name: text(params, 'name') ?? null,
    phone: text(params, 'phone') ?? null,
    preferred_locales: [],
    shipping: null,
    tax_exempt: 'none',
    test_clock: null,
  });
}

export function updateCustomer({ state, params, id }: ApiCall): Customer {
  const customer = state.require('customer', id);
  const metadata = mergeMetadata(customer.metadata, params);
  const fields = (['name', 'email', 'description', 'phone'] as const).map(
    (field) => [field, text(params, field)] as const,
  );
  customer.metadata = metadata;
  for (const [field, value] of fields) {
    if (value !== undefined) customer[field] = value === '' ? null : value;
  }
  return customer;
}

export function listCustomers({ state, params }: ApiCall) {
  const email = text(params, 'email');
  const customers = state.all('customer').filter((customer) => email === undefined || customer.email === email);
  return state.page(customers, params, '/v1/customers');
}

export function createProduct({ state, params }: ApiCall): Product {
  const id = text(params, 'id') ?? newId('prod_', 14);
  // A chosen id that is taken: 400 `Product already exists.` (stripe/stripe-go#1774).
  if (state.objects.has(id)) {
    throw StripeApiError.invalidRequest('Product already exists.', { code: 'resource_already_exists', param: 'id' });
  }
  const now = state.now();
  return state.add<Product>({
    id,
    object: 'product',
    active: boolean(params, 'active') ?? true,
    created: now,
    default_price: null,
    description: text(params, 'description') ?? null,
    images: [],
    livemode: false,
    marketing_features: [],
    metadata: mergeMetadata({}, params),
    name: text(params, 'name', true),
    package_dimensions: null,
    shippable: null,
    tax_code: null,
    type: 'service',
    unit_label: null,
    updated: now,
    url: null,
  });
}

export function updateProduct({ state, params, id }: ApiCall): Product {
  const product = state.require('product', id);
  const metadata = mergeMetadata(product.metadata, params);
  const name = text(params, 'name');
  const active = boolean(params, 'active');
  product.metadata = metadata;
  product.name = name ?? product.name;
  product.active = active ?? product.active;
  product.updated = state.now();
  return product;
}

export function listProducts({ state, params }: ApiCall) {
  const active = boolean(params, 'active');
  const ids = strings(params, 'ids');
  const products = state
    .all('product')
    .filter((product) => active === undefined || product.active === active)
    .filter((product) => ids.length === 0 || ids.includes(product.id));
  return state.page(products, params, '/v1/products');
}

const intervals = ['day', 'week', 'month', 'year'] as const;

export function createPrice(call: ApiCall): Price {
  const { state, params } = call;
  const unitAmount = integer(params, 'unit_amount');
  if (unitAmount === undefined) throw StripeApiError.missingParam('unit_amount');
  const currency = text(params, 'currency', true).toLowerCase();
  const recurringParams = object(params, 'recurring');
  const recurring = recurringParams ? readRecurring(recurringParams) : null;
  const lookup = lookupKey(state, params);
  const productData = object(params, 'product_data');
  const product = productData
    ? createProduct({ ...call, params: productData }).id
    : state.require('product', text(params, 'product', true), 'product').id;
  const price = state.add<Price>({
    id: newId('price_'),
    object: 'price',
    active: boolean(params, 'active') ?? true,
    billing_scheme: 'per_unit',
    created: state.now(),
    currency,
    custom_unit_amount: null,
    livemode: false,
    lookup_key: null,
    metadata: mergeMetadata({}, params),
    nickname: text(params, 'nickname') ?? null,
    product,
    recurring,
    tax_behavior: 'unspecified',
    tiers_mode: null,
    transform_quantity: null,
    type: recurring ? 'recurring' : 'one_time',
    unit_amount: unitAmount,
    unit_amount_decimal: String(unitAmount),
  });
  moveLookupKey(price, lookup);
  // The price that gave its key up keeps its metadata and product; its subscribers see it without the key.
  if (lookup.holder) refreshItems(state, lookup.holder);
  return price;
}

function readRecurring(recurring: Params): NonNullable<Price['recurring']> {
  const interval = text(recurring, 'interval', true, 'recurring[interval]');
  if (!intervals.includes(interval as (typeof intervals)[number])) {
    throw StripeApiError.invalidParam(
      'recurring[interval]',
      'Invalid recurring[interval]: must be one of day, week, month, or year',
    );
  }
  return {
    interval: interval as (typeof intervals)[number],
    interval_count: integer(recurring, 'interval_count', 'recurring[interval_count]') ?? 1,
    meter: text(recurring, 'meter') ?? null,
    trial_period_days: null,
    usage_type: text(recurring, 'usage_type') === 'metered' ? 'metered' : 'licensed',
  };
}

interface LookupKeyChange {
  key: string | undefined;
  holder: Price | undefined;
}

/**
 * A lookup key names one price in the account: taking a used one fails with "A price (`price_…`)
 * already uses that lookup key." unless `transfer_lookup_key` moves it (docs.stripe.com/api/prices/create;
 * the message as Stripe sends it: qiita.com/hideokamoto/items/fed4a7caba36585dccee).
 */
function lookupKey(state: StripeState, params: Params, priceId?: string): LookupKeyChange {
  const key = text(params, 'lookup_key');
  if (key === undefined || key === '') return { key, holder: undefined };
  if (key.length > 200) {
    throw StripeApiError.invalidParam('lookup_key', 'Invalid lookup_key: must be at most 200 characters');
  }
  const holder = state.all('price').find((other) => other.lookup_key === key && other.id !== priceId);
  if (holder && !boolean(params, 'transfer_lookup_key')) {
    throw StripeApiError.invalidRequest(`A price (\`${holder.id}\`) already uses that lookup key.`, {
      param: 'lookup_key',
    });
  }
  return { key, holder };
}

function moveLookupKey(price: Price, { key, holder }: LookupKeyChange): void {
  if (key === undefined) return;
  if (holder) holder.lookup_key = null;
  price.lookup_key = key === '' ? null : key;
}

export function updatePrice({ state, params, id }: ApiCall): Price {
  const price = state.require('price', id);
  const lookup = lookupKey(state, params, price.id);
  const metadata = mergeMetadata(price.metadata, params);
  const active = boolean(params, 'active');
  const nickname = text(params, 'nickname');
  price.metadata = metadata;
  price.active = active ?? price.active;
  price.nickname = nickname ?? price.nickname;
  moveLookupKey(price, lookup);
  refreshItems(state, price);
  if (lookup.holder) refreshItems(state, lookup.holder);
  return price;
}

/** Subscription items show their price as it is now. */
function refreshItems(state: StripeState, price: Price): void {
  for (const subscription of state.all('subscription')) {
    for (const item of subscription.items.data) {
      if (item.price.id !== price.id) continue;
      item.price = structuredClone(price);
      item.plan = planOf(price);
    }
  }
}

/** `lookup_keys` matches archived prices too unless `active` is given (zenn.dev/digitalcube/articles/7a90c1f1ea51b5). */
export function listPrices({ state, params }: ApiCall) {
  const active = boolean(params, 'active');
  const lookupKeys = strings(params, 'lookup_keys');
  if (lookupKeys.length > 10) throw StripeApiError.invalidParam('lookup_keys', 'You may pass at most 10 lookup_keys.');
  const product = text(params, 'product');
  const currency = text(params, 'currency');
  const type = text(params, 'type');
  const prices = state
    .all('price')
    .filter((price) => active === undefined || price.active === active)
    .filter((price) => lookupKeys.length === 0 || (price.lookup_key !== null && lookupKeys.includes(price.lookup_key)))
    .filter((price) => product === undefined || price.product === product)
    .filter((price) => currency === undefined || price.currency === currency)
    .filter((price) => type === undefined || price.type === type);
  return state.page(prices, params, '/v1/prices');
}
