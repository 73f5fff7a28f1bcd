import type { JobSpec } from '../../events/queue.ts';

/** The job that drains one stream of a trigger's deliveries. */
export const deliverTask = 'cordon_deliver';

/** One trigger's deliveries of one record (or, for other events, of one event). */
export interface StreamRef {
  workspaceId: string;
  triggerId: string;
  stream: string;
}

/**
 * The drain job of a stream. Its key (with the workspace: trigger and record ids are unique only
 * within one, and an import keeps them) keeps one waiting job per stream, and a waiting job keeps
 * its run time when the key is added again (a new event waits behind a retry, as seq order wants).
 * Two jobs of one stream may still run at once (graphile-worker adds a second when a key is added
 * while its job runs): the claim on the delivery being attempted (delivery-log.ts) keeps the
 * second out of the way, and it comes back under a key of its own (`claimed`) when the claim
 * lapses, in case the first died — under the stream's key it would hold back the first's retry.
 * A redelivery adds a job without a key, so it does not wait for a retry scheduled hours ahead.
 *
 * No named queue: graphile-worker locks every available queue row on each fetch, so concurrent
 * workers skip each other's and go idle (measured: 113 deliveries/s with a queue per trigger and
 * stream bucket).
 */
export function drainJob(
  ref: StreamRef,
  options: { runAt?: Date | undefined; key?: 'stream' | 'claimed' | 'none' } = {},
): JobSpec {
  const key = options.key ?? 'stream';
  return {
    task: deliverTask,
    payload: { workspaceId: ref.workspaceId, triggerId: ref.triggerId, stream: ref.stream },
    ...(key === 'none'
      ? {}
      : {
          key: `${deliverTask}:${ref.workspaceId}:${ref.triggerId}:${ref.stream}${key === 'claimed' ? ':claimed' : ''}`,
        }),
    ...(options.runAt ? { runAt: options.runAt } : {}),
  };
}
