import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import type { Fields } from './structures.schema.ts';

export const StructureEntity = defineEntity({
  name: 'Structure',
  tableName: 'structures',
  properties: {
    workspaceId: p.uuid().primary(),
    name: p.text().primary(),
    description: p.text().default(''),
    fields: p.json<Fields>(),
    version: p.integer().default(1),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  },
});

export type Structure = InferEntity<typeof StructureEntity>;
