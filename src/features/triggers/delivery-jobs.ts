import { createHash } from 'node:crypto';
import type { JobSpec } from '../../events/queue.ts';

/** The job that drains one stream of a trigger's deliveries. */
export const deliverTask = 'cordon_deliver';

/** One trigger's deliveries of one record (or, for other events, of one event). */
export interface StreamRef {
  workspaceId: string;
  triggerId: string;
  stream: string;
}

/** Named queues per trigger: jobs of one queue run one at a time, on whichever instance. */
const buckets = 64;

/**
 * The drain job of a stream. Its named queue — the trigger and one of 64 buckets the stream
 * hashes to — lets only one job drain the stream at a time, so its deliveries go out in seq
 * order even when a job is added while another runs (graphile-worker then adds a second job for
 * the key). The key keeps one waiting job per stream; a redelivery adds one without a key, so it
 * does not wait for a retry scheduled hours ahead.
 */
export function drainJob(ref: StreamRef, options: { runAt?: Date; keyed?: boolean } = {}): JobSpec {
  const bucket = createHash('sha256').update(ref.stream).digest().readUInt16BE(0) % buckets;
  return {
    task: deliverTask,
    payload: { workspaceId: ref.workspaceId, triggerId: ref.triggerId, stream: ref.stream },
    queue: `${deliverTask}:${ref.triggerId}:${bucket}`,
    ...(options.keyed === false ? {} : { key: `${deliverTask}:${ref.triggerId}:${ref.stream}` }),
    ...(options.runAt ? { runAt: options.runAt } : {}),
  };
}
