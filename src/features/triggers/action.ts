import type { StoredEvent } from '../../events/event-log.ts';

/**
 * What a trigger does with an event — a webhook delivery or a function run — as the delivery task
 * sees it. One attempt at a time, in `seq` order per stream; the task records every attempt in the
 * delivery log and decides from the outcome whether and when to try again.
 */
export interface ActionAttempt {
  workspaceId: string;
  triggerId: string;
  deliveryId: string;
  /** 1 for the first attempt. */
  attempt: number;
  event: StoredEvent;
  /** Aborted when the instance stops: the attempt should give up and be tried again later. */
  signal: AbortSignal;
}

export type ActionOutcome =
  | { ok: true; latencyMs: number; statusCode?: number; responseBody?: string }
  | {
      ok: false;
      latencyMs: number;
      error: string;
      statusCode?: number;
      responseBody?: string;
      /** False when trying again cannot help (a function that threw; a 4xx other than 408/429). */
      retry: boolean;
      /** The receiver's `Retry-After`, in milliseconds from now. */
      retryAfterMs?: number;
      /** Set when the trigger must be disabled at once (a webhook answered 410 Gone). */
      disable?: string;
    };

/** Runs a function trigger's function on an event (features/functions implements it). */
export interface FunctionAction {
  run(functionName: string, attempt: ActionAttempt): Promise<ActionOutcome>;
}
