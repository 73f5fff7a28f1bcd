import { Webhook } from 'standardwebhooks';
import { createSafeFetch, OutboundFetchError, type SafeFetch } from '../../auth/safe-fetch.ts';
import type { StoredEvent } from '../../events/event-log.ts';
import type { ActionAttempt, ActionOutcome } from './action.ts';
import { parseRetryAfter } from './retry-schedule.ts';
import { recordEvents } from './triggers.schema.ts';

export interface WebhookOptions {
  /** False in production: a URL whose name leads to a private address is refused unsent. */
  allowPrivateNetworks: boolean;
  /** True in production: a plain http URL (one stored before the move to production) is refused unsent. */
  httpsOnly: boolean;
  /** The whole exchange, connect to last byte: 15 s. */
  timeoutMs: number;
  /** How much of a receiver's answer is read and kept in the delivery log: 4 KB. */
  responseBytes: number;
}

export const defaultWebhookOptions = { timeoutMs: 15_000, responseBytes: 4_096 };

/**
 * What Cordon itself seals in the events it writes, by type: an invitation's accept URL, which
 * holds its token. Only these are opened, never a value that merely looks sealed: a function's
 * notification data is the function's, and opening it would decrypt whatever ciphertext it
 * carried (another tenant's webhook secret, say, copied from a backup).
 */
const sealedFields: Readonly<Record<string, readonly string[]>> = { 'invitation.created': ['acceptUrl'] };

/**
 * The event as receivers get it: `{ id, seq, type, workspaceId, structure?, recordId?, data,
 * actor, requestId, at }`. What Cordon keeps sealed in the event log (`sealedFields`) is opened
 * here, for the app that sends the email.
 */
export function publicEvent(event: StoredEvent, open: (sealed: string) => string): Record<string, unknown> {
  const fields = recordEvents.has(event.type) ? undefined : sealedFields[event.type];
  const data = fields ? opened(event.data, fields, open) : event.data;
  return {
    id: event.id,
    seq: event.seq,
    type: event.type,
    workspaceId: event.workspaceId,
    ...(event.structure ? { structure: event.structure } : {}),
    ...(event.recordId ? { recordId: event.recordId } : {}),
    data,
    actor: event.actor,
    requestId: event.requestId,
    at: event.at,
  };
}

function opened(
  data: Record<string, unknown>,
  fields: readonly string[],
  open: (sealed: string) => string,
): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(data).map(([key, value]) => {
      const sealed = (value as { sealed?: unknown } | null)?.sealed;
      return [key, fields.includes(key) && typeof sealed === 'string' ? open(sealed) : value];
    }),
  );
}

/** Standard Webhooks' body: `{ type, timestamp, data: <event> }`. */
export const webhookBody = (event: StoredEvent, open: (sealed: string) => string): string =>
  JSON.stringify({ type: event.type, timestamp: event.at, data: publicEvent(event, open) });

/** PostgreSQL text holds neither NUL nor lone surrogates; a receiver's answer may contain both. */
const storable = (text: string) => text.toWellFormed().replaceAll('\u0000', '');

/** Refusals that trying again cannot change: the address or scheme is ours to refuse, not the receiver's. */
const final = new Set(['blocked_address', 'scheme']);

/**
 * One webhook attempt: signed by every secret in force (Standard Webhooks: `webhook-id` is the
 * delivery's id, the same on every attempt; `webhook-timestamp` is now, so a retry is signed
 * afresh), posted through the SSRF-safe fetch, judged by its status. 2xx delivers; 410 disables
 * the trigger; anything else (other 4xx included, as Standard Webhooks and Svix do: a receiver
 * answering 400 or 404 during a bad deploy must not lose events) is retried on the schedule.
 */
export class WebhookAction {
  private readonly fetch: SafeFetch;
  private readonly options: WebhookOptions;

  constructor(options: WebhookOptions) {
    this.options = options;
    this.fetch = createSafeFetch({
      allowPrivateNetworks: options.allowPrivateNetworks,
      timeoutMs: options.timeoutMs,
      maxBytes: options.responseBytes,
      oversized: 'truncate',
    });
  }

  async deliver(url: string, secrets: readonly string[], attempt: ActionAttempt, body: string): Promise<ActionOutcome> {
    if (this.options.httpsOnly && !url.startsWith('https:')) {
      return { ok: false, latencyMs: 0, error: 'only https URLs are delivered to in production', retry: false };
    }
    if (!secrets.length) return { ok: false, latencyMs: 0, error: 'the trigger has no signing secret', retry: false };
    const sentAt = new Date();
    const signature = secrets.map((secret) => new Webhook(secret).sign(attempt.deliveryId, sentAt, body)).join(' ');
    const started = performance.now();
    const latency = () => Math.round(performance.now() - started);
    let response: Response;
    let responseBody: string;
    try {
      response = await this.fetch(url, {
        method: 'POST',
        body,
        signal: attempt.signal,
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Cordon-Webhooks/1',
          'webhook-id': attempt.deliveryId,
          'webhook-timestamp': String(Math.floor(sentAt.getTime() / 1000)),
          'webhook-signature': signature,
        },
      });
      responseBody = storable(await response.text());
    } catch (error) {
      // Stopping: not an attempt the receiver failed. The task gives up and the job runs again.
      if (attempt.signal.aborted) throw error;
      const reason = error instanceof OutboundFetchError ? error.reason : 'network';
      const message = error instanceof Error ? error.message : String(error);
      return { ok: false, latencyMs: latency(), error: storable(message), retry: !final.has(reason) };
    }
    const outcome = { latencyMs: latency(), statusCode: response.status, responseBody };
    if (response.status >= 200 && response.status < 300) return { ok: true, ...outcome };
    if (response.status === 410) {
      const reason = 'the receiver answered 410 Gone';
      return { ok: false, ...outcome, error: reason, retry: false, disable: reason };
    }
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'));
    return {
      ok: false,
      ...outcome,
      error: `the receiver answered ${response.status}`,
      retry: true,
      ...(retryAfterMs === undefined ? {} : { retryAfterMs }),
    };
  }
}
