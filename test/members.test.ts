import type pg from 'pg';
import { listedWorkspace, ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { addMember, client, membersWorkspace, rolesIn, type MembersWorkspace } from './support/members.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;

let acme: MembersWorkspace;
let adminToken: string;

const storedMembers = async (workspace: MembersWorkspace) =>
  (
    await owner.query('select user_id, email, roles from members where workspace_id = $1 order by user_id', [
      workspace.id,
    ])
  ).rows;

const memberCount = async (workspace: MembersWorkspace) =>
  (await cordon.admin().get(`/v1/workspaces/${workspace.slug}`).expect(200)).body.memberCount as number;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  acme = await membersWorkspace(cordon, issuer, 'acme');
  await addMember(cordon, acme, 'user_admin', ['admin'], 'admin@acme.test');
  adminToken = await acme.token('user_admin');
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

describe('members by policy', () => {
  it('adds, reads, changes and removes a member, logging each decision with the change', async () => {
    const admin = client(cordon, acme, adminToken);
    const created = await admin
      .post('/members', { userId: 'user_crud', email: 'crud@example.com', roles: ['viewer', 'viewer'] })
      .expect(201);
    expect(created.body).toEqual({
      userId: 'user_crud',
      email: 'crud@example.com',
      roles: ['viewer'],
      invitedBy: 'user_admin',
      joinedAt: expect.any(String),
      updatedAt: expect.any(String),
    });
    expect(created.headers.location).toBe(`/v1/workspaces/${acme.slug}/members/user_crud`);
    expect((await admin.get('/members/user_crud').expect(200)).body).toEqual(created.body);

    const updated = await admin.patch('/members/user_crud', { roles: ['member'], email: null }).expect(200);
    expect(updated.body).toMatchObject({
      userId: 'user_crud',
      email: null,
      roles: ['member'],
      joinedAt: created.body.joinedAt,
    });
    await admin.delete('/members/user_crud').expect(204);
    expect((await admin.get('/members/user_crud').expect(404)).body.code).toBe('member_not_found');

    const { rows } = await owner.query(
      "select action, operation, allowed from decisions where workspace_id = $1 and principal_id = 'user_admin' and subject = 'Member' and operation <> 'get' order by position",
      [acme.id],
    );
    expect(rows).toEqual(
      expect.arrayContaining([
        { action: 'create', operation: 'create', allowed: true },
        { action: 'update', operation: 'update', allowed: true },
        { action: 'delete', operation: 'delete', allowed: true },
      ]),
    );
  });

  it('treats user ids as opaque strings and answers duplicates and unknown ids clearly', async () => {
    const odd = 'auth0|64f/ä b?x=1#frag';
    const created = await addMember(cordon, acme, odd, ['viewer']);
    expect(created.headers.location).toBe(`/v1/workspaces/${acme.slug}/members/${encodeURIComponent(odd)}`);
    const path = `/members/${encodeURIComponent(odd)}`;
    const admin = client(cordon, acme, adminToken);
    expect((await admin.get(path).expect(200)).body.userId).toBe(odd);
    expect(
      (await cordon.admin().post(`/v1/workspaces/${acme.slug}/members`).send({ userId: odd, roles: [] }).expect(409))
        .body.code,
    ).toBe('member_exists');
    expect((await admin.get('/members/nobody').expect(404)).body.code).toBe('member_not_found');
    await admin.delete(path).expect(204);
  });

  it('stores any role name a policy could use, spaces, commas, braces and quotes included', async () => {
    const roles = ['team lead', 'a,b', '{x}', 'say "hi"', 'back\\slash', 'NULL'];
    const created = await client(cordon, acme, adminToken)
      .post('/members', { userId: 'user_roles', roles })
      .expect(201);
    expect(created.body.roles).toEqual(roles);
    expect(
      (await owner.query("select roles from members where workspace_id = $1 and user_id = 'user_roles'", [acme.id]))
        .rows,
    ).toEqual([{ roles }]);
    await client(cordon, acme, adminToken).delete('/members/user_roles').expect(204);
  });

  it('pages through members by join time and counts them on request', async () => {
    const team = await membersWorkspace(cordon, issuer, 'paging');
    for (const user of ['p1', 'p2', 'p3', 'p4', 'p5']) await addMember(cordon, team, user, ['viewer']);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const query: string = cursor ? `?limit=2&count=true&cursor=${cursor}` : '?limit=2&count=true';
      const page: { data: { userId: string }[]; nextCursor: string | null; count: number } = (
        await cordon.admin().get(`/v1/workspaces/${team.slug}/members${query}`).expect(200)
      ).body;
      expect(page.count).toBe(5);
      expect(page.data.length).toBeLessThanOrEqual(2);
      seen.push(...page.data.map((member) => member.userId));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(['p1', 'p2', 'p3', 'p4', 'p5']);
    expect((await cordon.admin().get(`/v1/workspaces/${team.slug}/members`).expect(200)).body).not.toHaveProperty(
      'count',
    );
  });

  it("keeps the workspace list's memberCount equal to the members added and removed through the API", async () => {
    const counted = await membersWorkspace(cordon, issuer, 'counted');
    expect(await memberCount(counted)).toBe(0);
    await addMember(cordon, counted, 'c1', ['admin']);
    await addMember(cordon, counted, 'c2', ['viewer']);
    await addMember(cordon, counted, 'c3', []);
    expect(await memberCount(counted)).toBe(3);
    await cordon.admin().delete(`/v1/workspaces/${counted.slug}/members/c3`).expect(204);
    expect(await memberCount(counted)).toBe(2);
    const listed = await listedWorkspace<{ id: string; memberCount: number }>(cordon, counted.id);
    expect(listed?.memberCount).toBe(2);
  });
});

describe('roles from the members table', () => {
  it('gives a user of two workspaces each workspace’s roles, and nothing of one in the other', async () => {
    const north = await membersWorkspace(cordon, issuer, 'north');
    const south = await membersWorkspace(cordon, issuer, 'south');
    await addMember(cordon, north, 'user_ivy', ['viewer']);
    await addMember(cordon, south, 'user_ivy', ['admin']);
    expect(await rolesIn(cordon, north, await north.token('user_ivy'))).toEqual(['viewer']);
    expect(await rolesIn(cordon, south, await south.token('user_ivy'))).toEqual(['admin']);
    // The viewer of north may not change north's members, though the same user administers south.
    await client(cordon, north, await north.token('user_ivy'))
      .post('/members', { userId: 'x', roles: [] })
      .expect(403);
    await client(cordon, south, await south.token('user_ivy'))
      .post('/members', { userId: 'x', roles: [] })
      .expect(201);
    // North's token in south's URL is refused, roles or not.
    expect(
      (
        await client(cordon, south, await north.token('user_ivy'))
          .get('/members')
          .expect(403)
      ).body.code,
    ).toBe('org_mismatch');
    const list = (
      await client(cordon, north, await north.token('user_ivy'))
        .get('/members')
        .expect(200)
    ).body.data;
    expect(list).toEqual([expect.objectContaining({ userId: 'user_ivy', roles: ['viewer'] })]);
  });

  it('applies a member change to the next request, on this instance and on another', async () => {
    // Another instance caches a member's roles too, and hears of a change through LISTEN/NOTIFY.
    const other = await startTestApp({ listen: true });
    try {
      const team = await membersWorkspace(cordon, issuer, 'next');
      await addMember(cordon, team, 'user_next', ['viewer']);
      const token = await team.token('user_next');
      const listed = async (instance: TestApp) => (await client(instance, team, token).get('/members')).status;
      await client(other, team, token).get('/members').expect(200);
      await client(cordon, team, token).get('/members').expect(200);
      await cordon.admin().patch(`/v1/workspaces/${team.slug}/members/user_next`).send({ roles: [] }).expect(200);
      await client(cordon, team, token).get('/members').expect(403);
      await eventually(async () => (await listed(other)) === 403);
      expect((await client(other, team, token).get('/members').expect(403)).body.detail).toBe('default deny');
      await cordon
        .admin()
        .patch(`/v1/workspaces/${team.slug}/members/user_next`)
        .send({ roles: ['viewer'] })
        .expect(200);
      await client(cordon, team, token).get('/members').expect(200);
      await eventually(async () => (await listed(other)) === 200);
      await cordon.admin().delete(`/v1/workspaces/${team.slug}/members/user_next`).expect(204);
      expect(await rolesIn(cordon, team, token)).toEqual([]);
      await eventually(async () => (await rolesIn(other, team, token)).length === 0);
    } finally {
      await other.close();
    }
  });

  it('with roleSource "both", unions the token’s roles with the member row’s', async () => {
    const both = await membersWorkspace(cordon, issuer, 'both', { roleSource: 'both' });
    await addMember(cordon, both, 'user_both', ['auditor']);
    expect(
      (await rolesIn(cordon, both, await both.token('user_both', { o: { id: both.orgId, rol: 'viewer' } }))).sort(),
    ).toEqual(['auditor', 'viewer']);
    expect(
      await rolesIn(cordon, both, await both.token('user_nobody', { o: { id: both.orgId, rol: 'viewer' } })),
    ).toEqual(['viewer']);
  });
});

describe('the last member who can manage members', () => {
  it('cannot be demoted or removed, by anyone', async () => {
    const solo = await membersWorkspace(cordon, issuer, 'solo');
    await addMember(cordon, solo, 'user_owner', ['admin']);
    await addMember(cordon, solo, 'user_helper', ['member']);
    const owner_ = client(cordon, solo, await solo.token('user_owner'));
    expect((await owner_.patch('/members/user_owner', { roles: ['member'] }).expect(409)).body.code).toBe('last_admin');
    expect((await owner_.delete('/members/user_owner').expect(409)).body.code).toBe('last_admin');
    await cordon.admin().delete(`/v1/workspaces/${solo.slug}/members/user_owner`).expect(409);
    // An email change is no demotion; a non-manager can always go; a second manager frees the first.
    await owner_.patch('/members/user_owner', { email: 'owner@example.com' }).expect(200);
    await owner_.patch('/members/user_helper', { roles: ['viewer'] }).expect(200);
    await owner_.patch('/members/user_helper', { roles: ['viewer', 'admin'] }).expect(200);
    await owner_.patch('/members/user_owner', { roles: ['viewer'] }).expect(200);
    expect(await storedMembers(solo)).toEqual([
      { user_id: 'user_helper', email: null, roles: ['viewer', 'admin'] },
      { user_id: 'user_owner', email: 'owner@example.com', roles: ['viewer'] },
    ]);
  });

  it('is whoever holds a role whose policy manages Member, whatever the role is called', async () => {
    const custom = await membersWorkspace(cordon, issuer, 'people');
    await cordon
      .admin()
      .post(`/v1/workspaces/${custom.slug}/policies`)
      .send({ name: 'people-ops', roles: ['people-ops'], rules: [{ action: 'manage', subject: 'Member' }] })
      .expect(201);
    await addMember(cordon, custom, 'user_root', ['admin']);
    await addMember(cordon, custom, 'user_hr', ['people-ops']);
    await cordon
      .admin()
      .patch(`/v1/workspaces/${custom.slug}/members/user_root`)
      .send({ roles: ['viewer'] })
      .expect(200);
    expect(
      (
        await cordon
          .admin()
          .patch(`/v1/workspaces/${custom.slug}/members/user_hr`)
          .send({ roles: ['viewer'] })
          .expect(409)
      ).body.code,
    ).toBe('last_admin');
    expect((await cordon.admin().delete(`/v1/workspaces/${custom.slug}/members/user_hr`).expect(409)).body.code).toBe(
      'last_admin',
    );
  });

  it.each([
    [
      'two demotions',
      (path: string) =>
        cordon
          .admin()
          .patch(path)
          .send({ roles: ['viewer'] }),
      (path: string) =>
        cordon
          .admin()
          .patch(path)
          .send({ roles: ['viewer'] }),
    ],
    ['two removals', (path: string) => cordon.admin().delete(path), (path: string) => cordon.admin().delete(path)],
    [
      'a demotion and a removal',
      (path: string) =>
        cordon
          .admin()
          .patch(path)
          .send({ roles: ['member'] }),
      (path: string) => cordon.admin().delete(path),
    ],
  ])('survives %s racing each other: exactly one goes through', async (_name, first, second) => {
    for (let round = 0; round < 5; round += 1) {
      const pair = await membersWorkspace(cordon, issuer, 'race');
      await addMember(cordon, pair, 'user_a', ['admin']);
      await addMember(cordon, pair, 'user_b', ['admin']);
      const base = `/v1/workspaces/${pair.slug}/members`;
      const responses = await Promise.all([first(`${base}/user_a`), second(`${base}/user_b`)]);
      const succeeded = responses.filter((response) => response.status < 300);
      expect(succeeded).toHaveLength(1);
      expect(responses.filter((response) => response.status === 409).map((response) => response.body.code)).toEqual([
        'last_admin',
      ]);
      const admins = (await storedMembers(pair)).filter((member) => member.roles.includes('admin'));
      expect(admins).toHaveLength(1);
    }
  });
});

describe('no escalation', () => {
  let team: MembersWorkspace;
  let manager: ReturnType<typeof client>;

  beforeAll(async () => {
    team = await membersWorkspace(cordon, issuer, 'escalate');
    await cordon
      .admin()
      .post(`/v1/workspaces/${team.slug}/policies`)
      .send({
        name: 'team-lead',
        roles: ['lead'],
        rules: [{ action: ['create', 'read', 'update'], subject: 'Member' }],
      })
      .expect(201);
    await addMember(cordon, team, 'user_boss', ['admin']);
    await addMember(cordon, team, 'user_lead', ['lead', 'viewer']);
    manager = client(cordon, team, await team.token('user_lead'));
  });

  it('lets a principal that may create members grant only roles it holds', async () => {
    const refused = await manager.post('/members', { userId: 'user_new', roles: ['viewer', 'admin'] }).expect(403);
    expect(refused.body).toMatchObject({
      code: 'forbidden',
      detail: 'may only grant or take away roles held by the grantor; not "admin"',
    });
    expect(
      (await owner.query("select 1 from members where workspace_id = $1 and user_id = 'user_new'", [team.id])).rowCount,
    ).toBe(0);
    await manager.post('/members', { userId: 'user_new', roles: ['viewer'] }).expect(201);
  });

  it('refuses adding a role it does not hold on update, and logs the denial as that update', async () => {
    const refused = await manager.patch('/members/user_new', { roles: ['viewer', 'member'] }).expect(403);
    expect(refused.body.detail).toBe('may only grant or take away roles held by the grantor; not "member"');
    expect(
      (await owner.query("select roles from members where workspace_id = $1 and user_id = 'user_new'", [team.id])).rows,
    ).toEqual([{ roles: ['viewer'] }]);
    const { rows } = await owner.query(
      "select action, operation, subject, resource_id, allowed, reason from decisions where workspace_id = $1 and principal_id = 'user_lead' and not allowed",
      [team.id],
    );
    expect(rows).toEqual(
      expect.arrayContaining([
        {
          action: 'update',
          operation: 'update',
          subject: 'Member',
          resource_id: 'user_new',
          allowed: false,
          reason: 'may only grant or take away roles held by the grantor; not "member"',
        },
        {
          action: 'create',
          operation: 'create',
          subject: 'Member',
          resource_id: 'user_new',
          allowed: false,
          reason: 'may only grant or take away roles held by the grantor; not "admin"',
        },
      ]),
    );
    // Taking away a role it holds is allowed, and so is leaving alone one it does not hold;
    // taking that one away is not.
    await cordon
      .admin()
      .patch(`/v1/workspaces/${team.slug}/members/user_new`)
      .send({ roles: ['viewer', 'auditor'] })
      .expect(200);
    await manager.patch('/members/user_new', { roles: ['auditor'] }).expect(200);
    expect((await manager.patch('/members/user_new', { roles: [] }).expect(403)).body.detail).toBe(
      'may only grant or take away roles held by the grantor; not "auditor"',
    );
  });

  it('lets a principal whose policy manages Member grant any role', async () => {
    const boss = client(cordon, team, await team.token('user_boss'));
    await boss.post('/members', { userId: 'user_promoted', roles: ['auditor', 'custom-role'] }).expect(201);
  });

  it('grants nothing on members through a conditional rule, and lets no one take away roles they do not hold', async () => {
    const shop = await membersWorkspace(cordon, issuer, 'shop');
    const admin = (
      await cordon
        .admin()
        .post(`/v1/workspaces/${shop.slug}/policies`)
        .send({
          name: 'staff',
          description: '',
          roles: ['staff'],
          rules: [
            { action: ['read', 'update'], subject: 'all', conditions: { createdBy: '${principal.id}' } },
            { action: 'update', subject: 'Member', reason: 'staff edit members' },
          ],
        })
        .expect(201)
    ).body;
    expect(admin.id).toBeDefined();
    const refused = await cordon
      .admin()
      .post(`/v1/workspaces/${shop.slug}/policies`)
      .send({
        name: 'self-service',
        description: '',
        roles: ['staff'],
        rules: [{ action: 'update', subject: 'Member', conditions: { userId: '${principal.id}' } }],
      })
      .expect(400);
    expect(refused.body.errors).toEqual([expect.objectContaining({ pointer: '/rules/0/conditions' })]);
    await addMember(cordon, shop, 'user_boss', ['admin']);
    await addMember(cordon, shop, 'user_clerk', ['staff']);
    await addMember(cordon, shop, 'user_other', ['staff', 'viewer']);
    const clerk = await shop.token('user_clerk');
    // A conditional allow on `all` is not a grant on members: reading them stays forbidden.
    await client(cordon, shop, clerk).get('/members').expect(403);
    // Unconditional update, but only of roles the clerk holds.
    expect(
      (await client(cordon, shop, clerk).patch('/members/user_boss', { roles: [] }).expect(403)).body.detail,
    ).toMatch(/"admin"/);
    expect(
      (
        await client(cordon, shop, clerk)
          .patch('/members/user_other', { roles: ['staff'] })
          .expect(403)
      ).body.detail,
    ).toMatch(/"viewer"/);
    await client(cordon, shop, clerk).patch('/members/user_other', { email: 'other@shop.test' }).expect(200);
    expect(
      (await owner.query('select user_id, roles from members where workspace_id = $1 order by user_id', [shop.id]))
        .rows,
    ).toEqual([
      { user_id: 'user_boss', roles: ['admin'] },
      { user_id: 'user_clerk', roles: ['staff'] },
      { user_id: 'user_other', roles: ['staff', 'viewer'] },
    ]);
  });
});

describe('denials leave members unchanged', () => {
  let team: MembersWorkspace;
  let stranger: MembersWorkspace;
  let before: unknown[];

  beforeAll(async () => {
    team = await membersWorkspace(cordon, issuer, 'team');
    stranger = await membersWorkspace(cordon, issuer, 'stranger');
    await addMember(cordon, team, 'user_lead', ['admin']);
    await addMember(cordon, team, 'user_worker', ['member']);
    await addMember(cordon, team, 'user_viewer', ['viewer']);
    await addMember(cordon, stranger, 'user_lead', ['admin']);
    before = await storedMembers(team);
  });

  const attempts = [
    [
      'POST /members',
      (request: ReturnType<typeof client>) => request.post('/members', { userId: 'user_new', roles: ['member'] }),
    ],
    [
      'PATCH /members/:userId',
      (request: ReturnType<typeof client>) => request.patch('/members/user_worker', { roles: ['admin'] }),
    ],
    ['DELETE /members/:userId', (request: ReturnType<typeof client>) => request.delete('/members/user_worker')],
  ] as const;

  it.each(attempts)('%s without a token: 401', async (_route, attempt) => {
    const response = await attempt(client(cordon, team)).expect(401);
    expect(response.body.code).toBe('token_missing');
    expect(await storedMembers(team)).toEqual(before);
  });

  it.each(attempts)('%s with an admin token of another workspace: 403 org_mismatch', async (_route, attempt) => {
    const response = await attempt(client(cordon, team, await stranger.token('user_lead'))).expect(403);
    expect(response.body.code).toBe('org_mismatch');
    expect(await storedMembers(team)).toEqual(before);
  });

  it.each(attempts)('%s by a member and by a viewer: 403 with the deciding rule, logged', async (_route, attempt) => {
    const asMember = await attempt(client(cordon, team, await team.token('user_worker'))).expect(403);
    expect(asMember.body).toMatchObject({
      code: 'forbidden',
      detail: 'members do not change structures or membership',
    });
    await attempt(client(cordon, team, await team.token('user_viewer'))).expect(403);
    expect(await storedMembers(team)).toEqual(before);
    const { rows } = await owner.query(
      "select count(*)::int as denied from decisions where workspace_id = $1 and principal_id = 'user_worker' and subject = 'Member' and not allowed",
      [team.id],
    );
    expect(rows[0].denied).toBeGreaterThan(0);
  });

  it('answers an id of another workspace exactly like a missing one', async () => {
    const admin = client(cordon, stranger, await stranger.token('user_lead'));
    const foreign = await admin.get('/members/user_worker').expect(404);
    const missing = await admin.get('/members/user_nobody').expect(404);
    expect({ ...foreign.body, requestId: 0, detail: 0 }).toEqual({ ...missing.body, requestId: 0, detail: 0 });
    await admin.patch('/members/user_worker', { roles: ['viewer'] }).expect(404);
    await admin.delete('/members/user_worker').expect(404);
    expect(await storedMembers(team)).toEqual(before);
  });
});

describe('bad input is a 400 with pointers, never a 500', () => {
  const pointers = (response: { body: { errors: { pointer: string }[] } }) =>
    response.body.errors.map((error) => error.pointer).sort();

  it.each([
    [{}, ['/roles', '/userId']],
    [{ userId: '', roles: 'admin', extra: 1 }, ['', '/roles', '/userId']],
    [{ userId: 'x'.repeat(501), roles: [] }, ['/userId']],
    [{ userId: 'nul\u0000inside', roles: [] }, ['/userId']],
    [{ userId: 'u', roles: ['ok', '', 7] }, ['/roles/1', '/roles/2']],
    [{ userId: 'u', roles: ['ok', 'nul\u0000'] }, ['/roles/1']],
    [{ userId: 'u', roles: [], email: 'not an email' }, ['/email']],
  ])('POST /members %j', async (body, expected) => {
    const response = await client(cordon, acme, adminToken).post('/members', body).expect(400);
    expect(response.body.code).toBe('validation_failed');
    expect(pointers(response)).toEqual(expected);
  });

  it.each([
    [{}, ['']],
    [{ roles: [1] }, ['/roles/0']],
    [{ roles: null }, ['/roles']],
    [{ userId: 'renamed' }, ['', '']], // an unknown key, and no field to change
  ])('PATCH /members/:userId %j', async (body, expected) => {
    const response = await client(cordon, acme, adminToken).patch('/members/user_admin', body).expect(400);
    expect(pointers(response)).toEqual(expected);
  });

  it.each([
    ['/members/%C3%28', ''],
    ['/members/a%00b', '/userId'],
    [`/members/${'x'.repeat(501)}`, '/userId'],
  ])('a path like %s', async (path, pointer) => {
    const response = await client(cordon, acme, adminToken).get(path).expect(400);
    expect(response.body).toMatchObject({
      code: 'validation_failed',
      errors: [expect.objectContaining({ pointer, in: 'params' })],
    });
  });

  it('a token whose subject contains NUL is refused as a token without a subject', async () => {
    const response = await client(cordon, acme, await acme.token('user\u0000admin'))
      .get('/members')
      .expect(401);
    expect(response.body.code).toBe('token_claims');
  });

  it.each([
    ['limit=0', '/limit'],
    ['limit=201', '/limit'],
    ['count=yes', '/count'],
    ['sort=userId', ''],
  ])('GET /members?%s', async (query, pointer) => {
    const response = await client(cordon, acme, adminToken).get(`/members?${query}`).expect(400);
    expect(response.body.errors).toEqual([expect.objectContaining({ pointer, in: 'query' })]);
  });

  it('a forged cursor is 400 invalid_cursor', async () => {
    const response = await client(cordon, acme, adminToken)
      .get(`/members?cursor=${Buffer.from('{"at":1}').toString('base64url')}`)
      .expect(400);
    expect(response.body.code).toBe('invalid_cursor');
  });
});

describe('member changes are judged on every role involved: the grantor’s, the combined ones, conditional denies', () => {
  it('refuses a removal by a grantor who does not hold the member’s roles, like a demotion', async () => {
    const team = await membersWorkspace(cordon, issuer, 'remove-grant');
    await cordon
      .admin()
      .post(`/v1/workspaces/${team.slug}/policies`)
      .send({
        name: 'lead',
        description: '',
        roles: ['lead'],
        rules: [{ action: ['create', 'read', 'update', 'delete'], subject: 'Member' }],
      })
      .expect(201);
    await addMember(cordon, team, 'boss', ['admin']);
    await addMember(cordon, team, 'other_boss', ['admin']);
    await addMember(cordon, team, 'lead', ['lead']);
    await addMember(cordon, team, 'peer', ['lead']);
    const lead = await team.token('lead');
    expect((await client(cordon, team, lead).delete('/members/boss').expect(403)).body.detail).toMatch(/"admin"/);
    await client(cordon, team, lead).delete('/members/peer').expect(204);
    expect((await storedMembers(team)).map((member: { user_id: string }) => member.user_id)).toEqual([
      'boss',
      'lead',
      'other_boss',
    ]);
  });

  it('decides the last-admin rule on each member’s combined roles', async () => {
    const team = await membersWorkspace(cordon, issuer, 'combined');
    await cordon
      .admin()
      .post(`/v1/workspaces/${team.slug}/policies`)
      .send({
        name: 'suspended',
        description: '',
        roles: ['suspended'],
        rules: [{ action: 'manage', subject: 'all', inverted: true }],
      })
      .expect(201);
    await addMember(cordon, team, 'boss', ['admin']);
    await addMember(cordon, team, 'ghost', ['admin', 'suspended']);
    expect((await cordon.admin().delete(`/v1/workspaces/${team.slug}/members/boss`).expect(409)).body.code).toBe(
      'last_admin',
    );
    expect(
      (
        await cordon
          .admin()
          .patch(`/v1/workspaces/${team.slug}/members/boss`)
          .send({ roles: ['admin', 'suspended'] })
          .expect(409)
      ).body.code,
    ).toBe('last_admin');
  });

  it('keeps admins able to administer when a conditional deny on all is about records, and /check agrees', async () => {
    const team = await membersWorkspace(cordon, issuer, 'frozen');
    await addMember(cordon, team, 'boss', ['admin']);
    await addMember(cordon, team, 'staff', ['staff']);
    const boss = await team.token('boss');
    await client(cordon, team, boss)
      .post('/policies', {
        name: 'frozen',
        description: '',
        roles: ['admin'],
        rules: [
          {
            action: 'manage',
            subject: 'all',
            inverted: true,
            conditions: { locked: true },
            reason: 'locked records are frozen',
          },
        ],
      })
      .expect(201);
    await client(cordon, team, boss)
      .post('/policies', {
        name: 'staff',
        description: '',
        roles: ['staff'],
        rules: [{ action: 'update', subject: 'all', conditions: { createdBy: '${principal.id}' } }],
      })
      .expect(201);
    await client(cordon, team, boss)
      .patch('/members/staff', { roles: ['staff', 'viewer'] })
      .expect(200);
    const staff = await team.token('staff');
    await client(cordon, team, staff)
      .patch('/members/boss', { roles: ['staff'] })
      .expect(403);
    const checks = {
      checks: [
        { action: 'update', subject: 'Member' },
        { action: 'update', subject: 'Policy' },
      ],
    };
    expect(
      (await client(cordon, team, staff).post('/check', checks).expect(200)).body.results.map(
        (result: { allowed: boolean }) => result.allowed,
      ),
    ).toEqual([false, false]);
    expect(
      (await client(cordon, team, boss).post('/check', checks).expect(200)).body.results.map(
        (result: { allowed: boolean }) => result.allowed,
      ),
    ).toEqual([true, true]);
  });
});
