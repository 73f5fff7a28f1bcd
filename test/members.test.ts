import { createHash, randomUUID } from 'node:crypto';
import type pg from 'pg';
import { EventSecrets } from '../src/db/outbox.ts';
import { ownerClient, startTestApp, uniqueSlug, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { appOrigin } from './support/tenant.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

interface Workspace {
  slug: string;
  id: string;
  orgId: string;
  /** A Clerk v2 token of this workspace's org; roles come from the members table. */
  token(userId: string, claims?: Record<string, unknown>): Promise<string>;
}

/** A workspace whose Clerk provider takes roles from its members table. */
async function membersWorkspace(prefix: string): Promise<Workspace> {
  const workspace = (await cordon.admin().post('/v1/workspaces').send({ slug: uniqueSlug(prefix), name: prefix }).expect(201)).body;
  const orgId = `org_${randomUUID().slice(0, 12)}`;
  await cordon.admin().post(`/v1/workspaces/${workspace.slug}/identity-providers`)
    .send({ name: 'clerk', type: 'clerk', issuer: issuer.url, jwksUri: issuer.jwksUri, orgId, authorizedParties: [appOrigin], roleSource: 'members' })
    .expect(201);
  return {
    slug: workspace.slug,
    id: workspace.id,
    orgId,
    token: (userId, claims = {}) => issuer.sign({ v: 2, sub: userId, azp: appOrigin, o: { id: orgId, rol: 'admin' }, ...claims }),
  };
}

const as = (workspace: Workspace, token: string) => {
  const base = `/v1/workspaces/${workspace.slug}`;
  return {
    get: (path: string) => cordon.http().get(base + path).auth(token, { type: 'bearer' }),
    post: (path: string, body: object) => cordon.http().post(base + path).auth(token, { type: 'bearer' }).send(body),
    patch: (path: string, body: object) => cordon.http().patch(base + path).auth(token, { type: 'bearer' }).send(body),
    delete: (path: string) => cordon.http().delete(base + path).auth(token, { type: 'bearer' }),
  };
};
const addMember = (workspace: Workspace, userId: string, roles: string[], email?: string) =>
  cordon.admin().post(`/v1/workspaces/${workspace.slug}/members`).send({ userId, roles, ...(email && { email }) }).expect(201);
const accept = (token: string, bearer: string) => cordon.http().post(`/v1/invitations/${token}/accept`).auth(bearer, { type: 'bearer' });
const rolesIn = async (workspace: Workspace, token: string) => (await as(workspace, token).get('/whoami').expect(200)).body.roles as string[];

let acme: Workspace;
let adminToken: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  acme = await membersWorkspace('acme');
  await addMember(acme, 'user_admin', ['admin'], 'admin@acme.test');
  adminToken = await acme.token('user_admin');
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

describe('invitations', () => {
  it('turns an invited email into a member whose roles decide from then on', async () => {
    const created = await as(acme, adminToken).post('/invitations', { email: 'Bob@Example.com', roles: ['member'] }).expect(201);
    const { token, acceptUrl, id } = created.body;
    expect(created.body).toMatchObject({ email: 'Bob@Example.com', roles: ['member'], invitedBy: 'user_admin', status: 'pending' });
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(acceptUrl).toContain(token);
    expect(Date.parse(created.body.expiresAt) - Date.now()).toBeGreaterThan(7 * 24 * 3_600_000 - 60_000);

    // Only the hash is stored; the event for the app to email carries the accept URL, sealed.
    const stored = (await owner.query('select token_hash from invitations where id = $1', [id])).rows[0];
    expect(Buffer.compare(stored.token_hash, createHash('sha256').update(token).digest())).toBe(0);
    const { rows: tables } = await owner.query("select count(*)::int as hits from invitations where id = $1 and (email || roles::text || invited_by) like '%' || $2 || '%'", [id, token]);
    expect(tables[0].hits).toBe(0);
    const event = (await owner.query("select topic, payload from outbox_events where payload->>'invitationId' = $1", [id])).rows[0];
    expect(event).toMatchObject({ topic: 'invitation.created', payload: { email: 'Bob@Example.com', roles: ['member'] } });
    expect(JSON.stringify(event.payload)).not.toContain(token);
    expect(new EventSecrets(cordon.adminKey).open(event.payload.acceptUrl.sealed)).toBe(acceptUrl);

    const bob = await acme.token('user_bob', { email: 'bob@example.com' });
    expect(await rolesIn(acme, bob)).toEqual([]);
    const accepted = await accept(token, bob).expect(200);
    expect(accepted.body).toMatchObject({ userId: 'user_bob', email: 'bob@example.com', roles: ['member'], invitedBy: 'user_admin' });
    expect(await rolesIn(acme, bob)).toEqual(['member']);
    const invitation = (await as(acme, adminToken).get('/invitations').expect(200)).body.data.find((item: { id: string }) => item.id === id);
    expect(invitation).toMatchObject({ status: 'accepted', acceptedBy: 'user_bob' });
    const decision = (await owner.query("select allowed, subject, principal_id from decisions where reason = $1", [`invitation ${id} accepted`])).rows;
    expect(decision).toEqual([{ allowed: true, subject: 'Member', principal_id: 'user_bob' }]);

    expect((await accept(token, bob).expect(409)).body.code).toBe('invitation_used');
  });

  it('refuses expired, revoked, unknown and malformed tokens', async () => {
    const carol = await acme.token('user_carol', { email: 'carol@example.com' });
    const expired = (await as(acme, adminToken).post('/invitations', { email: 'carol@example.com', roles: ['viewer'] }).expect(201)).body;
    await owner.query("update invitations set expires_at = now() - interval '1 second' where id = $1", [expired.id]);
    expect((await accept(expired.token, carol).expect(410)).body.code).toBe('invitation_expired');
    expect((await as(acme, adminToken).get('/invitations').expect(200)).body.data.find((item: { id: string }) => item.id === expired.id).status).toBe('expired');

    const revoked = (await as(acme, adminToken).post('/invitations', { email: 'carol@example.com', roles: ['viewer'] }).expect(201)).body;
    await as(acme, adminToken).delete(`/invitations/${revoked.id}`).expect(204);
    expect((await as(acme, adminToken).delete(`/invitations/${revoked.id}`).expect(409)).body.code).toBe('invitation_not_pending');
    expect((await accept(revoked.token, carol).expect(409)).body.code).toBe('invitation_revoked');

    expect((await accept('A'.repeat(43), carol).expect(404)).body.code).toBe('invitation_not_found');
    expect((await accept('not-a-token', carol).expect(404)).body.code).toBe('invitation_not_found');
    expect((await owner.query("select 1 from members where workspace_id = $1 and user_id = 'user_carol'", [acme.id])).rowCount).toBe(0);
  });

  it('needs a token of the invitation’s workspace with the invited email, verified', async () => {
    const other = await membersWorkspace('other');
    const invitation = (await as(acme, adminToken).post('/invitations', { email: 'dan@example.com', roles: ['viewer'] }).expect(201)).body;
    const wrongWorkspace = await other.token('user_dan', { email: 'dan@example.com' });
    expect((await accept(invitation.token, wrongWorkspace).expect(403)).body.code).toBe('org_mismatch');
    expect((await accept(invitation.token, await acme.token('user_dan', { email: 'mallory@example.com' })).expect(403)).body.code).toBe('invitation_email_mismatch');
    expect((await accept(invitation.token, await acme.token('user_dan')).expect(403)).body.code).toBe('invitation_email_mismatch');
    expect((await accept(invitation.token, await acme.token('user_dan', { email: 'dan@example.com', email_verified: false })).expect(403)).body.code).toBe('invitation_email_mismatch');
    await cordon.http().post(`/v1/invitations/${invitation.token}/accept`).expect(401);
    await accept(invitation.token, await acme.token('user_dan', { email: 'DAN@example.com', email_verified: true })).expect(200);
  });

  it('creates one member when two accepts race, and answers the other with 409', async () => {
    const invitation = (await as(acme, adminToken).post('/invitations', { email: 'erin@example.com', roles: ['member'] }).expect(201)).body;
    const erin = await acme.token('user_erin', { email: 'erin@example.com' });
    const statuses = (await Promise.all([accept(invitation.token, erin), accept(invitation.token, erin), accept(invitation.token, erin)])).map((response) => response.status).sort();
    expect(statuses).toEqual([200, 409, 409]);
    expect((await owner.query("select count(*)::int as members from members where workspace_id = $1 and user_id = 'user_erin'", [acme.id])).rows[0].members).toBe(1);
  });

  it('replaces a pending invitation of the same email', async () => {
    const first = (await as(acme, adminToken).post('/invitations', { email: 'fay@example.com', roles: ['viewer'] }).expect(201)).body;
    const second = (await as(acme, adminToken).post('/invitations', { email: 'FAY@example.com', roles: ['member'] }).expect(201)).body;
    const fay = await acme.token('user_fay', { email: 'fay@example.com' });
    expect((await accept(first.token, fay).expect(409)).body.code).toBe('invitation_revoked');
    expect((await accept(second.token, fay).expect(200)).body.roles).toEqual(['member']);
  });

  it('refuses an inviter granting roles it does not hold, unless it manages members', async () => {
    await as(acme, adminToken).post('/policies', {
      name: 'inviter', description: '', roles: ['inviter'],
      rules: [{ action: ['create', 'read'], subject: ['Invitation', 'Member'] }],
    }).expect(201);
    await addMember(acme, 'user_inviter', ['inviter']);
    const inviter = await acme.token('user_inviter');
    const refused = await as(acme, inviter).post('/invitations', { email: 'gus@example.com', roles: ['admin'] }).expect(403);
    expect(refused.body.detail).toMatch(/"admin"/);
    await as(acme, inviter).post('/members', { userId: 'user_gus', roles: ['admin'] }).expect(403);
    expect((await owner.query("select count(*)::int as n from invitations where workspace_id = $1 and email = 'gus@example.com'", [acme.id])).rows[0].n).toBe(0);
    expect((await owner.query("select 1 from members where workspace_id = $1 and user_id = 'user_gus'", [acme.id])).rowCount).toBe(0);
    await as(acme, inviter).post('/invitations', { email: 'gus@example.com', roles: ['inviter'] }).expect(201);
    await as(acme, adminToken).post('/invitations', { email: 'hal@example.com', roles: ['admin'] }).expect(201);
  });

  it('answers bad input with 400 and pointers', async () => {
    const response = await as(acme, adminToken).post('/invitations', { email: 'not an email', roles: [], extra: 1 }).expect(400);
    expect(response.body.errors.map((error: { pointer: string }) => error.pointer).sort()).toEqual(['', '/email', '/roles']);
  });
});

describe('members', () => {
  it('keeps the last member who can manage members', async () => {
    const solo = await membersWorkspace('solo');
    await addMember(solo, 'user_owner', ['admin']);
    await addMember(solo, 'user_helper', ['member']);
    const ownerToken = await solo.token('user_owner');
    expect((await as(solo, ownerToken).patch('/members/user_owner', { roles: ['member'] }).expect(409)).body.code).toBe('last_admin');
    expect((await as(solo, ownerToken).delete('/members/user_owner').expect(409)).body.code).toBe('last_admin');
    await cordon.admin().delete(`/v1/workspaces/${solo.slug}/members/user_owner`).expect(409);
    // A non-manager can always go; a second manager makes the first one free to step down.
    await as(solo, ownerToken).patch('/members/user_helper', { roles: ['viewer'] }).expect(200);
    await as(solo, ownerToken).patch('/members/user_helper', { roles: ['viewer', 'admin'] }).expect(200);
    await as(solo, ownerToken).patch('/members/user_owner', { roles: ['viewer'] }).expect(200);
    expect((await owner.query('select roles from members where workspace_id = $1 order by user_id', [solo.id])).rows).toEqual([{ roles: ['viewer', 'admin'] }, { roles: ['viewer'] }]);
  });

  it('gives a user of two workspaces each workspace’s roles, and nothing of one in the other', async () => {
    const north = await membersWorkspace('north');
    const south = await membersWorkspace('south');
    await addMember(north, 'user_ivy', ['viewer']);
    await addMember(south, 'user_ivy', ['admin']);
    expect(await rolesIn(north, await north.token('user_ivy'))).toEqual(['viewer']);
    expect(await rolesIn(south, await south.token('user_ivy'))).toEqual(['admin']);
    // North's token in south's URL is refused, roles or not.
    await as(south, await north.token('user_ivy')).get('/members').expect(403);
    await as(north, await north.token('user_ivy')).get(`/members/user_ivy`).expect(200);
    const list = (await as(north, await north.token('user_ivy')).get('/members').expect(200)).body.data;
    expect(list).toEqual([expect.objectContaining({ userId: 'user_ivy', roles: ['viewer'] })]);
    const counts = (await cordon.admin().get('/v1/workspaces?limit=200').expect(200)).body.data.filter((workspace: { slug: string }) => [north.slug, south.slug].includes(workspace.slug));
    expect(counts.map((workspace: { memberCount: number }) => workspace.memberCount)).toEqual([1, 1]);
  });

  it('refuses member changes without a token, from another workspace and for a lower role, leaving rows unchanged', async () => {
    const team = await membersWorkspace('team');
    await addMember(team, 'user_lead', ['admin']);
    await addMember(team, 'user_worker', ['member']);
    const worker = await team.token('user_worker');
    await as(team, worker).post('/members', { userId: 'user_new', roles: ['member'] }).expect(403);
    await as(team, worker).patch('/members/user_worker', { roles: ['admin'] }).expect(403);
    await as(team, worker).delete('/members/user_lead').expect(403);
    await as(team, worker).post('/invitations', { email: 'x@example.com', roles: ['member'] }).expect(403);
    await cordon.http().delete(`/v1/workspaces/${team.slug}/members/user_lead`).expect(401);
    await as(team, adminToken).delete('/members/user_lead').expect(403);
    expect((await owner.query('select user_id, roles from members where workspace_id = $1 order by user_id', [team.id])).rows).toEqual([
      { user_id: 'user_lead', roles: ['admin'] },
      { user_id: 'user_worker', roles: ['member'] },
    ]);
  });

  it('grants nothing on members through a conditional rule, and lets no one take away roles they do not hold', async () => {
    const shop = await membersWorkspace('shop');
    const admin = (await cordon.admin().post(`/v1/workspaces/${shop.slug}/policies`).send({
      name: 'staff', description: '', roles: ['staff'],
      rules: [
        { action: ['read', 'update'], subject: 'all', conditions: { createdBy: '${principal.id}' } },
        { action: 'update', subject: 'Member', reason: 'staff edit members' },
      ],
    }).expect(201)).body;
    expect(admin.id).toBeDefined();
    const refused = await cordon.admin().post(`/v1/workspaces/${shop.slug}/policies`).send({
      name: 'self-service', description: '', roles: ['staff'],
      rules: [{ action: 'update', subject: 'Member', conditions: { userId: '${principal.id}' } }],
    }).expect(400);
    expect(refused.body.errors).toEqual([expect.objectContaining({ pointer: '/rules/0/conditions' })]);
    await addMember(shop, 'user_boss', ['admin']);
    await addMember(shop, 'user_clerk', ['staff']);
    await addMember(shop, 'user_other', ['staff', 'viewer']);
    const clerk = await shop.token('user_clerk');
    // A conditional allow on `all` is not a grant on members: reading them stays forbidden.
    await as(shop, clerk).get('/members').expect(403);
    // Unconditional update, but only of roles the clerk holds.
    expect((await as(shop, clerk).patch('/members/user_boss', { roles: [] }).expect(403)).body.detail).toMatch(/"admin"/);
    expect((await as(shop, clerk).patch('/members/user_other', { roles: ['staff'] }).expect(403)).body.detail).toMatch(/"viewer"/);
    await as(shop, clerk).patch('/members/user_other', { email: 'other@shop.test' }).expect(200);
    expect((await owner.query('select user_id, roles from members where workspace_id = $1 order by user_id', [shop.id])).rows).toEqual([
      { user_id: 'user_boss', roles: ['admin'] },
      { user_id: 'user_clerk', roles: ['staff'] },
      { user_id: 'user_other', roles: ['staff', 'viewer'] },
    ]);
  });

  it('treats user ids as opaque strings and answers duplicates and unknown ids clearly', async () => {
    const odd = 'auth0|64f/ä b';
    await addMember(acme, odd, ['viewer']);
    const path = `/members/${encodeURIComponent(odd)}`;
    expect((await as(acme, adminToken).get(path).expect(200)).body.userId).toBe(odd);
    expect((await cordon.admin().post(`/v1/workspaces/${acme.slug}/members`).send({ userId: odd, roles: [] }).expect(409)).body.code).toBe('member_exists');
    expect((await as(acme, adminToken).get('/members/nobody').expect(404)).body.code).toBe('member_not_found');
    await as(acme, adminToken).delete(path).expect(204);
  });
});
