import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { Webhook } from 'standardwebhooks';

/** A delivery as the receiver got it: verified, with its raw headers and body. */
export interface ReceivedWebhook {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
  payload: { type: string; timestamp: string; data: Record<string, unknown> & { data: Record<string, unknown> } };
  /** Date.now() when it arrived. */
  at: number;
}

export interface Answer {
  status: number;
  body?: string;
  headers?: Record<string, string>;
  /** Waits this long before answering (a slow receiver). */
  delayMs?: number;
}

/**
 * An app's webhook endpoint on loopback, written as docs/triggers.md tells apps to write theirs:
 * Express with `express.raw`, verified by the `standardwebhooks` library over the raw body.
 * Verified deliveries are kept in arrival order; a bad signature gets 400 and is only counted.
 * `answer` scripts the reply to each verified delivery (its index counts from 0).
 */
export class WebhookReceiver {
  readonly received: ReceivedWebhook[] = [];
  /** Requests whose signature did not verify. */
  rejected = 0;
  /** TCP connections accepted, verified or not: a refused delivery must not even connect. */
  connections = 0;
  /** The trigger's secret (whsec_…); set once the trigger is created. */
  secret = '';
  answer: (delivery: ReceivedWebhook, index: number) => Answer = () => ({ status: 204 });
  readonly url: string;
  readonly port: number;
  private readonly server: Server;

  private constructor(server: Server, port: number) {
    this.server = server;
    this.port = port;
    this.url = `http://127.0.0.1:${port}/hooks/cordon`;
  }

  static async start(): Promise<WebhookReceiver> {
    const app = express();
    const holder: { receiver?: WebhookReceiver } = {};
    app.post('/hooks/cordon', express.raw({ type: 'application/json', limit: '5mb' }), async (request, response) => {
      const receiver = holder.receiver!;
      const body = (request.body as Buffer).toString('utf8');
      let payload: ReceivedWebhook['payload'];
      try {
        payload = new Webhook(receiver.secret).verify(
          body,
          request.headers as Record<string, string>,
        ) as typeof payload;
      } catch {
        receiver.rejected += 1;
        response.status(400).end();
        return;
      }
      const delivery: ReceivedWebhook = {
        id: request.get('webhook-id')!,
        timestamp: request.get('webhook-timestamp')!,
        signature: request.get('webhook-signature')!,
        body,
        payload,
        at: Date.now(),
      };
      const index = receiver.received.push(delivery) - 1;
      const answer = receiver.answer(delivery, index);
      if (answer.delayMs) await new Promise((resolve) => setTimeout(resolve, answer.delayMs));
      response
        .status(answer.status)
        .set(answer.headers ?? {})
        .end(answer.body ?? '');
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    const receiver = new WebhookReceiver(server, (server.address() as AddressInfo).port);
    server.on('connection', () => (receiver.connections += 1));
    holder.receiver = receiver;
    return receiver;
  }

  /** Received events of one type, as their `data` (the event). */
  events(type?: string): ReceivedWebhook['payload']['data'][] {
    return this.received.filter((delivery) => !type || delivery.payload.type === type).map((item) => item.payload.data);
  }

  async waitFor(count: number, timeoutMs = 10_000, type?: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.events(type).length < count) {
      if (Date.now() > deadline) {
        throw new Error(`expected ${count} deliveries${type ? ` of ${type}` : ''}, got ${this.events(type).length}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server.close(resolve));
  }
}
