import { isIP } from 'node:net';
import { z } from 'zod';
import { refusingProtoKey } from '../../json.ts';
import { isPubliclyRoutable } from '../../auth/safe-fetch.ts';
import { pageQuery } from '../../http/cursor.ts';
import { structureName } from '../structures/structures.schema.ts';

/** What a trigger may subscribe to. */
export const triggerEvents = [
  'record_created',
  'record_updated',
  'record_deleted',
  'invitation.created',
  'notification.requested',
  'trigger.disabled',
] as const;
export type TriggerEvent = (typeof triggerEvents)[number];

export const recordEvents: ReadonlySet<string> = new Set(['record_created', 'record_updated', 'record_deleted']);

/** A function's name, as the functions feature stores it. */
const functionName = z
  .string()
  .regex(/^[a-z][a-z0-9-]{0,62}$/, 'must be lowercase letters, digits and "-", starting with a letter');

/**
 * What a webhook URL may be, from the configuration: https only in `production`; a literal
 * address that is not public only where `allowPrivateNetworks` (OUTBOUND_ALLOW_PRIVATE) — the
 * rule every delivery applies to the addresses a name resolves to.
 */
export interface WebhookUrlRules {
  production: boolean;
  allowPrivateNetworks: boolean;
}

/**
 * Where a webhook goes: https (plain http only outside production), no credentials in the URL,
 * and no literal address that is not public unless private networks are allowed. A name is
 * resolved, and refused if it leads to a private address, at every delivery (DNS may change):
 * see auth/safe-fetch.ts.
 */
function webhookUrl(rules: WebhookUrlRules) {
  return z
    .string()
    .max(2_048)
    .superRefine((value, context) => {
      const problem = urlProblem(value, rules);
      if (problem) context.addIssue({ code: 'custom', message: problem });
    });
}

function urlProblem(value: string, { production, allowPrivateNetworks }: WebhookUrlRules): string | undefined {
  if (!URL.canParse(value)) return 'must be a URL';
  const url = new URL(value);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && !production)) {
    return production ? 'must be an https URL' : 'must be an http or https URL';
  }
  if (url.username || url.password) return 'must not carry credentials';
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!allowPrivateNetworks && isIP(host) !== 0 && !isPubliclyRoutable(host)) return `${host} is not a public address`;
  return undefined;
}

const webhookAction = (rules: WebhookUrlRules) =>
  z.strictObject({ type: z.literal('webhook'), url: webhookUrl(rules) });
const functionAction = z.strictObject({ type: z.literal('function'), function: functionName });

export function triggerBody(rules: WebhookUrlRules) {
  return z.strictObject({
    name: z.string().trim().min(1).max(100),
    events: z
      .array(z.enum(triggerEvents))
      .min(1)
      .max(triggerEvents.length)
      .refine((events) => new Set(events).size === events.length, 'lists an event twice'),
    structure: structureName.nullish(),
    condition: refusingProtoKey(z.record(z.string(), z.unknown())).nullish(),
    enabled: z.boolean().default(true),
    action: z.discriminatedUnion('type', [webhookAction(rules), functionAction]),
  });
}
export type TriggerInput = z.output<ReturnType<typeof triggerBody>>;
export type TriggerAction = TriggerInput['action'];

export const triggerParams = z.object({ ws: z.string().min(1).max(100), id: z.string().min(1).max(100) });

const triggerActionResponse = z.discriminatedUnion('type', [
  z.object({ type: z.literal('webhook'), url: z.string() }),
  z.object({ type: z.literal('function'), function: z.string() }),
]);

export const triggerResponse = z.object({
  id: z.uuid(),
  name: z.string(),
  events: z.array(z.enum(triggerEvents)),
  structure: z.string().nullable(),
  condition: z.record(z.string(), z.unknown()).nullable(),
  enabled: z.boolean(),
  /** Why Cordon disabled it (410, retries spent); null when enabled or disabled by a user. */
  disabledReason: z.string().nullable(),
  action: triggerActionResponse,
  version: z.number().int(),
  createdAt: z.iso.datetime(),
  updatedAt: z.iso.datetime(),
});
export type TriggerResponse = z.output<typeof triggerResponse>;

const signingSecret = z.string().describe('The signing secret (whsec_…), shown this once');
export const createdTriggerResponse = triggerResponse.extend({ secret: signingSecret.optional() });
export type CreatedTriggerResponse = z.output<typeof createdTriggerResponse>;
export const triggerListResponse = z.object({
  data: z.array(triggerResponse),
  nextCursor: z.null(),
  count: z.number().int().optional(),
});

export const rotatedSecretResponse = z.object({
  secret: signingSecret,
  /** Until when deliveries are also signed with the secrets this one replaces. */
  previousSecretExpiresAt: z.iso.datetime(),
});
export type RotatedSecretResponse = z.output<typeof rotatedSecretResponse>;

export const deliveryStatuses = ['pending', 'delivered', 'failed', 'discarded'] as const;

export const deliveriesQuery = pageQuery.extend({ status: z.enum(deliveryStatuses).optional() });
export type DeliveriesQuery = z.output<typeof deliveriesQuery>;

export const deliveryParams = z.object({ ws: z.string().min(1).max(100), id: z.string().min(1).max(100) });

export const attemptResponse = z.object({
  attempt: z.number().int(),
  at: z.iso.datetime(),
  statusCode: z.number().int().nullable(),
  error: z.string().nullable(),
  /** The start of the receiver's answer (4 KB at most). */
  responseBody: z.string().nullable(),
  latencyMs: z.number().int(),
  nextAttemptAt: z.iso.datetime().nullable(),
});

export const deliveryResponse = z.object({
  id: z.uuid().describe('Also the webhook-id header: the same for every attempt, for receivers to deduplicate'),
  triggerId: z.uuid(),
  eventId: z.uuid(),
  eventSeq: z.string(),
  eventType: z.string(),
  /** Deliveries of one stream (a record, or else one event) go out one at a time, in seq order. */
  stream: z.string(),
  status: z.enum(deliveryStatuses),
  attemptCount: z.number().int(),
  nextAttemptAt: z.iso.datetime().nullable(),
  lastStatusCode: z.number().int().nullable(),
  lastError: z.string().nullable(),
  createdAt: z.iso.datetime(),
  finishedAt: z.iso.datetime().nullable(),
  redeliveries: z.number().int(),
  redeliveredAt: z.iso.datetime().nullable(),
  redeliveredBy: z.string().nullable(),
  attempts: z.array(attemptResponse),
});
export type DeliveryResponse = z.output<typeof deliveryResponse>;
export const deliveryListResponse = z.object({
  data: z.array(deliveryResponse),
  nextCursor: z.string().nullable(),
  count: z.number().int().optional(),
});
