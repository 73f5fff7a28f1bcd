import { createHash } from 'node:crypto';
import type pg from 'pg';
import { sql } from 'kysely';
import { EventSecrets } from '../src/events/secrets.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { addMember, client, membersWorkspace, rolesIn, type MembersWorkspace } from './support/members.ts';

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
const logLines: string[] = [];

let acme: MembersWorkspace;
let adminToken: string;

interface Invitation {
  id: string;
  token: string;
  acceptUrl: string;
  email: string;
  status: string;
}

const accept = (token: string, bearer?: string) => {
  const request = cordon.http().post(`/v1/invitations/${token}/accept`);
  return bearer === undefined ? request : request.auth(bearer, { type: 'bearer' });
};
const invite = async (workspace: MembersWorkspace, body: object, token = adminToken): Promise<Invitation> =>
  (await client(cordon, workspace, token).post('/invitations', body).expect(201)).body;
const stored = async (id: string) =>
  (await owner.query('select status, accepted_by from invitations where id = $1', [id])).rows[0] as {
    status: string;
    accepted_by: string | null;
  };
const memberRows = async (workspace: MembersWorkspace, userId: string) =>
  (await owner.query('select roles from members where workspace_id = $1 and user_id = $2', [workspace.id, userId]))
    .rows;

beforeAll(async () => {
  cordon = await startTestApp({ logLines });
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

describe('invite → accept → member', () => {
  it('turns an invited email into a member whose roles decide from then on', async () => {
    const created = await client(cordon, acme, adminToken)
      .post('/invitations', { email: 'Bob@Example.com', roles: ['member'] })
      .expect(201);
    const { token, acceptUrl, id } = created.body;
    expect(created.body).toMatchObject({
      email: 'Bob@Example.com',
      roles: ['member'],
      invitedBy: 'user_admin',
      status: 'pending',
      acceptedAt: null,
      acceptedBy: null,
    });
    expect(created.headers.location).toBe(`/v1/workspaces/${acme.slug}/invitations/${id}`);
    expect(token).toMatch(/^[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(token, 'base64url')).toHaveLength(32);
    expect(acceptUrl).toBe(`http://localhost:3000/v1/invitations/${token}/accept`);
    expect(Date.parse(created.body.expiresAt) - Date.now()).toBeGreaterThan(7 * 24 * 3_600_000 - 60_000);
    expect(Date.parse(created.body.expiresAt) - Date.now()).toBeLessThanOrEqual(7 * 24 * 3_600_000);

    // Only the hash is stored; the event for the app to email carries the accept URL, sealed.
    const row = (await owner.query('select * from invitations where id = $1', [id])).rows[0];
    expect(Buffer.compare(row.token_hash, createHash('sha256').update(token).digest())).toBe(0);
    expect(JSON.stringify(row)).not.toContain(token);
    const event = (
      await owner.query("select workspace_id, type, data, actor from events where data->>'invitationId' = $1", [id])
    ).rows;
    expect(event).toEqual([
      {
        workspace_id: acme.id,
        type: 'invitation.created',
        actor: { id: 'user_admin', kind: 'user' },
        data: expect.objectContaining({
          workspaceId: acme.id,
          email: 'Bob@Example.com',
          roles: ['member'],
          invitedBy: 'user_admin',
          expiresAt: created.body.expiresAt,
        }),
      },
    ]);
    expect(JSON.stringify(event[0].data)).not.toContain(token);
    expect(new EventSecrets(cordon.adminKey).open(event[0].data.acceptUrl.sealed)).toBe(acceptUrl);
    // A later read never shows the token again; the Location names a readable invitation.
    const listed = (await client(cordon, acme, adminToken).get('/invitations').expect(200)).body.data.find(
      (item: { id: string }) => item.id === id,
    );
    const read = (
      await cordon.http().get(String(created.headers.location)).auth(adminToken, { type: 'bearer' }).expect(200)
    ).body;
    expect(read).toEqual(listed);
    const { token: _token, acceptUrl: _acceptUrl, ...shown } = created.body;
    expect(read).toEqual(shown);

    const bob = await acme.token('user_bob', { email: 'bob@example.com' });
    expect(await rolesIn(cordon, acme, bob)).toEqual([]);
    await client(cordon, acme, bob).get('/members').expect(403);
    const accepted = await accept(token, bob).expect(200);
    expect(accepted.body).toMatchObject({
      userId: 'user_bob',
      email: 'bob@example.com',
      roles: ['member'],
      invitedBy: 'user_admin',
    });
    // roleSource "members": the new row's roles decide the very next request.
    expect(await rolesIn(cordon, acme, bob)).toEqual(['member']);
    await client(cordon, acme, bob).get('/members').expect(200);
    await client(cordon, acme, bob).post('/members', { userId: 'x', roles: [] }).expect(403);

    const invitation = (await client(cordon, acme, adminToken).get('/invitations').expect(200)).body.data.find(
      (item: { id: string }) => item.id === id,
    );
    expect(invitation).toMatchObject({ status: 'accepted', acceptedBy: 'user_bob', acceptedAt: expect.any(String) });
    const decision = (
      await owner.query(
        'select allowed, action, operation, subject, principal_id, resource_id from decisions where reason = $1',
        [`invitation ${id} accepted`],
      )
    ).rows;
    expect(decision).toEqual([
      {
        allowed: true,
        action: 'create',
        operation: 'create',
        subject: 'Member',
        principal_id: 'user_bob',
        resource_id: 'user_bob',
      },
    ]);

    expect((await accept(token, bob).expect(409)).body.code).toBe('invitation_used');
    expect(await memberRows(acme, 'user_bob')).toEqual([{ roles: ['member'] }]);
  });

  it('adds the invited roles to someone who is already a member', async () => {
    await addMember(cordon, acme, 'user_kim', ['viewer'], 'kim@example.com');
    const invitation = await invite(acme, { email: 'kim@example.com', roles: ['auditor'] });
    await accept(invitation.token, await acme.token('user_kim', { email: 'kim@example.com' })).expect(200);
    expect((await memberRows(acme, 'user_kim'))[0].roles.sort()).toEqual(['auditor', 'viewer']);
  });

  it('follows INVITATION_TTL_HOURS and INVITATION_ACCEPT_URL, and a per-invitation expiresInHours', async () => {
    const configured = await startTestApp({
      env: { INVITATION_TTL_HOURS: '48', INVITATION_ACCEPT_URL: 'https://app.example.com/join?invite={token}' },
    });
    try {
      const created = (
        await client(configured, acme, adminToken)
          .post('/invitations', { email: 'ttl@example.com', roles: ['viewer'] })
          .expect(201)
      ).body;
      expect(created.acceptUrl).toBe(`https://app.example.com/join?invite=${created.token}`);
      const lifetime = Date.parse(created.expiresAt) - Date.now();
      expect(lifetime).toBeGreaterThan(48 * 3_600_000 - 60_000);
      expect(lifetime).toBeLessThanOrEqual(48 * 3_600_000);
      const short = (
        await client(configured, acme, adminToken)
          .post('/invitations', { email: 'ttl2@example.com', roles: ['viewer'], expiresInHours: 1 })
          .expect(201)
      ).body;
      expect(Date.parse(short.expiresAt) - Date.now()).toBeLessThanOrEqual(3_600_000);
    } finally {
      await configured.close();
    }
  });

  it('reads the email from the claim the provider names', async () => {
    const custom = await membersWorkspace(cordon, issuer, 'mailclaim', {
      claims: { email: 'https://example.com/email' },
    });
    await addMember(cordon, custom, 'user_root', ['admin']);
    const invitation = await invite(
      custom,
      { email: 'lee@example.com', roles: ['viewer'] },
      await custom.token('user_root'),
    );
    const standardOnly = await custom.token('user_lee', { email: 'lee@example.com' });
    expect((await accept(invitation.token, standardOnly).expect(403)).body.code).toBe('invitation_email_mismatch');
    await accept(
      invitation.token,
      await custom.token('user_lee', { 'https://example.com/email': 'lee@example.com' }),
    ).expect(200);
  });

  it('never writes the invitation token to the log', async () => {
    const invitation = await invite(acme, { email: 'quiet@example.com', roles: ['viewer'] });
    await accept(invitation.token, await acme.token('user_quiet', { email: 'quiet@example.com' })).expect(200);
    await accept(invitation.token, await acme.token('user_quiet', { email: 'quiet@example.com' })).expect(409);
    expect(logLines.length).toBeGreaterThan(0);
    expect(logLines.filter((line) => line.includes(invitation.token))).toEqual([]);
  });
});

describe('tokens that do not make a member', () => {
  it('refuses expired, revoked, unknown and malformed tokens', async () => {
    const carol = await acme.token('user_carol', { email: 'carol@example.com' });
    const expired = await invite(acme, { email: 'carol@example.com', roles: ['viewer'] });
    await owner.query("update invitations set expires_at = now() - interval '1 second' where id = $1", [expired.id]);
    expect((await accept(expired.token, carol).expect(410)).body.code).toBe('invitation_expired');
    expect(
      (await client(cordon, acme, adminToken).get('/invitations').expect(200)).body.data.find(
        (item: { id: string }) => item.id === expired.id,
      ).status,
    ).toBe('expired');
    expect((await client(cordon, acme, adminToken).delete(`/invitations/${expired.id}`).expect(409)).body.code).toBe(
      'invitation_not_pending',
    );

    const revoked = await invite(acme, { email: 'carol@example.com', roles: ['viewer'] });
    await client(cordon, acme, adminToken).delete(`/invitations/${revoked.id}`).expect(204);
    expect(await stored(revoked.id)).toEqual({ status: 'revoked', accepted_by: null });
    expect((await client(cordon, acme, adminToken).delete(`/invitations/${revoked.id}`).expect(409)).body.code).toBe(
      'invitation_not_pending',
    );
    expect((await accept(revoked.token, carol).expect(409)).body.code).toBe('invitation_revoked');

    const unknown = await accept('A'.repeat(43), carol).expect(404);
    expect(unknown.body.code).toBe('invitation_not_found');
    expect((await accept('not-a-token', carol).expect(404)).body).toEqual({
      ...unknown.body,
      requestId: expect.any(String),
    });
    expect(await memberRows(acme, 'user_carol')).toEqual([]);
    // Each refusal of an authenticated invitee is a logged decision.
    const { rows } = await owner.query(
      "select reason from decisions where workspace_id = $1 and principal_id = 'user_carol' and subject = 'Member' and not allowed order by position",
      [acme.id],
    );
    expect(rows.map((row: { reason: string }) => row.reason)).toEqual([
      `invitation ${expired.id} not accepted: The invitation has expired`,
      `invitation ${revoked.id} not accepted: The invitation was revoked`,
    ]);
  });

  it('needs a token of the invitation’s workspace asserting the invited email, not marked unverified', async () => {
    const other = await membersWorkspace(cordon, issuer, 'other');
    const invitation = await invite(acme, { email: 'dan@example.com', roles: ['viewer'] });
    expect(
      (await accept(invitation.token, await other.token('user_dan', { email: 'dan@example.com' })).expect(403)).body
        .code,
    ).toBe('org_mismatch');
    const foreignIssuer = await TestIssuer.start();
    try {
      const forged = await foreignIssuer.sign({
        v: 2,
        sub: 'user_dan',
        azp: 'https://app.example.com',
        o: { id: acme.orgId },
        email: 'dan@example.com',
      });
      expect((await accept(invitation.token, forged).expect(401)).body.code).toBe('token_untrusted_issuer');
    } finally {
      await foreignIssuer.close();
    }
    expect(
      (await accept(invitation.token, await acme.token('user_dan', { email: 'mallory@example.com' })).expect(403)).body
        .code,
    ).toBe('invitation_email_mismatch');
    expect((await accept(invitation.token, await acme.token('user_dan')).expect(403)).body.code).toBe(
      'invitation_email_mismatch',
    );
    expect(
      (
        await accept(
          invitation.token,
          await acme.token('user_dan', { email: 'dan@example.com', email_verified: false }),
        ).expect(403)
      ).body.code,
    ).toBe('invitation_email_mismatch');
    // An email the members table holds for the user is not the token's: it does not count.
    await addMember(cordon, acme, 'user_dan', [], 'dan@example.com');
    expect((await accept(invitation.token, await acme.token('user_dan')).expect(403)).body.code).toBe(
      'invitation_email_mismatch',
    );
    expect((await accept(invitation.token).expect(401)).body.code).toBe('token_missing');
    expect((await accept(invitation.token, 'garbage').expect(401)).body.code).toBe('token_malformed');
    expect(await stored(invitation.id)).toEqual({ status: 'pending', accepted_by: null });
    expect(await memberRows(acme, 'user_dan')).toEqual([{ roles: [] }]);

    await accept(
      invitation.token,
      await acme.token('user_dan', { email: 'DAN@example.com', email_verified: true }),
    ).expect(200);
    expect(await memberRows(acme, 'user_dan')).toEqual([{ roles: ['viewer'] }]);
  });

  it('refuses a token of a suspended workspace', async () => {
    const paused = await membersWorkspace(cordon, issuer, 'paused');
    const invitation: Invitation = (
      await cordon
        .admin()
        .post(`/v1/workspaces/${paused.slug}/invitations`)
        .send({ email: 'sue@example.com', roles: ['viewer'] })
        .expect(201)
    ).body;
    await cordon.admin().patch(`/v1/workspaces/${paused.slug}`).send({ status: 'suspended' }).expect(200);
    expect(
      (await accept(invitation.token, await paused.token('user_sue', { email: 'sue@example.com' })).expect(403)).body
        .code,
    ).toBe('workspace_suspended');
    expect(await stored(invitation.id)).toEqual({ status: 'pending', accepted_by: null });
  });
});

describe('races', () => {
  it('creates one member when accepts race, and answers the others with 409 invitation_used', async () => {
    const invitation = await invite(acme, { email: 'erin@example.com', roles: ['member'] });
    const erin = await acme.token('user_erin', { email: 'erin@example.com' });
    const responses = await Promise.all([
      accept(invitation.token, erin),
      accept(invitation.token, erin),
      accept(invitation.token, erin),
    ]);
    expect(responses.map((response) => response.status).sort()).toEqual([200, 409, 409]);
    expect(responses.filter((response) => response.status === 409).map((response) => response.body.code)).toEqual([
      'invitation_used',
      'invitation_used',
    ]);
    expect(await memberRows(acme, 'user_erin')).toEqual([{ roles: ['member'] }]);
    const { rows } = await owner.query(
      "select allowed, count(*)::int as n from decisions where workspace_id = $1 and principal_id = 'user_erin' and subject = 'Member' group by allowed order by allowed",
      [acme.id],
    );
    expect(rows).toEqual([
      { allowed: false, n: 2 },
      { allowed: true, n: 1 },
    ]);
  });

  it('lets two users race for one invitation: one becomes the member', async () => {
    const invitation = await invite(acme, { email: 'shared@example.com', roles: ['member'] });
    const responses = await Promise.all(
      ['user_s1', 'user_s2'].map(async (user) =>
        accept(invitation.token, await acme.token(user, { email: 'shared@example.com' })),
      ),
    );
    expect(responses.map((response) => response.status).sort()).toEqual([200, 409]);
    const winner = responses.find((response) => response.status === 200)!.body.userId;
    expect(await stored(invitation.id)).toEqual({ status: 'accepted', accepted_by: winner });
    const { rows } = await owner.query(
      "select user_id from members where workspace_id = $1 and user_id in ('user_s1', 'user_s2')",
      [acme.id],
    );
    expect(rows).toEqual([{ user_id: winner }]);
  });

  it('replaces a pending invitation of the same email, also when re-invites race', async () => {
    const first = await invite(acme, { email: 'fay@example.com', roles: ['viewer'] });
    const second = await invite(acme, { email: 'FAY@example.com', roles: ['member'] });
    const fay = await acme.token('user_fay', { email: 'fay@example.com' });
    expect((await accept(first.token, fay).expect(409)).body.code).toBe('invitation_revoked');
    expect((await accept(second.token, fay).expect(200)).body.roles).toEqual(['member']);

    const racing = await Promise.all(
      [1, 2, 3, 4].map(() =>
        client(cordon, acme, adminToken).post('/invitations', { email: 'gil@example.com', roles: ['viewer'] }),
      ),
    );
    expect(racing.map((response) => response.status)).toEqual([201, 201, 201, 201]);
    const { rows } = await owner.query(
      "select status, count(*)::int as n from invitations where workspace_id = $1 and email = 'gil@example.com' group by status order by status",
      [acme.id],
    );
    expect(rows).toEqual([
      { status: 'pending', n: 1 },
      { status: 'revoked', n: 3 },
    ]);
  });

  it('revoking and accepting at once: one wins, never both', async () => {
    for (let round = 0; round < 5; round += 1) {
      const invitation = await invite(acme, { email: `rr${round}@example.com`, roles: ['viewer'] });
      const token = await acme.token(`user_rr${round}`, { email: `rr${round}@example.com` });
      const [revoked, accepted] = await Promise.all([
        client(cordon, acme, adminToken).delete(`/invitations/${invitation.id}`),
        accept(invitation.token, token),
      ]);
      const state = await stored(invitation.id);
      if (accepted.status === 200) {
        expect({ revoked: revoked.status, state: state.status }).toEqual({ revoked: 409, state: 'accepted' });
        expect(await memberRows(acme, `user_rr${round}`)).toHaveLength(1);
      } else {
        expect({ revoked: revoked.status, accepted: accepted.body.code, state: state.status }).toEqual({
          revoked: 204,
          accepted: 'invitation_revoked',
          state: 'revoked',
        });
        expect(await memberRows(acme, `user_rr${round}`)).toEqual([]);
      }
    }
  });
});

describe('who may invite', () => {
  it('refuses an inviter granting roles it does not hold, unless it manages members', async () => {
    await client(cordon, acme, adminToken)
      .post('/policies', {
        name: 'inviter',
        description: '',
        roles: ['inviter'],
        rules: [{ action: ['create', 'read'], subject: ['Invitation', 'Member'] }],
      })
      .expect(201);
    await addMember(cordon, acme, 'user_inviter', ['inviter']);
    const inviter = client(cordon, acme, await acme.token('user_inviter'));
    const refused = await inviter
      .post('/invitations', { email: 'gus@example.com', roles: ['inviter', 'admin'] })
      .expect(403);
    expect(refused.body).toMatchObject({
      code: 'forbidden',
      detail: 'may only grant or take away roles held by the grantor; not "admin"',
    });
    await inviter.post('/members', { userId: 'user_gus', roles: ['admin'] }).expect(403);
    expect(
      (
        await owner.query(
          "select count(*)::int as n from invitations where workspace_id = $1 and email = 'gus@example.com'",
          [acme.id],
        )
      ).rows[0].n,
    ).toBe(0);
    expect(await memberRows(acme, 'user_gus')).toEqual([]);
    const { rows } = await owner.query(
      "select action, operation, subject from decisions where workspace_id = $1 and principal_id = 'user_inviter' and not allowed order by position",
      [acme.id],
    );
    expect(rows).toEqual([
      { action: 'create', operation: 'create', subject: 'Invitation' },
      { action: 'create', operation: 'create', subject: 'Member' },
    ]);
    await inviter.post('/invitations', { email: 'gus@example.com', roles: ['inviter'] }).expect(201);
    await client(cordon, acme, adminToken)
      .post('/invitations', { email: 'hal@example.com', roles: ['admin', 'anything'] })
      .expect(201);
    await cordon
      .admin()
      .post(`/v1/workspaces/${acme.slug}/invitations`)
      .send({ email: 'ida@example.com', roles: ['admin'] })
      .expect(201);
  });
});

describe('who may replace an invitation', () => {
  let team: MembersWorkspace;
  let lead: ReturnType<typeof client>;
  const pendingOf = async (email: string) =>
    (
      await owner.query(
        'select id, roles, status from invitations where workspace_id = $1 and lower(email) = lower($2) order by created_at, id',
        [team.id, email],
      )
    ).rows;

  beforeAll(async () => {
    team = await membersWorkspace(cordon, issuer, 'replace');
    await addMember(cordon, team, 'user_lead', ['admin']);
    lead = client(cordon, team, await team.token('user_lead'));
    await lead
      .post('/policies', {
        name: 'recruiter',
        roles: ['recruiter'],
        rules: [{ action: ['create', 'read'], subject: 'Invitation' }],
      })
      .expect(201);
    await lead
      .post('/policies', {
        name: 'revoker',
        roles: ['revoker'],
        rules: [{ action: ['create', 'read', 'delete'], subject: 'Invitation' }],
      })
      .expect(201);
    await lead
      .post('/policies', {
        name: 'blind-revoker',
        roles: ['blind-revoker'],
        rules: [{ action: ['create', 'delete'], subject: 'Invitation' }],
      })
      .expect(201);
    await addMember(cordon, team, 'user_recruiter', ['recruiter']);
    await addMember(cordon, team, 'user_revoker', ['revoker']);
    await addMember(cordon, team, 'user_blind', ['blind-revoker']);
  });

  it('refuses re-inviting an email whose pending invitation the inviter may not revoke, and changes nothing', async () => {
    const admins = (await lead.post('/invitations', { email: 'kim@example.com', roles: ['admin'] }).expect(201)).body;
    const before = await pendingOf('kim@example.com');

    // Allowed only create and read: revoking needs delete on Invitation.
    const recruiter = client(cordon, team, await team.token('user_recruiter'));
    const refused = await recruiter
      .post('/invitations', { email: 'KIM@example.com', roles: ['recruiter'] })
      .expect(403);
    expect(refused.body).toMatchObject({
      code: 'forbidden',
      detail: `its email has a pending invitation that this principal may not revoke: default deny`,
    });
    // Allowed delete, but not to take away a role it does not hold: neither by re-inviting nor by DELETE.
    const revoker = client(cordon, team, await team.token('user_revoker'));
    const beyond = 'may only grant or take away roles held by the grantor; not "admin"';
    expect(
      (await revoker.post('/invitations', { email: 'kim@example.com', roles: ['revoker'] }).expect(403)).body,
    ).toMatchObject({
      code: 'forbidden',
      detail: `its email has a pending invitation that this principal may not revoke: ${beyond}`,
    });
    expect((await revoker.delete(`/invitations/${admins.id}`).expect(403)).body).toMatchObject({
      code: 'forbidden',
      detail: beyond,
    });
    // Without read on Invitation, the refusal does not tell the pending invitation's roles.
    const blind = client(cordon, team, await team.token('user_blind'));
    expect(
      (await blind.post('/invitations', { email: 'kim@example.com', roles: ['blind-revoker'] }).expect(403)).body,
    ).toMatchObject({
      code: 'forbidden',
      detail: 'its email has a pending invitation that this principal may not revoke',
    });

    expect(await pendingOf('kim@example.com')).toEqual(before);
    expect(before).toEqual([{ id: admins.id, roles: ['admin'], status: 'pending' }]);
    expect((await lead.get(`/invitations/${admins.id}`).expect(200)).body.status).toBe('pending');
    const events = await owner.query(
      "select count(*)::int as n from events where workspace_id = $1 and type = 'invitation.created' and data->>'email' ilike 'kim@example.com'",
      [team.id],
    );
    expect(events.rows[0].n).toBe(1);
    const { rows } = await owner.query(
      "select principal_id, action, subject, resource_id, allowed from decisions where workspace_id = $1 and principal_id in ('user_recruiter', 'user_revoker') order by position",
      [team.id],
    );
    expect(rows).toEqual([
      { principal_id: 'user_recruiter', action: 'create', subject: 'Invitation', resource_id: null, allowed: false },
      { principal_id: 'user_revoker', action: 'create', subject: 'Invitation', resource_id: null, allowed: false },
      { principal_id: 'user_revoker', action: 'delete', subject: 'Invitation', resource_id: admins.id, allowed: false },
    ]);

    // Whoever may revoke it still replaces it, as before.
    const again = (await lead.post('/invitations', { email: 'Kim@example.com', roles: ['member'] }).expect(201)).body;
    expect(await pendingOf('kim@example.com')).toEqual([
      { id: admins.id, roles: ['admin'], status: 'revoked' },
      { id: again.id, roles: ['member'], status: 'pending' },
    ]);
  });

  it('lets an inviter replace an invitation of roles it holds, and one that expired while pending', async () => {
    const revoker = client(cordon, team, await team.token('user_revoker'));
    const own = (await lead.post('/invitations', { email: 'lou@example.com', roles: ['revoker'] }).expect(201)).body;
    const replaced = (await revoker.post('/invitations', { email: 'LOU@example.com', roles: ['revoker'] }).expect(201))
      .body;
    expect((await pendingOf('lou@example.com')).map((row) => [row.id, row.status])).toEqual([
      [own.id, 'revoked'],
      [replaced.id, 'pending'],
    ]);

    // An expired invitation grants nothing: replacing it takes nothing away.
    const lapsed = (await lead.post('/invitations', { email: 'max@example.com', roles: ['admin'] }).expect(201)).body;
    await owner.query("update invitations set expires_at = now() - interval '1 minute' where id = $1", [lapsed.id]);
    const recruiter = client(cordon, team, await team.token('user_recruiter'));
    const fresh = (await recruiter.post('/invitations', { email: 'max@example.com', roles: ['recruiter'] }).expect(201))
      .body;
    expect((await pendingOf('max@example.com')).map((row) => [row.id, row.status])).toEqual([
      [lapsed.id, 'revoked'],
      [fresh.id, 'pending'],
    ]);
  });
});

describe('denials leave invitations unchanged', () => {
  let team: MembersWorkspace;
  let stranger: MembersWorkspace;
  let pending: Invitation;
  const snapshot = async () =>
    (await owner.query('select id, email, status from invitations where workspace_id = $1 order by id', [team.id]))
      .rows;
  let before: unknown[];

  beforeAll(async () => {
    team = await membersWorkspace(cordon, issuer, 'team');
    stranger = await membersWorkspace(cordon, issuer, 'stranger');
    await addMember(cordon, team, 'user_lead', ['admin']);
    await addMember(cordon, team, 'user_worker', ['member']);
    await addMember(cordon, team, 'user_viewer', ['viewer']);
    await addMember(cordon, stranger, 'user_lead', ['admin']);
    pending = await invite(team, { email: 'pending@example.com', roles: ['viewer'] }, await team.token('user_lead'));
    before = await snapshot();
  });

  const attempts = [
    [
      'POST /invitations',
      (request: ReturnType<typeof client>) =>
        request.post('/invitations', { email: 'new@example.com', roles: ['viewer'] }),
    ],
    ['DELETE /invitations/:id', (request: ReturnType<typeof client>) => request.delete(`/invitations/${pending.id}`)],
    ['GET /invitations', (request: ReturnType<typeof client>) => request.get('/invitations')],
    ['GET /invitations/:id', (request: ReturnType<typeof client>) => request.get(`/invitations/${pending.id}`)],
  ] as const;

  it.each(attempts)('%s without a token: 401', async (_route, attempt) => {
    expect((await attempt(client(cordon, team)).expect(401)).body.code).toBe('token_missing');
    expect(await snapshot()).toEqual(before);
  });

  it.each(attempts)('%s with an admin token of another workspace: 403 org_mismatch', async (_route, attempt) => {
    expect((await attempt(client(cordon, team, await stranger.token('user_lead'))).expect(403)).body.code).toBe(
      'org_mismatch',
    );
    expect(await snapshot()).toEqual(before);
  });

  it.each(attempts)('%s by a member and by a viewer: 403, logged', async (_route, attempt) => {
    expect((await attempt(client(cordon, team, await team.token('user_worker'))).expect(403)).body).toMatchObject({
      code: 'forbidden',
      detail: 'members do not administer the workspace',
    });
    expect((await attempt(client(cordon, team, await team.token('user_viewer'))).expect(403)).body.code).toBe(
      'forbidden',
    );
    expect(await snapshot()).toEqual(before);
    const { rows } = await owner.query(
      "select count(*)::int as n from decisions where workspace_id = $1 and principal_id = 'user_viewer' and subject = 'Invitation' and not allowed",
      [team.id],
    );
    expect(rows[0].n).toBeGreaterThan(0);
  });

  it('answers a revoke of another workspace’s invitation exactly like a missing one', async () => {
    const admin = client(cordon, stranger, await stranger.token('user_lead'));
    const foreign = await admin.delete(`/invitations/${pending.id}`).expect(404);
    const missing = await admin.delete('/invitations/00000000-0000-7000-8000-000000000000').expect(404);
    expect(foreign.body.code).toBe('invitation_not_found');
    expect(missing.body.code).toBe('invitation_not_found');
    expect((await admin.get(`/invitations/${pending.id}`).expect(404)).body.code).toBe('invitation_not_found');
    expect((await admin.get('/invitations').expect(200)).body.data).toEqual([]);
    expect(await snapshot()).toEqual(before);
  });
});

describe('listing', () => {
  it('pages newest first through every invitation exactly once, with a count', async () => {
    const listed = await membersWorkspace(cordon, issuer, 'listed');
    const ids: string[] = [];
    for (let index = 0; index < 5; index += 1)
      ids.push(
        (
          await cordon
            .admin()
            .post(`/v1/workspaces/${listed.slug}/invitations`)
            .send({ email: `l${index}@example.com`, roles: ['viewer'] })
            .expect(201)
        ).body.id,
      );
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: { data: { id: string }[]; nextCursor: string | null; count: number } = (
        await cordon
          .admin()
          .get(`/v1/workspaces/${listed.slug}/invitations?limit=2&count=true${cursor ? `&cursor=${cursor}` : ''}`)
          .expect(200)
      ).body;
      expect(page.count).toBe(5);
      seen.push(...page.data.map((invitation) => invitation.id));
      cursor = page.nextCursor;
    } while (cursor);
    expect(seen).toEqual(ids.reverse());
  });
});

describe('bad input is a 400 with pointers, never a 500', () => {
  const pointers = (response: { body: { errors: { pointer: string }[] } }) =>
    response.body.errors.map((error) => error.pointer).sort();

  it.each([
    [{ email: 'not an email', roles: [], extra: 1 }, ['', '/email', '/roles']],
    [{}, ['/email', '/roles']],
    [{ email: 'a@example.com', roles: ['viewer'], expiresInHours: 0 }, ['/expiresInHours']],
    [{ email: 'a@example.com', roles: ['viewer'], expiresInHours: 24 * 91 }, ['/expiresInHours']],
    [{ email: 'a@example.com', roles: ['viewer'], expiresInHours: '24' }, ['/expiresInHours']],
    [{ email: 'a@example.com', roles: ['nul\u0000'] }, ['/roles/0']],
    [{ email: 'a@example.com', roles: Array.from({ length: 51 }, (_, index) => `r${index}`) }, ['/roles']],
  ])('POST /invitations %j', async (body, expected) => {
    const response = await client(cordon, acme, adminToken).post('/invitations', body).expect(400);
    expect(response.body.code).toBe('validation_failed');
    expect(pointers(response)).toEqual(expected);
  });

  it('an accept token over 200 characters, or badly percent-encoded', async () => {
    expect(pointers(await accept('a'.repeat(201), adminToken).expect(400))).toEqual(['/token']);
    await accept('%C3%28', adminToken).expect(400);
  });

  it('an invitation id that is not a uuid is simply not found', async () => {
    expect((await client(cordon, acme, adminToken).delete('/invitations/not-a-uuid').expect(404)).body.code).toBe(
      'invitation_not_found',
    );
    expect((await client(cordon, acme, adminToken).get('/invitations/not-a-uuid').expect(404)).body.code).toBe(
      'invitation_not_found',
    );
  });
});

describe('row-level security', () => {
  it.each(['invitations'])('%s: a scope sees only its workspace’s rows, no scope sees none', async (table) => {
    const other = await membersWorkspace(cordon, issuer, 'rls');
    await cordon
      .admin()
      .post(`/v1/workspaces/${other.slug}/invitations`)
      .send({ email: 'rls@example.com', roles: ['viewer'] })
      .expect(201);
    const scoped = await cordon.database.withWorkspace(other.id, (scope) =>
      scope.query(sql`select distinct workspace_id from ${sql.table(table)}`),
    );
    expect(scoped).toEqual([{ workspace_id: other.id }]);
    expect(await cordon.database.query(sql`select * from ${sql.table(table)}`)).toEqual([]);
    await expect(
      cordon.database.withWorkspace(other.id, (scope) =>
        scope.query(sql`update ${sql.table(table)} set workspace_id = ${acme.id}::uuid`),
      ),
    ).rejects.toThrow(/row-level security/);
  });

  it('the serving role can neither delete invitations nor events', async () => {
    for (const table of ['invitations', 'events']) {
      await expect(
        cordon.database.withWorkspace(acme.id, (scope) => scope.query(sql`delete from ${sql.table(table)}`)),
      ).rejects.toThrow(/permission denied/);
    }
  });
});
