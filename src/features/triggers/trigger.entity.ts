import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import type { TriggerAction, TriggerEvent } from './triggers.schema.ts';

export const TriggerEntity = defineEntity({
  name: 'Trigger',
  tableName: 'triggers',
  properties: {
    workspaceId: p.uuid().primary(),
    id: p.uuid().primary(),
    name: p.text(),
    events: p.array().$type<TriggerEvent[]>(),
    structure: p.text().nullable(),
    condition: p.json<Record<string, unknown>>().nullable(),
    enabled: p.boolean().default(true),
    action: p.json<TriggerAction>(),
    disabledReason: p.text().nullable(),
    version: p.integer().default(1),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  },
});

export type Trigger = InferEntity<typeof TriggerEntity>;
