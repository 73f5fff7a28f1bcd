import { randomUUID } from 'node:crypto';
import type { TestApp } from './app.ts';
import { uniqueSlug } from './app.ts';
import type { TestIssuer } from './issuer.ts';

export const appOrigin = 'https://app.example.com';

export interface TestTenant {
  id: string;
  slug: string;
  orgId: string;
  /** A Clerk v2 session token of this workspace's org for `userId` with `role` (no role: none). */
  token(userId: string, role?: string, claims?: Record<string, unknown>): Promise<string>;
}

/**
 * A workspace trusting the issuer as a Clerk provider bound to a fresh org. On the enterprise plan
 * (no limits) unless `plan` says otherwise, so the tests of other features never meet a limit.
 */
export async function createTenant(
  cordon: TestApp,
  issuer: TestIssuer,
  prefix = 'tenant',
  plan = 'enterprise',
): Promise<TestTenant> {
  const workspace = (
    await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug: uniqueSlug(prefix), name: prefix, plan })
      .expect(201)
  ).body;
  return trustIssuer(cordon, issuer, workspace);
}

/** An existing workspace made to trust the issuer as a Clerk provider bound to a fresh org. */
export async function trustIssuer(
  cordon: TestApp,
  issuer: TestIssuer,
  workspace: { id: string; slug: string },
): Promise<TestTenant> {
  const orgId = `org_${randomUUID().slice(0, 12)}`;
  await cordon
    .admin()
    .post(`/v1/workspaces/${workspace.slug}/identity-providers`)
    .send({
      name: 'clerk',
      type: 'clerk',
      issuer: issuer.url,
      jwksUri: issuer.jwksUri,
      orgId,
      authorizedParties: [appOrigin],
    })
    .expect(201);
  return {
    id: workspace.id,
    slug: workspace.slug,
    orgId,
    token: (userId, role, claims = {}) =>
      issuer.sign({ v: 2, sub: userId, azp: appOrigin, o: role ? { id: orgId, rol: role } : { id: orgId }, ...claims }),
  };
}
