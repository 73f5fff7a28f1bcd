import { defineEntity, p, type InferEntity } from '@mikro-orm/core';

export const FunctionEntity = defineEntity({
  name: 'FunctionDefinition',
  tableName: 'functions',
  properties: {
    workspaceId: p.uuid().primary(),
    name: p.text().primary(),
    code: p.text(),
    roles: p.array().$type<string[]>(),
    timeoutMs: p.integer(),
    memoryMb: p.integer(),
    version: p.integer().default(1),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  },
});

export type FunctionDefinition = InferEntity<typeof FunctionEntity>;
