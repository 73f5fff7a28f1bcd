import type pg from 'pg';
import { pino } from 'pino';
import { MemberRoles } from '../src/auth/member-roles.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { addMember, client, membersWorkspace, rolesIn, type MembersWorkspace } from './support/members.ts';

let cordon: TestApp;
/** A second instance of the same deployment: it hears of changes only through LISTEN/NOTIFY. */
let second: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

beforeAll(async () => {
  [cordon, second] = await Promise.all([startTestApp({ listen: true }), startTestApp({ listen: true })]);
  owner = await ownerClient();
  issuer = await TestIssuer.start();
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
  await second.close();
});

/** Changes a member's roles the way no route does: in the table, announcing nothing. */
const behindItsBack = (workspace: MembersWorkspace, userId: string, roles: string[]) =>
  owner.query('update members set roles = $3 where workspace_id = $1 and user_id = $2', [workspace.id, userId, roles]);

const changeRoles = (instance: TestApp, workspace: MembersWorkspace, userId: string, roles: string[]) =>
  instance.admin().patch(`/v1/workspaces/${workspace.slug}/members/${userId}`).send({ roles }).expect(200);

describe('roles from the members table, cached per member', () => {
  it('does not read the members table again for the next request of the same member', async () => {
    const team = await membersWorkspace(cordon, issuer, 'cached-roles');
    await addMember(cordon, team, 'user_cached', ['viewer']);
    const token = await team.token('user_cached');
    expect(await rolesIn(cordon, team, token)).toEqual(['viewer']);
    await behindItsBack(team, 'user_cached', ['admin']);
    expect(await rolesIn(cordon, team, token)).toEqual(['viewer']);
  });

  it('applies a role change of a member to the very next request on this instance', async () => {
    const team = await membersWorkspace(cordon, issuer, 'next-request');
    await addMember(cordon, team, 'user_next', ['viewer']);
    const token = await team.token('user_next');
    expect(await rolesIn(cordon, team, token)).toEqual(['viewer']);
    await changeRoles(cordon, team, 'user_next', ['auditor']);
    expect(await rolesIn(cordon, team, token)).toEqual(['auditor']);
    // The roles decide at once: a viewer could list members, an auditor with no such rule cannot.
    await changeRoles(cordon, team, 'user_next', []);
    expect((await client(cordon, team, token).get('/members').expect(403)).body.detail).toBe('default deny');
  });

  it('applies a role change made on another instance once its notification arrives', async () => {
    const team = await membersWorkspace(cordon, issuer, 'other-instance');
    await addMember(cordon, team, 'user_far', ['viewer']);
    const token = await team.token('user_far');
    expect(await rolesIn(second, team, token)).toEqual(['viewer']);
    // The notification, once the second instance has heard it (its cache heard it first).
    const heard = new Promise<void>((resolve) =>
      second.changes.subscribe((change) => {
        if (change.topic === 'member' && change.workspaceId === team.id && change.userId === 'user_far') resolve();
      }),
    );
    await changeRoles(cordon, team, 'user_far', ['auditor']);
    await heard;
    await eventually(async () => (await rolesIn(second, team, token)).join() === 'auditor');
    // A read that the notification overtook answers but is not cached: one more read caches.
    expect(await rolesIn(second, team, token)).toEqual(['auditor']);
    // The second instance caches too: only the notification told it.
    await behindItsBack(team, 'user_far', ['admin']);
    expect(await rolesIn(second, team, token)).toEqual(['auditor']);
  });

  it('takes a removed member’s roles away at once here, and on another instance once notified', async () => {
    const team = await membersWorkspace(cordon, issuer, 'removed');
    await addMember(cordon, team, 'user_admin', ['admin']);
    await addMember(cordon, team, 'user_gone', ['viewer']);
    const token = await team.token('user_gone');
    expect(await rolesIn(cordon, team, token)).toEqual(['viewer']);
    expect(await rolesIn(second, team, token)).toEqual(['viewer']);
    await cordon.admin().delete(`/v1/workspaces/${team.slug}/members/user_gone`).expect(204);
    expect(await rolesIn(cordon, team, token)).toEqual([]);
    await client(cordon, team, token).get('/members').expect(403);
    await eventually(async () => (await rolesIn(second, team, token)).length === 0);
  });

  it('gives a new member its roles at once, though its token was seen before it joined', async () => {
    const team = await membersWorkspace(cordon, issuer, 'joined');
    const token = await team.token('user_new');
    expect(await rolesIn(cordon, team, token)).toEqual([]);
    expect(await rolesIn(second, team, token)).toEqual([]);
    await addMember(cordon, team, 'user_new', ['viewer']);
    expect(await rolesIn(cordon, team, token)).toEqual(['viewer']);
    await eventually(async () => (await rolesIn(second, team, token)).join() === 'viewer');
  });

  it('drops only the changed member: the others stay cached', async () => {
    const team = await membersWorkspace(cordon, issuer, 'one-member');
    await addMember(cordon, team, 'user_changed', ['viewer']);
    await addMember(cordon, team, 'user_kept', ['viewer']);
    const changed = await team.token('user_changed');
    const kept = await team.token('user_kept');
    expect(await rolesIn(cordon, team, changed)).toEqual(['viewer']);
    expect(await rolesIn(cordon, team, kept)).toEqual(['viewer']);
    await behindItsBack(team, 'user_kept', ['admin']);
    await changeRoles(cordon, team, 'user_changed', ['auditor']);
    expect(await rolesIn(cordon, team, changed)).toEqual(['auditor']);
    expect(await rolesIn(cordon, team, kept)).toEqual(['viewer']);
  });

  it('gives an invited user the invitation’s roles at once when it accepts, here and on another instance', async () => {
    const team = await membersWorkspace(cordon, issuer, 'invited');
    await addMember(cordon, team, 'user_admin', ['admin']);
    const invitee = await team.token('user_invitee', { email: 'invitee@example.com' });
    expect(await rolesIn(cordon, team, invitee)).toEqual([]);
    expect(await rolesIn(second, team, invitee)).toEqual([]);
    const invitation = (
      await client(cordon, team, await team.token('user_admin'))
        .post('/invitations', { email: 'invitee@example.com', roles: ['viewer'] })
        .expect(201)
    ).body;
    await cordon
      .http()
      .post(`/v1/invitations/${invitation.token}/accept`)
      .auth(invitee, { type: 'bearer' })
      .expect(200);
    expect(await rolesIn(cordon, team, invitee)).toEqual(['viewer']);
    await eventually(async () => (await rolesIn(second, team, invitee)).join() === 'viewer');
  });
});

describe('the member-roles cache', () => {
  /** A cache over the real database, following a bus only the test speaks on, on a clock it moves. */
  function memberRoles(max = 10_000) {
    const changes = new ChangeBus(undefined, pino({ level: 'silent' }));
    const clock = { now: Date.now() };
    const roles = new MemberRoles(cordon.database, changes, { max, ttlMs: 60_000, now: () => clock.now });
    return { roles, changes, advance: (millis: number) => (clock.now += millis) };
  }

  it('does not cache a lookup that a change overtook', async () => {
    const team = await membersWorkspace(cordon, issuer, 'overtaken');
    await addMember(cordon, team, 'user_o', ['viewer']);
    const { roles, changes } = memberRoles();
    const answer = roles.of(team.id, 'user_o');
    // Nothing was awaited yet, so the lookup is in flight when the change arrives.
    changes.apply({ topic: 'member', workspaceId: team.id, userId: 'user_o' });
    expect(await answer).toEqual(['viewer']);
    await behindItsBack(team, 'user_o', ['admin']);
    expect(await roles.of(team.id, 'user_o')).toEqual(['admin']);
  });

  it('caches a lookup that only a change to another workspace overtook', async () => {
    const team = await membersWorkspace(cordon, issuer, 'elsewhere');
    await addMember(cordon, team, 'user_e', ['viewer']);
    const { roles, changes } = memberRoles();
    const answer = roles.of(team.id, 'user_e');
    // Other tenants' changes arrive all the time: they must not keep this member from being cached.
    changes.apply({ topic: 'member', workspaceId: '00000000-0000-4000-8000-000000000001', userId: 'user_e' });
    changes.apply({ topic: 'workspace', workspaceId: '00000000-0000-4000-8000-000000000002' });
    expect(await answer).toEqual(['viewer']);
    await behindItsBack(team, 'user_e', ['admin']);
    expect(await roles.of(team.id, 'user_e')).toEqual(['viewer']);
  });

  it('reads a member again once its entry is older than the time to live, though no change was heard of', async () => {
    const team = await membersWorkspace(cordon, issuer, 'ttl');
    await addMember(cordon, team, 'user_t', ['viewer']);
    const { roles, advance } = memberRoles();
    expect(await roles.of(team.id, 'user_t')).toEqual(['viewer']);
    await behindItsBack(team, 'user_t', ['admin']);
    advance(59_000);
    expect(await roles.of(team.id, 'user_t')).toEqual(['viewer']);
    advance(2_000);
    expect(await roles.of(team.id, 'user_t')).toEqual(['admin']);
  });

  it('drops every member of the workspace, and only of it, on a member change that names no user', async () => {
    const team = await membersWorkspace(cordon, issuer, 'all-members');
    const other = await membersWorkspace(cordon, issuer, 'other-members');
    await addMember(cordon, team, 'user_a', ['viewer']);
    await addMember(cordon, team, 'user_b', ['viewer']);
    await addMember(cordon, other, 'user_a', ['viewer']);
    const { roles, changes } = memberRoles();
    for (const [workspace, user] of [
      [team, 'user_a'],
      [team, 'user_b'],
      [other, 'user_a'],
    ] as const)
      expect(await roles.of(workspace.id, user)).toEqual(['viewer']);
    await behindItsBack(team, 'user_a', ['admin']);
    await behindItsBack(team, 'user_b', ['admin']);
    await behindItsBack(other, 'user_a', ['admin']);
    changes.apply({ topic: 'member', workspaceId: team.id });
    expect(await roles.of(team.id, 'user_a')).toEqual(['admin']);
    expect(await roles.of(team.id, 'user_b')).toEqual(['admin']);
    expect(await roles.of(other.id, 'user_a')).toEqual(['viewer']);
  });

  it('holds no more members than its bound', async () => {
    const team = await membersWorkspace(cordon, issuer, 'bounded');
    const { roles } = memberRoles(3);
    for (let user = 0; user < 10; user++) expect(await roles.of(team.id, `user_${user}`)).toEqual([]);
    expect(roles.size).toBe(3);
  });
});
