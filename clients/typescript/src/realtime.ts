import { EventStream, type StreamConnection } from './event-stream.ts';
import type { CordonRecord, RecordData } from './records.ts';
import type { TokenSource } from './token.ts';

interface RecordEventBase {
  structure: string;
  recordId: string;
  /** The event's position in the workspace's event log (a decimal string). */
  seq: string;
}

export interface RecordCreatedEvent<Data extends object = RecordData> extends RecordEventBase {
  event: 'record_created';
  data: CordonRecord<Data>;
  /** An update brought an existing record into what the subscriber may read. */
  reason?: 'entered_view';
}

export interface RecordUpdatedEvent<Data extends object = RecordData> extends RecordEventBase {
  event: 'record_updated';
  data: { before: CordonRecord<Data>; after: CordonRecord<Data> };
}

export interface RecordDeletedEvent<Data extends object = RecordData> extends RecordEventBase {
  event: 'record_deleted';
  data: { before: CordonRecord<Data> };
  /** An update took the record out of what the subscriber may read; it still exists. */
  reason?: 'left_view';
}

/** Events were lost (past retention, or an unknown id): refetch, the stream goes on from `seq`. */
export interface ResetEvent {
  event: 'reset';
  seq: string;
}

export type RecordEvent<Data extends object = RecordData> =
  RecordCreatedEvent<Data> | RecordUpdatedEvent<Data> | RecordDeletedEvent<Data>;
export type RealtimeEvent<Data extends object = RecordData> = RecordEvent<Data> | ResetEvent;

export interface SubscribeOptions<Data extends object = RecordData> {
  /** Structure names, e.g. `['Task']`. */
  structures: readonly string[];
  onEvent: (event: RealtimeEvent<Data>) => void;
  /**
   * A refusal (a CordonError), a dropped or stalled connection, or an exception thrown by
   * `onEvent`. `retrying` is false once the subscription has given up (403, 404, a refused new
   * token): subscribe again when the cause is fixed.
   */
  onError?: (error: Error, state: { retrying: boolean }) => void;
  /** Resume after this event id (`seq`), e.g. one kept from an earlier subscription. */
  lastEventId?: string;
}

export interface Subscription {
  /** Closes the stream and stops reconnecting; no callback runs afterwards. */
  unsubscribe(): void;
  /** The id of the last event received: where a new subscription would resume. */
  readonly lastEventId: string | undefined;
}

export interface RealtimeTuning {
  /** First reconnection delay; doubled per failed attempt, with jitter (default 1 s). */
  minDelayMs: number;
  maxDelayMs: number;
  /** No byte for this long (the server sends `: ping` every 15 s) means a dead connection (default 45 s). */
  heartbeatTimeoutMs: number;
}

const defaults: RealtimeTuning = { minDelayMs: 1_000, maxDelayMs: 30_000, heartbeatTimeoutMs: 45_000 };

/** Record events over Server-Sent Events, read with `fetch` so the token travels in a header. */
export class Realtime {
  private readonly connection: Omit<StreamConnection, 'tuning'>;
  private readonly tuning: RealtimeTuning;

  constructor(options: {
    url: string;
    token: TokenSource;
    fetch: typeof globalThis.fetch;
    tuning?: Partial<RealtimeTuning> | undefined;
  }) {
    this.connection = { url: options.url, token: options.token, fetch: options.fetch };
    this.tuning = { ...defaults, ...options.tuning };
  }

  subscribe<Data extends object = RecordData>(options: SubscribeOptions<Data>): Subscription {
    // A relative base URL (a same-origin proxy) stays relative: the browser resolves it.
    const url = `${this.connection.url}?${new URLSearchParams({ structures: options.structures.join(',') })}`;
    const stream = new EventStream<Data>({ ...this.connection, url, tuning: this.tuning }, options);
    stream.start();
    return {
      unsubscribe: () => stream.stop(),
      get lastEventId() {
        return stream.lastEventId;
      },
    };
  }
}
