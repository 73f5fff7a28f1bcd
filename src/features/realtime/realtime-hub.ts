import type { Request, Response } from 'express';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Authenticator } from '../../auth/authenticate.ts';
import type { Principal } from '../../auth/principal.ts';
import type { ChangeBus } from '../../db/changes.ts';
import type { Database } from '../../db/database.ts';
import type { EventLog, StoredEvent } from '../../events/event-log.ts';
import { ProblemError } from '../../http/errors.ts';
import type { PrincipalAbility } from '../../policy/ability.ts';
import type { PolicyStore } from '../../policy/policy-store.ts';
import { sql } from 'kysely';
import { eventView, type StreamMessage } from './event-view.ts';
import { EventStream, formatEvent } from './stream.ts';
import { eventPageSize, readRecordEvents, WorkspaceFeed } from './workspace-feed.ts';

export interface RealtimeOptions {
  maxStreams: number;
  maxStreamsPerPrincipal: number;
  maxBufferBytes: number;
  /** A comment on every stream this often, so proxies and clients know it is alive. */
  heartbeatMs: number;
  /** Every feed looks again this often, in case news of another instance's commit was lost. */
  pollMs: number;
  /** How a group of streams sees an event (tests wrap it to make one group's evaluation fail). */
  view: (ability: PrincipalAbility, event: StoredEvent) => StreamMessage | undefined;
}

export const realtimeDefaults: Omit<RealtimeOptions, 'maxStreams' | 'maxStreamsPerPrincipal' | 'maxBufferBytes'> = {
  heartbeatMs: 15_000,
  pollMs: 1_000,
  view: eventView,
};

/** A stream's place within the limits, taken before its connect is decided (`RealtimeHub.admit`). */
export interface StreamPlace {
  release(): void;
}

export interface Subscription {
  principal: Principal;
  workspaceId: string;
  workspaceReference: string;
  ability: PrincipalAbility;
  token: string;
  structures: readonly string[];
  /** Where to resume: the last `seq` the client received, if it says. */
  lastEventId: bigint | undefined;
}

/**
 * Realtime streams on this instance: each workspace's record events are read once (its feed),
 * whether this instance committed them (at once), another one did (a NOTIFY naming the workspace)
 * or news was lost (a poll), and each is evaluated in memory once per group of streams sharing an
 * ability. A policy, role, provider or workspace change makes the affected streams' abilities
 * again before their next event.
 */
export class RealtimeHub {
  /** Feeds being started, then ready: a feed is retired (synchronously) with its last stream. */
  private readonly feeds = new Map<string, Promise<WorkspaceFeed>>();
  private readonly ready = new Map<string, WorkspaceFeed>();
  private readonly perPrincipal = new Map<string, number>();
  private streams = 0;
  private readonly options: RealtimeOptions;
  private readonly database: Database;
  private readonly authenticator: Authenticator;
  private readonly policies: PolicyStore;
  private readonly logger: Logger;
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly evaluations: Counter;
  private readonly openStreams: Gauge;
  private readonly dropped: Counter<'reason'>;
  /** Evaluations since start: what the tests count. */
  evaluationCount = 0;

  constructor(dependencies: {
    database: Database;
    events: EventLog;
    changes: ChangeBus;
    authenticator: Authenticator;
    policies: PolicyStore;
    logger: Logger;
    registry: Registry;
    options: Pick<RealtimeOptions, 'maxStreams' | 'maxStreamsPerPrincipal' | 'maxBufferBytes'> &
      Partial<RealtimeOptions>;
  }) {
    const { events, changes, registry } = dependencies;
    this.database = dependencies.database;
    this.authenticator = dependencies.authenticator;
    this.policies = dependencies.policies;
    this.logger = dependencies.logger;
    this.options = { ...realtimeDefaults, ...dependencies.options };
    this.evaluations = new Counter({
      name: 'cordon_realtime_evaluations_total',
      help: 'Record events evaluated for a group of streams sharing an ability',
      registers: [registry],
    });
    this.openStreams = new Gauge({
      name: 'cordon_realtime_streams',
      help: 'Open event streams',
      registers: [registry],
    });
    this.dropped = new Counter({
      name: 'cordon_realtime_dropped_total',
      help: 'Event streams ended by the server, by reason',
      labelNames: ['reason'],
      registers: [registry],
    });
    events.on('committed', (workspaceId) => this.wake(workspaceId));
    changes.onEvents((workspaceId) => this.wake(workspaceId));
    changes.subscribe((change) => {
      if (['structure', 'function', 'trigger', 'billing'].includes(change.topic)) return;
      const userId = change.topic === 'member' ? change.userId : undefined;
      void this.refresh(change.workspaceId, { userId });
    });
    this.timers.push(
      setInterval(() => this.wake('*'), this.options.pollMs).unref(),
      setInterval(() => this.heartbeat(), this.options.heartbeatMs).unref(),
    );
  }

  /**
   * Takes a stream's place within the instance's and the principal's limits, or refuses with 429
   * `too_many_streams` before anything is written. The place is given back once, by `release`.
   */
  admit(workspaceId: string, principalId: string): StreamPlace {
    const key = `${workspaceId}:${principalId}`;
    const mine = this.perPrincipal.get(key) ?? 0;
    if (this.streams >= this.options.maxStreams || mine >= this.options.maxStreamsPerPrincipal) {
      const which =
        this.streams >= this.options.maxStreams
          ? `this instance serves ${this.options.maxStreams} streams already`
          : `this principal has ${this.options.maxStreamsPerPrincipal} streams open already`;
      throw new ProblemError('too_many_streams', `${which}; close one or try again later`, {
        headers: { 'Retry-After': '5' },
      });
    }
    this.perPrincipal.set(key, mine + 1);
    this.streams += 1;
    this.openStreams.set(this.streams);
    let held = true;
    return {
      release: () => {
        if (!held) return;
        held = false;
        const left = (this.perPrincipal.get(key) ?? 1) - 1;
        if (left > 0) this.perPrincipal.set(key, left);
        else this.perPrincipal.delete(key);
        this.streams -= 1;
        this.openStreams.set(this.streams);
      },
    };
  }

  /**
   * Serves one stream until either side ends it: the current position, or the events after
   * `lastEventId` read from the table (a `reset` when retention took some), then live events.
   */
  async subscribe(subscription: Subscription, place: StreamPlace, request: Request, response: Response): Promise<void> {
    let stream: EventStream | undefined;
    try {
      let feed = await this.feed(subscription.workspaceId);
      // Retired while this request waited (its last stream ended): start another.
      while (this.ready.get(subscription.workspaceId) !== feed) feed = await this.feed(subscription.workspaceId);
      const exp = subscription.principal.claims.exp;
      stream = new EventStream({
        response,
        workspaceId: subscription.workspaceId,
        workspaceReference: subscription.workspaceReference,
        principalId: subscription.principal.id,
        structures: new Set(subscription.structures),
        token: subscription.token,
        ability: subscription.ability,
        maxBufferBytes: this.options.maxBufferBytes,
        expiresAt: typeof exp === 'number' ? exp * 1000 : undefined,
        onEnd: (ended, reason) => {
          if (reason) this.dropped.inc({ reason: reason.event === 'error' ? reason.code : reason.event });
          feed.remove(ended);
          place.release();
          if (!feed.size) this.retire(feed);
        },
      });
      stream.backlog = [];
      // From here the feed queues every later event for this stream: none is lost, none repeated.
      const upTo = feed.position;
      feed.add(stream);
      stream.begin();
      if (request.socket.destroyed) return stream.end();
      await this.catchUp(stream, subscription, upTo);
      const waiting = stream.backlog;
      stream.backlog = undefined;
      for (const send of waiting) send();
    } catch (error) {
      if (!stream) place.release();
      else if (stream.open) {
        this.logger.warn({ err: error }, 'starting an event stream failed');
        stream.end({ event: 'error', code: 'evaluation_failed', detail: 'the stream could not start; reconnect' });
      }
      if (!stream) throw error;
    }
  }

  /** The events after the client's last one, up to `upTo`, read and evaluated for this stream alone. */
  private async catchUp(stream: EventStream, subscription: Subscription, upTo: bigint): Promise<void> {
    const from = subscription.lastEventId;
    if (from === undefined || from === upTo) {
      stream.write(`id: ${upTo}\n\n`);
      return;
    }
    if (from > upTo || from < (await this.retainedAfter(subscription.workspaceId))) {
      stream.write(formatEvent('reset', { event: 'reset', seq: upTo.toString() }, upTo));
      return;
    }
    let position = from;
    while (position < upTo && stream.open) {
      const { events } = await readRecordEvents(this.database, subscription.workspaceId, position, upTo, [
        ...subscription.structures,
      ]);
      for (const event of events) {
        this.counted();
        const message = this.options.view(stream.ability, event);
        if (message) stream.write(formatEvent(message.event, message, event.seq));
      }
      position = events.length === eventPageSize ? BigInt(events.at(-1)!.seq) : upTo;
      await stream.waitForDrain();
    }
  }

  /** Events at or below this seq were deleted by retention (0: none were). */
  private async retainedAfter(workspaceId: string): Promise<bigint> {
    const [row] = await this.database.withWorkspace(workspaceId, (scope) =>
      scope.query(
        sql<{ through: string }>`select through_seq as through from event_progress
          where workspace_id = ${scope.workspaceId}::uuid and consumer = 'retention'`,
      ),
    );
    return BigInt(row?.through ?? 0);
  }

  private counted(): void {
    this.evaluationCount += 1;
    this.evaluations.inc();
  }

  private feed(workspaceId: string): Promise<WorkspaceFeed> {
    let feed = this.feeds.get(workspaceId);
    if (!feed) {
      feed = WorkspaceFeed.start(workspaceId, {
        database: this.database,
        logger: this.logger,
        view: this.options.view,
        evaluated: () => this.counted(),
        refreshAbilities: (id, policySetVersion) => this.refresh(id, { policySetVersion }),
      });
      this.feeds.set(workspaceId, feed);
      feed.then(
        (started) => this.ready.set(workspaceId, started),
        () => this.feeds.delete(workspaceId),
      );
    }
    return feed;
  }

  private retire(feed: WorkspaceFeed): void {
    if (feed.size || this.ready.get(feed.workspaceId) !== feed) return;
    feed.close();
    this.ready.delete(feed.workspaceId);
    this.feeds.delete(feed.workspaceId);
  }

  private wake(workspaceId: string): void {
    if (workspaceId !== '*') return this.ready.get(workspaceId)?.wake();
    for (const feed of this.ready.values()) feed.wake();
  }

  /**
   * Makes the abilities of a workspace's streams again (or of one user's), as a request would:
   * the token checked again against the workspace, roles from claims or members, the policies
   * of `policySetVersion` when a feed read it with the events. A token no longer good ends its stream.
   */
  private async refresh(workspaceId: string, only: { userId?: string; policySetVersion?: number }): Promise<void> {
    const feeds = workspaceId === '*' ? [...this.ready.values()] : [this.ready.get(workspaceId)];
    await Promise.all(
      feeds.map(async (feed) => {
        if (!feed) return;
        const streams = feed.streams.filter(
          (stream) => only.userId === undefined || stream.principalId === only.userId,
        );
        const work = Promise.all(streams.map((stream) => this.reauthorize(feed, stream, only.policySetVersion)));
        feed.refresh(work.then(() => undefined));
        await work;
      }),
    );
  }

  private async reauthorize(feed: WorkspaceFeed, stream: EventStream, policySetVersion?: number): Promise<void> {
    try {
      const { principal, tenant } = await this.authenticator.authenticate(stream.workspaceReference, stream.token);
      const ability = await this.policies.abilityFor(principal, {
        workspaceId: tenant.workspace.id,
        policySetVersion: Math.max(policySetVersion ?? 0, tenant.workspace.policySetVersion),
      });
      feed.regroup(stream, ability);
    } catch (error) {
      const code = error instanceof ProblemError ? error.code : undefined;
      if (code === 'token_expired') return stream.end({ event: 'token_expired' });
      stream.end({
        event: 'error',
        code: code === 'workspace_suspended' ? 'workspace_suspended' : 'token_invalid',
        detail: error instanceof ProblemError ? error.message : 'the token is no longer accepted',
      });
    }
  }

  private heartbeat(): void {
    for (const feed of this.ready.values()) for (const stream of feed.streams) stream.write(': ping\n\n');
  }

  /** Ends every stream (their clients reconnect elsewhere with Last-Event-ID) and stops reading. */
  async close(): Promise<void> {
    for (const timer of this.timers.splice(0)) clearInterval(timer);
    await Promise.allSettled(this.feeds.values());
    for (const feed of [...this.ready.values()]) {
      feed.close();
      for (const stream of feed.streams) stream.end({ event: 'shutdown' });
    }
    this.ready.clear();
    this.feeds.clear();
  }
}
