import { sql } from 'kysely';
import { v7 as uuidv7 } from 'uuid';
import type { Scope } from '../../db/database.ts';
import { addJobs } from '../../events/queue.ts';
import type { EventSecrets } from '../../events/secrets.ts';
import { ProblemError, type FieldError } from '../../http/errors.ts';
import { isUuid } from '../../json.ts';
import type { Caller } from '../../policy/access.ts';
import { parseConditions } from '../../policy/conditions.ts';
import { WorkspaceConfiguration } from '../../policy/workspace-configuration.ts';
import { checkGrant } from '../members/grants.ts';
import { drainJob } from './delivery-jobs.ts';
import { deliveryOf, deliveryPage, requeue } from './delivery-history.ts';
import { discardPending } from './delivery-log.ts';
import { TriggerEntity, type Trigger } from './trigger.entity.ts';
import { TriggerSecrets } from './trigger-secrets.ts';
import {
  recordEvents,
  type CreatedTriggerResponse,
  type DeliveriesQuery,
  type DeliveryResponse,
  type RotatedSecretResponse,
  type TriggerInput,
  type TriggerResponse,
} from './triggers.schema.ts';

export function toResponse(trigger: Trigger): TriggerResponse {
  return {
    id: trigger.id,
    name: trigger.name,
    events: trigger.events,
    structure: trigger.structure ?? null,
    condition: trigger.condition ?? null,
    enabled: trigger.enabled,
    disabledReason: trigger.disabledReason ?? null,
    action: trigger.action,
    version: trigger.version,
    createdAt: trigger.createdAt.toISOString(),
    updatedAt: trigger.updatedAt.toISOString(),
  };
}

const notFound = (id: string) => new ProblemError('trigger_not_found', `No trigger "${id}" in this workspace`);

/** A string that reads as a policy placeholder: a trigger condition has no principal to put in its place. */
function placeholderPointers(value: unknown, pointer: string): string[] {
  if (typeof value === 'string') return /^\$\{.*\}$/s.test(value) ? [pointer] : [];
  if (Array.isArray(value)) return value.flatMap((item, index) => placeholderPointers(item, `${pointer}/${index}`));
  if (typeof value === 'object' && value !== null)
    return Object.entries(value).flatMap(([key, item]) => placeholderPointers(item, `${pointer}/${key}`));
  return [];
}

/**
 * Triggers: which events (optionally of one structure, optionally matching a condition in the
 * policy grammar) go to a webhook or a function. A change is announced, so every instance's
 * dispatcher matches the next events against it; a webhook's signing secret is shown once.
 */
export class TriggersService extends WorkspaceConfiguration {
  private readonly secrets: TriggerSecrets;

  constructor(options: ConstructorParameters<typeof WorkspaceConfiguration>[0] & { sealer: EventSecrets }) {
    super(options, 'trigger');
    this.secrets = new TriggerSecrets(options.sealer);
  }

  private async load(scope: Scope, id: string): Promise<Trigger> {
    const trigger = isUuid(id)
      ? await scope.em.findOne(TriggerEntity, { workspaceId: scope.workspaceId, id: id.toLowerCase() })
      : null;
    if (!trigger) throw notFound(id);
    return trigger;
  }

  /**
   * The input against the workspace: its structure and function exist, its condition parses. A
   * function trigger feeds events to a function that acts with the function's roles: as invoking
   * one, binding one takes holding its roles (or managing members), or a trigger would be a way to
   * act with roles the caller was never given.
   */
  private async validate(scope: Scope, input: TriggerInput, caller: Caller): Promise<void> {
    const errors: FieldError[] = [];
    if (input.structure) {
      const nonRecord = input.events.filter((event) => !recordEvents.has(event));
      if (nonRecord.length) {
        errors.push({
          pointer: '/structure',
          in: 'body',
          detail: `a structure applies to record events only, not to ${nonRecord.join(', ')}`,
        });
      }
      const [found] = await scope.query(
        sql`select 1 from structures where workspace_id = ${scope.workspaceId}::uuid and name = ${input.structure}`,
      );
      if (!found) {
        errors.push({
          pointer: '/structure',
          in: 'body',
          detail: `there is no structure "${input.structure}" in this workspace`,
        });
      }
    }
    if (input.condition) {
      const placeholders = placeholderPointers(input.condition, '/condition');
      errors.push(
        ...placeholders.map((pointer) => ({
          pointer,
          in: 'body' as const,
          detail: 'placeholders have no principal to stand for in a trigger condition',
        })),
      );
      if (!placeholders.length) {
        errors.push(
          ...parseConditions(input.condition, '/condition').errors.map((error) => ({ ...error, in: 'body' as const })),
        );
      }
    }
    if (input.action.type === 'function') {
      const [found] = await scope.query(
        sql<{ roles: string[] }>`select roles from functions
          where workspace_id = ${scope.workspaceId}::uuid and name = ${input.action.function}`,
      );
      if (found) checkGrant(caller, found.roles);
      else {
        errors.push({
          pointer: '/action/function',
          in: 'body',
          detail: `there is no function "${input.action.function}" in this workspace`,
        });
      }
    }
    if (errors.length) throw new ProblemError('validation_failed', 'The trigger is invalid', { errors });
  }

  list(caller: Caller): Promise<TriggerResponse[]> {
    return this.read(caller, async (scope) =>
      (
        await scope.em.find(
          TriggerEntity,
          { workspaceId: scope.workspaceId },
          { orderBy: { createdAt: 'asc', id: 'asc' } },
        )
      ).map(toResponse),
    );
  }

  get(caller: Caller, id: string): Promise<TriggerResponse> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      return toResponse(await this.load(scope, id));
    });
  }

  create(caller: Caller, input: TriggerInput): Promise<CreatedTriggerResponse> {
    return this.change(caller, async (scope, ruling) => {
      await this.validate(scope, input, caller);
      const trigger = scope.em.create(TriggerEntity, {
        workspaceId: scope.workspaceId,
        id: uuidv7(),
        ...settingsOf(input),
      });
      ruling.refine({ resourceId: trigger.id });
      await scope.em.flush();
      if (input.action.type !== 'webhook') return toResponse(trigger);
      const { secret } = await this.secrets.issue(scope, trigger.id);
      return { ...toResponse(trigger), secret };
    });
  }

  /**
   * Replaces a trigger. Enabling clears the reason Cordon disabled it for; disabling discards its
   * pending deliveries. A trigger that becomes a webhook gets a secret (shown in this answer),
   * one that stops being one loses its secrets; a new URL keeps the secret.
   */
  replace(caller: Caller, id: string, input: TriggerInput): Promise<CreatedTriggerResponse> {
    return this.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const trigger = await this.load(scope, id);
      await this.validate(scope, input, caller);
      const wasWebhook = trigger.action.type === 'webhook';
      const wasEnabled = trigger.enabled;
      scope.em.assign(trigger, {
        ...settingsOf(input),
        disabledReason: input.enabled ? null : trigger.disabledReason,
        version: trigger.version + 1,
        updatedAt: new Date(),
      });
      await scope.em.flush();
      if (wasEnabled && !input.enabled) await discardPending(scope, trigger.id);
      if (wasWebhook && input.action.type !== 'webhook') await this.secrets.removeAll(scope, trigger.id);
      if (wasWebhook || input.action.type !== 'webhook') return toResponse(trigger);
      const { secret } = await this.secrets.issue(scope, trigger.id);
      return { ...toResponse(trigger), secret };
    });
  }

  /** Its secrets, deliveries and their attempts go with it. */
  async remove(caller: Caller, id: string): Promise<void> {
    await this.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const trigger = await this.load(scope, id);
      await scope.em.nativeDelete(TriggerEntity, { workspaceId: scope.workspaceId, id: trigger.id });
    });
  }

  /** A new secret, shown once; the ones it replaces keep signing for 24 h. */
  rotateSecret(caller: Caller, id: string): Promise<RotatedSecretResponse> {
    return this.access.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const trigger = await this.load(scope, id);
      if (trigger.action.type !== 'webhook') {
        throw new ProblemError('trigger_not_webhook', `Trigger "${id}" runs a function; it has no signing secret`);
      }
      const { secret, previousExpireAt } = await this.secrets.issue(scope, trigger.id);
      return { secret, previousSecretExpiresAt: (previousExpireAt ?? new Date()).toISOString() };
    });
  }

  deliveries(
    caller: Caller,
    id: string,
    query: DeliveriesQuery,
  ): Promise<{ data: DeliveryResponse[]; nextCursor: string | null; count?: number }> {
    return this.read(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: id });
      const trigger = await this.load(scope, id);
      return deliveryPage(scope, trigger.id, query);
    });
  }

  /** Queues a finished delivery again (delivered, failed or discarded), due now. */
  redeliver(caller: Caller, deliveryId: string): Promise<DeliveryResponse> {
    return this.access.change(caller, async (scope, ruling) => {
      ruling.refine({ resourceId: deliveryId });
      const id = deliveryId.toLowerCase();
      const requeued = isUuid(id) ? await requeue(scope, id, caller.principal.id) : 'missing';
      if (requeued === 'missing') {
        throw new ProblemError('delivery_not_found', `No delivery "${deliveryId}" in this workspace`);
      }
      if (requeued === 'pending') {
        throw new ProblemError('delivery_pending', `Delivery "${deliveryId}" is still pending; it will be attempted`);
      }
      if (requeued === 'disabled') {
        throw new ProblemError('trigger_disabled', "The delivery's trigger is disabled; enable it first");
      }
      await addJobs(scope, [drainJob({ workspaceId: scope.workspaceId, ...requeued }, { key: 'none' })]);
      return (await deliveryOf(scope, id))!;
    });
  }
}

/** What a create or a replace stores of the body. */
const settingsOf = (input: TriggerInput) => ({
  name: input.name,
  events: input.events,
  structure: input.structure ?? null,
  condition: input.condition ?? null,
  enabled: input.enabled,
  action: input.action,
});
