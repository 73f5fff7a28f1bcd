import { randomUUID } from 'node:crypto';
import type { TestApp } from './app.ts';
import { uniqueSlug } from './app.ts';
import type { TestIssuer } from './issuer.ts';
import { appOrigin } from './tenant.ts';

export interface MembersWorkspace {
  slug: string;
  id: string;
  orgId: string;
  /**
   * A Clerk v2 token of this workspace's org. It claims `admin`, which counts only where roles
   * come from the token: with `roleSource: members` the members table alone decides.
   */
  token(userId: string, claims?: Record<string, unknown>): Promise<string>;
}

/** A workspace whose Clerk provider takes roles from the members table (or as `roleSource` says). */
export async function membersWorkspace(
  cordon: TestApp,
  issuer: TestIssuer,
  prefix: string,
  provider: Record<string, unknown> = {},
): Promise<MembersWorkspace> {
  const workspace = (
    await cordon
      .admin()
      .post('/v1/workspaces')
      .send({ slug: uniqueSlug(prefix), name: prefix, plan: 'enterprise' })
      .expect(201)
  ).body;
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
      roleSource: 'members',
      ...provider,
    })
    .expect(201);
  return {
    slug: workspace.slug,
    id: workspace.id,
    orgId,
    token: (userId, claims = {}) =>
      issuer.sign({ v: 2, sub: userId, azp: appOrigin, o: { id: orgId, rol: 'admin' }, ...claims }),
  };
}

/** Requests to one workspace's routes with a bearer token; `token` undefined sends none. */
export function client(cordon: TestApp, workspace: { slug: string }, token?: string) {
  const base = `/v1/workspaces/${workspace.slug}`;
  const auth = <T extends { auth: (token: string, options: { type: 'bearer' }) => T }>(request: T) =>
    token === undefined ? request : request.auth(token, { type: 'bearer' });
  return {
    get: (path: string) => auth(cordon.http().get(base + path)),
    post: (path: string, body: object) => auth(cordon.http().post(base + path)).send(body),
    patch: (path: string, body: object) => auth(cordon.http().patch(base + path)).send(body),
    delete: (path: string) => auth(cordon.http().delete(base + path)),
  };
}

export const addMember = (
  cordon: TestApp,
  workspace: { slug: string },
  userId: string,
  roles: string[],
  email?: string,
) =>
  cordon
    .admin()
    .post(`/v1/workspaces/${workspace.slug}/members`)
    .send({ userId, roles, ...(email && { email }) })
    .expect(201);

export const rolesIn = async (cordon: TestApp, workspace: { slug: string }, token: string) =>
  (await client(cordon, workspace, token).get('/whoami').expect(200)).body.roles as string[];
