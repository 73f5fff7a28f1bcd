import { defineEntity, p, type InferEntity } from '@mikro-orm/core';
import type { IdentityProvider as TrustedProvider } from '../../auth/identity-provider.ts';

export const IdentityProviderEntity = defineEntity({
  name: 'IdentityProvider',
  tableName: 'identity_providers',
  properties: {
    workspaceId: p.uuid().primary(),
    id: p.uuid().primary(),
    name: p.text(),
    type: p.text().$type<'clerk' | 'auth0' | 'oidc'>(),
    issuer: p.text(),
    jwksUri: p.text().nullable(),
    jwks: p.json<{ keys: Record<string, unknown>[] }>().nullable(),
    audiences: p.array().$type<string[]>(),
    authorizedParties: p.array().$type<string[]>(),
    algorithms: p.array().$type<string[]>(),
    clockToleranceSeconds: p.integer(),
    orgId: p.text(),
    claims: p.json<{ subject?: string; orgId?: string; roles?: string; email?: string }>(),
    roleMap: p.json<Record<string, string | string[]>>(),
    roleSource: p.text().$type<'claims' | 'members' | 'both'>(),
    allowPendingSessions: p.boolean().default(false),
    version: p.integer().default(1),
    createdAt: p.datetime().onCreate(() => new Date()),
    updatedAt: p
      .datetime()
      .onCreate(() => new Date())
      .onUpdate(() => new Date()),
  },
});

export type IdentityProvider = InferEntity<typeof IdentityProviderEntity>;

// The front door reads providers as auth/'s shape: the entity must stay assignable to it.
export const entityFitsTheFrontDoor = (provider: IdentityProvider): TrustedProvider => provider;
