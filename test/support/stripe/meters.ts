import { randomUUID } from 'node:crypto';
import { StripeApiError } from './errors.ts';
import { integer, object, text, type Params } from './params.ts';
import type { Meter, MeterEvent } from './shapes.ts';
import { newId, type ApiCall } from './state.ts';

const formulas = ['sum', 'count', 'last'] as const;
const day = 86_400;

export function createMeter({ state, params }: ApiCall): Meter {
  const displayName = text(params, 'display_name', true);
  const eventName = text(params, 'event_name', true);
  const aggregation = object(params, 'default_aggregation');
  if (!aggregation) throw StripeApiError.missingParam('default_aggregation');
  const formula = text(aggregation, 'formula', true, 'default_aggregation[formula]');
  if (!formulas.includes(formula as (typeof formulas)[number])) {
    throw StripeApiError.invalidParam('default_aggregation[formula]', 'Invalid default_aggregation[formula]');
  }
  const mapping = object(params, 'customer_mapping');
  const valueSettings = object(params, 'value_settings');
  // One active meter per event_name, as events are routed to meters by name. Not checked against
  // Stripe's own answer: the refusal's wording here is the stand-in's.
  if (state.all('billing.meter').some((meter) => meter.status === 'active' && meter.event_name === eventName)) {
    throw StripeApiError.invalidRequest(`An active meter already uses the event_name \`${eventName}\`.`, {
      param: 'event_name',
    });
  }
  const now = state.now();
  return state.add<Meter>({
    id: newId('mtr_test_', 32),
    object: 'billing.meter',
    created: now,
    customer_mapping: {
      event_payload_key: (mapping && text(mapping, 'event_payload_key')) ?? 'stripe_customer_id',
      type: 'by_id',
    },
    default_aggregation: { formula: formula as (typeof formulas)[number] },
    display_name: displayName,
    event_name: eventName,
    event_time_window: (text(params, 'event_time_window') as Meter['event_time_window'] | undefined) ?? null,
    livemode: false,
    status: 'active',
    status_transitions: { deactivated_at: null },
    updated: now,
    value_settings: { event_payload_key: (valueSettings && text(valueSettings, 'event_payload_key')) ?? 'value' },
  });
}

export function listMeters({ state, params }: ApiCall) {
  const status = text(params, 'status');
  const meters = state.all('billing.meter').filter((meter) => status === undefined || meter.status === status);
  return state.page(meters, params, '/v1/billing/meters');
}

/**
 * POST /v1/billing/meter_events. Stripe validates the request at once and the payload against the
 * meter later (an unknown event_name or customer is reported by `v1.billing.meter.error_report_triggered`,
 * not refused), so the stand-in accepts such events and records `meter: null`.
 * An identifier is unique over a rolling 24 hours at least; a repeat is refused with a 400
 * invalid_request_error carrying no `code`, only the message "An event already exists with
 * identifier …" (observed by langfuse/langfuse worker/src/ee/cloudUsageMetering tests, and a
 * stripe-node user's notes of 2026-07-30). The v2 API names the same refusal duplicate_meter_event.
 */
export function createMeterEvent({ state, params }: ApiCall): MeterEvent {
  const eventName = text(params, 'event_name', true);
  const payload = readPayload(params);
  const now = state.now();
  const timestamp = integer(params, 'timestamp') ?? now;
  // "Must be within the past 35 calendar days or up to 5 minutes in the future" (MeterEventCreateParams).
  if (timestamp < now - 35 * day) {
    throw StripeApiError.invalidParam(
      'timestamp',
      'Timestamp must be no more than 35 days in the past.',
      'parameter_invalid_integer',
    );
  }
  if (timestamp > now + 300) {
    throw StripeApiError.invalidParam(
      'timestamp',
      'Timestamp must be no more than 5 minutes in the future.',
      'parameter_invalid_integer',
    );
  }
  const identifier = text(params, 'identifier') ?? randomUUID();
  if (state.meterEvents.some((event) => event.identifier === identifier && event.created > now - day)) {
    throw StripeApiError.invalidRequest(`An event already exists with identifier ${identifier}.`);
  }
  const meter = state.all('billing.meter').find((m) => m.status === 'active' && m.event_name === eventName);
  const event: MeterEvent = {
    object: 'billing.meter_event',
    created: now,
    event_name: eventName,
    identifier,
    livemode: false,
    payload,
    timestamp,
  };
  state.meterEvents.push({ ...structuredClone(event), meter: meter?.id ?? null });
  return event;
}

function readPayload(params: Params): Record<string, string> {
  const payload = object(params, 'payload');
  if (!payload) throw StripeApiError.missingParam('payload');
  return Object.fromEntries(
    Object.entries(payload).map(([key, value]) => {
      if (typeof value !== 'string') throw StripeApiError.invalidParam(`payload[${key}]`, 'Invalid string');
      return [key, value];
    }),
  );
}
