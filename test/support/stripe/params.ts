import { StripeApiError } from './errors.ts';

/** A decoded form body or query: strings, nested objects (`a[b]=`) and arrays (`a[0]=`, `a[]=`). */
export type Param = string | Param[] | Params;
export interface Params {
  [key: string]: Param;
}

/**
 * Decodes Stripe's form encoding. stripe-node writes arrays with indices (`expand[0]=data.product`,
 * `line_items[0][price]=…`) and leaves brackets unencoded (esm/utils.js `stringifyRequestData`);
 * curl users write `expand[]=…`. Both are accepted, as Stripe accepts both.
 */
export function parseForm(text: string): Params {
  const root: Params = {};
  for (const [key, value] of new URLSearchParams(text)) {
    const path = keyPath(key);
    let container: Params = root;
    path.forEach((segment, index) => {
      const name = segment === '' ? String(Object.keys(container).length) : segment;
      if (index === path.length - 1) {
        container[name] = value;
        return;
      }
      const next = container[name];
      container = typeof next === 'object' && !Array.isArray(next) ? next : (container[name] = {});
    });
  }
  return arrays(root) as Params;
}

function keyPath(key: string): string[] {
  const open = key.indexOf('[');
  if (open < 0) return [key];
  const rest = key.slice(open).match(/\[([^\]]*)\]/g) ?? [];
  return [key.slice(0, open), ...rest.map((part) => part.slice(1, -1))];
}

/** Objects keyed 0…n-1 become arrays, except maps whose keys are the caller's own (metadata, payload). */
function arrays(value: Param, key = ''): Param {
  if (typeof value === 'string' || Array.isArray(value)) return value;
  const entries = Object.entries(value).map(([name, inner]) => [name, arrays(inner, name)] as const);
  const indexed = entries.length > 0 && entries.every(([name], index) => name === String(index));
  if (indexed && key !== 'metadata' && key !== 'payload') return entries.map(([, inner]) => inner);
  return Object.fromEntries(entries);
}

export function text(params: Params, key: string, required: true, label?: string): string;
export function text(params: Params, key: string, required?: false, label?: string): string | undefined;
export function text(params: Params, key: string, required = false, label = key): string | undefined {
  const value = params[key];
  if (value === undefined) {
    if (required) throw StripeApiError.missingParam(label);
    return undefined;
  }
  if (typeof value !== 'string') throw StripeApiError.invalidParam(label, `Invalid string: ${JSON.stringify(value)}`);
  return value;
}

export function integer(params: Params, key: string, label = key): number | undefined {
  const value = text(params, key, false, label);
  if (value === undefined) return undefined;
  if (!/^-?\d+$/.test(value)) throw StripeApiError.invalidParam(label, `Invalid integer: ${value}`);
  return Number(value);
}

export function boolean(params: Params, key: string, label = key): boolean | undefined {
  const value = text(params, key, false, label);
  if (value === undefined) return undefined;
  if (value !== 'true' && value !== 'false') throw StripeApiError.invalidParam(label, `Invalid boolean: ${value}`);
  return value === 'true';
}

export function object(params: Params, key: string, label = key): Params | undefined {
  const value = params[key];
  if (value === undefined || value === '') return undefined;
  if (typeof value === 'string' || Array.isArray(value)) {
    throw StripeApiError.invalidParam(label, `Invalid object`);
  }
  return value;
}

export function list(params: Params, key: string, label = key): Param[] {
  const value = params[key];
  if (value === undefined || value === '') return [];
  if (!Array.isArray(value)) throw StripeApiError.invalidParam(label, `Invalid array`);
  return value;
}

export function strings(params: Params, key: string, label = key): string[] {
  return list(params, key, label).map((value, index) => {
    if (typeof value !== 'string') throw StripeApiError.invalidParam(`${label}[${index}]`, `Invalid string`);
    return value;
  });
}

/**
 * Stripe's metadata update: keys are merged, an empty value unsets its key and an empty
 * `metadata` unsets them all (docs.stripe.com/api/metadata; stripe-node sends `null` as '').
 */
export function mergeMetadata(current: Record<string, string>, params: Params): Record<string, string> {
  if (params.metadata === '') return {};
  const patch = object(params, 'metadata');
  if (!patch) return current;
  const next = new Map(Object.entries(current));
  for (const [key, value] of Object.entries(patch)) {
    if (typeof value !== 'string') throw StripeApiError.invalidParam(`metadata[${key}]`, 'Invalid string');
    if (value === '') next.delete(key);
    else next.set(key, value);
  }
  return Object.fromEntries(next);
}
