import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

export const PolicyEntity = defineEntity({
  name: 'Policy',
  tableName: 'policies',
  properties: {
    workspaceId: p.uuid().primary(),
    id: p.uuid().primary(),
    name: p.text(),
    description: p.text().default(''),
    roles: p.array().$type<string[]>(),
    rules: p.json<unknown[]>(),
    version: p.integer().default(1),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
    updatedBy: p.text(),
  },
});

export type Policy = InferEntity<typeof PolicyEntity>;
