import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type supertest from 'supertest';
import { EventSecrets } from '../src/events/secrets.ts';
import { ownerClient, startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/** The trigger routes: what is stored, what is refused, who may do what. Deliveries: trigger-delivery.test.ts. */

let cordon: TestApp;
let owner: pg.Client;
let issuer: TestIssuer;
let tenant: TestTenant;
let other: TestTenant;
let admin: string;
let member: string;
let otherAdmin: string;

beforeAll(async () => {
  cordon = await startTestApp();
  owner = await ownerClient();
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'triggers');
  other = await createTenant(cordon, issuer, 'triggers-other');
  admin = await tenant.token('user_admin', 'admin');
  member = await tenant.token('user_member', 'member');
  otherAdmin = await other.token('user_admin', 'admin');
  await request('post', '/structures')
    .send({ name: 'Task', fields: { title: { type: 'text' }, status: { type: 'text' } } })
    .expect(201);
});
afterAll(async () => {
  await issuer.close();
  await owner.end();
  await cordon.close();
});

type Method = 'get' | 'post' | 'put' | 'delete';
function request(method: Method, path: string, token: string | null = admin, on = tenant): supertest.Test {
  const test = cordon.http()[method](`/v1/workspaces/${on.slug}${path}`);
  return token ? test.auth(token, { type: 'bearer' }) : test;
}

const hook = (overrides: Record<string, unknown> = {}) => ({
  name: `hook-${randomUUID().slice(0, 8)}`,
  events: ['record_created', 'record_updated'],
  structure: 'Task',
  condition: { status: 'done' },
  action: { type: 'webhook', url: 'https://hooks.invalid/cordon' },
  ...overrides,
});

const storedTrigger = async (id: string) =>
  (await owner.query('select name, enabled, version, action from triggers where id = $1', [id])).rows[0];
const storedSecrets = async (id: string) =>
  (
    await owner.query<{ secret: string; expires_at: Date | null }>(
      'select secret, expires_at from trigger_secrets where trigger_id = $1 order by created_at, id',
      [id],
    )
  ).rows;

describe('creating and reading', () => {
  it('stores a webhook trigger and shows its secret once, sealed at rest', async () => {
    const body = hook();
    const created = await request('post', '/triggers').send(body).expect(201);
    expect(created.headers.location).toBe(`/v1/workspaces/${tenant.slug}/triggers/${created.body.id}`);
    expect(created.body).toEqual({
      id: expect.any(String),
      ...body,
      enabled: true,
      disabledReason: null,
      version: 1,
      createdAt: expect.any(String),
      updatedAt: expect.any(String),
      secret: expect.stringMatching(/^whsec_[A-Za-z0-9+/]{43}=$/),
    });
    expect(Buffer.from(created.body.secret.slice('whsec_'.length), 'base64')).toHaveLength(32);
    const fetched = await request('get', `/triggers/${created.body.id}`).expect(200);
    expect(fetched.body).not.toHaveProperty('secret');
    const { secret, ...shown } = created.body;
    expect(fetched.body).toEqual(shown);
    const listed = await request('get', '/triggers').expect(200);
    expect(listed.body.data).toContainEqual(shown);
    const [stored] = await storedSecrets(created.body.id);
    expect(stored!.secret).not.toContain(secret.slice('whsec_'.length));
    expect(new EventSecrets(cordon.adminKey).open(stored!.secret)).toBe(secret);
  });

  it('lets the platform admin manage triggers too', async () => {
    const created = await cordon.admin().post(`/v1/workspaces/${tenant.slug}/triggers`).send(hook()).expect(201);
    await cordon.admin().get(`/v1/workspaces/${tenant.slug}/triggers/${created.body.id}`).expect(200);
    await cordon.admin().delete(`/v1/workspaces/${tenant.slug}/triggers/${created.body.id}`).expect(204);
  });

  it('logs a decision for every route, reads included', async () => {
    const requestId = randomUUID();
    await request('get', '/triggers').set('x-request-id', requestId).expect(200);
    const { rows } = await owner.query(
      'select action, subject, operation, allowed from decisions where request_id = $1',
      [requestId],
    );
    expect(rows).toEqual([{ action: 'read', subject: 'Trigger', operation: 'admin', allowed: true }]);
  });

  it('answers 404 for a trigger of another workspace, exactly like a missing one', async () => {
    const theirs = (
      await request('post', '/triggers', otherAdmin, other)
        .send(hook({ structure: null }))
        .expect(201)
    ).body;
    const viaOurs = await request('get', `/triggers/${theirs.id}`).expect(404);
    const missing = await request('get', `/triggers/${randomUUID()}`).expect(404);
    expect(viaOurs.body.code).toBe('trigger_not_found');
    expect(viaOurs.body.code).toBe(missing.body.code);
    await request('get', '/triggers/not-a-uuid').expect(404);
    await request('get', `/triggers/${theirs.id}/deliveries`).expect(404);
  });

  it('refuses a second trigger of the same name with 409', async () => {
    const body = hook();
    await request('post', '/triggers').send(body).expect(201);
    const response = await request('post', '/triggers')
      .send(hook({ name: body.name }))
      .expect(409);
    expect(response.body.code).toBe('trigger_name_taken');
  });
});

describe('validation', () => {
  it.each([
    ['an unknown event', { events: ['record_moved'] }, '/events/0'],
    ['no event', { events: [] }, '/events'],
    ['an event twice', { events: ['record_created', 'record_created'] }, '/events'],
    ['a missing structure', { structure: 'Nope' }, '/structure'],
    ['a structure with non-record events', { events: ['invitation.created'] }, '/structure'],
    ['an unsupported operator', { condition: { status: { $where: 'x' } } }, '/condition/status/$where'],
    ['a placeholder', { condition: { createdBy: '${principal.id}' } }, '/condition/createdBy'],
    // zod's record would drop it, leaving a condition every event meets.
    ['a __proto__ condition', { condition: JSON.parse('{"__proto__": {"status": "done"}}') }, '/condition/__proto__'],
    ['a URL that is not one', { action: { type: 'webhook', url: 'not a url' } }, '/action/url'],
    ['an ftp URL', { action: { type: 'webhook', url: 'ftp://example.com/x' } }, '/action/url'],
    ['credentials in the URL', { action: { type: 'webhook', url: 'https://user:pw@example.com/' } }, '/action/url'],
    ['a missing function', { action: { type: 'function', function: 'nope' } }, '/action/function'],
    ['an unknown action', { action: { type: 'email', to: 'x' } }, '/action/type'],
    ['an unknown field', { extra: true }, ''],
  ])('refuses %s with 400, pointing at it', async (_name, overrides, pointer) => {
    const response = await request('post', '/triggers').send(hook(overrides)).expect(400);
    expect(response.body.code).toBe('validation_failed');
    expect(response.body.errors.map((error: { pointer: string }) => error.pointer)).toContain(pointer);
  });

  it('accepts plain http outside production, a condition over non-record events, and no structure', async () => {
    await request('post', '/triggers')
      .send(
        hook({
          events: ['notification.requested'],
          structure: undefined,
          condition: { type: 'email' },
          action: { type: 'webhook', url: 'http://127.0.0.1:9/hook' },
        }),
      )
      .expect(201);
  });
});

describe('changing', () => {
  it('replaces a trigger, keeps its secret for a new URL, and issues one when it becomes a webhook', async () => {
    const created = (await request('post', '/triggers').send(hook()).expect(201)).body;
    const replaced = await request('put', `/triggers/${created.id}`)
      .send(hook({ name: created.name, action: { type: 'webhook', url: 'https://elsewhere.invalid/' } }))
      .expect(200);
    expect(replaced.body).toMatchObject({ version: 2, action: { url: 'https://elsewhere.invalid/' } });
    expect(replaced.body).not.toHaveProperty('secret');
    expect(await storedSecrets(created.id)).toHaveLength(1);

    await owner.query(
      `insert into functions (workspace_id, name, code, timeout_ms, memory_mb) values ($1, 'tidy', 'async function run() {}', 1000, 16)`,
      [tenant.id],
    );
    const asFunction = await request('put', `/triggers/${created.id}`)
      .send(hook({ name: created.name, action: { type: 'function', function: 'tidy' } }))
      .expect(200);
    expect(asFunction.body.action).toEqual({ type: 'function', function: 'tidy' });
    expect(await storedSecrets(created.id)).toHaveLength(0);
    await request('post', `/triggers/${created.id}/rotate-secret`).expect(409);

    const back = await request('put', `/triggers/${created.id}`)
      .send(hook({ name: created.name }))
      .expect(200);
    expect(back.body.secret).toMatch(/^whsec_/);
    expect(await storedSecrets(created.id)).toHaveLength(1);
  });

  it('rotates a secret: the new one shown once, the previous ones expiring in 24 h', async () => {
    const created = (await request('post', '/triggers').send(hook()).expect(201)).body;
    const rotated = (await request('post', `/triggers/${created.id}/rotate-secret`).expect(200)).body;
    expect(rotated.secret).not.toBe(created.secret);
    const secrets = await storedSecrets(created.id);
    expect(secrets).toHaveLength(2);
    expect(secrets[0]!.expires_at!.toISOString()).toBe(rotated.previousSecretExpiresAt);
    expect(secrets[1]!.expires_at).toBeNull();
    const opened = secrets.map((secret) => new EventSecrets(cordon.adminKey).open(secret.secret));
    expect(opened).toEqual([created.secret, rotated.secret]);
  });

  it('deletes a trigger with its secrets', async () => {
    const created = (await request('post', '/triggers').send(hook()).expect(201)).body;
    await request('delete', `/triggers/${created.id}`).expect(204);
    await request('get', `/triggers/${created.id}`).expect(404);
    expect(await storedSecrets(created.id)).toHaveLength(0);
  });
});

describe('every mutating route refuses', () => {
  let trigger: { id: string; name: string };
  beforeAll(async () => {
    trigger = (await request('post', '/triggers').send(hook()).expect(201)).body;
  });

  const routes: [string, (token: string | null, on?: TestTenant) => supertest.Test][] = [
    ['POST /triggers', (token, on) => request('post', '/triggers', token, on).send(hook())],
    [
      'PUT /triggers/:id',
      (token, on) => request('put', `/triggers/${trigger.id}`, token, on).send(hook({ name: 'taken over' })),
    ],
    ['DELETE /triggers/:id', (token, on) => request('delete', `/triggers/${trigger.id}`, token, on)],
    [
      'POST /triggers/:id/rotate-secret',
      (token, on) => request('post', `/triggers/${trigger.id}/rotate-secret`, token, on),
    ],
  ];

  const unchanged = async () => {
    expect(await storedTrigger(trigger.id)).toMatchObject({ name: trigger.name, version: 1, enabled: true });
    expect(await storedSecrets(trigger.id)).toEqual([expect.objectContaining({ expires_at: null })]);
  };

  it.each(routes)('%s from another workspace (403 with their token here, 404 for our id there)', async (name, call) => {
    const count = async () =>
      (await owner.query('select count(*)::int as n from triggers where workspace_id = $1', [tenant.id])).rows[0].n;
    const before = await count();
    expect((await call(otherAdmin).expect(403)).body.code).toBe('org_mismatch');
    if (name !== 'POST /triggers') {
      expect((await call(otherAdmin, other).expect(404)).body.code).toBe('trigger_not_found');
    }
    expect(await count()).toBe(before);
    await unchanged();
  });

  it.each(routes)('%s from a lower role (403, logged)', async (_name, call) => {
    const requestId = randomUUID();
    const response = await call(member).set('x-request-id', requestId).expect(403);
    expect(response.body).toMatchObject({ code: 'forbidden', detail: 'members do not administer the workspace' });
    const { rows } = await owner.query('select allowed, subject from decisions where request_id = $1', [requestId]);
    expect(rows).toEqual([{ allowed: false, subject: 'Trigger' }]);
    await unchanged();
  });

  it.each(routes)('%s without a token (401)', async (_name, call) => {
    expect((await call(null).expect(401)).body.code).toBe('token_missing');
    await unchanged();
  });

  it('lets neither a member nor a viewer read triggers or their deliveries', async () => {
    const viewer = await tenant.token('user_viewer', 'viewer');
    for (const token of [member, viewer]) {
      await request('get', '/triggers', token).expect(403);
      await request('get', `/triggers/${trigger.id}`, token).expect(403);
      await request('get', `/triggers/${trigger.id}/deliveries`, token).expect(403);
    }
  });
});

/**
 * A webhook URL that names a literal address is checked when the trigger is written by the rule
 * every delivery applies to the addresses a name resolves to: OUTBOUND_ALLOW_PRIVATE, whatever
 * NODE_ENV says (production only adds https).
 */
describe('a literal private address when the trigger is written', () => {
  const privateUrls = [
    'https://10.1.2.3/hook',
    'https://127.0.0.1/hook',
    'https://[::1]/hook',
    'https://169.254.169.254/x',
  ];
  const write = (app: TestApp, slug: string, url: string) =>
    app
      .admin()
      .post(`/v1/workspaces/${slug}/triggers`)
      .send({ name: `to ${url}`, events: ['invitation.created'], action: { type: 'webhook', url } });
  const workspace = async (app: TestApp) => {
    const slug = `literal-${randomUUID().slice(0, 8)}`;
    await app.admin().post('/v1/workspaces').send({ slug, name: 'Literal' }).expect(201);
    return slug;
  };

  it('is refused where private networks are not allowed, also outside production', async () => {
    const app = await startTestApp({ env: { OUTBOUND_ALLOW_PRIVATE: 'false' } });
    try {
      const slug = await workspace(app);
      for (const url of privateUrls) {
        const response = await write(app, slug, url).expect(400);
        expect(response.body.errors[0]).toMatchObject({ pointer: '/action/url' });
        expect(response.body.errors[0].detail).toContain('is not a public address');
      }
      await write(app, slug, 'https://93.184.215.14/hook').expect(201);
    } finally {
      await app.close();
    }
  });

  it('is accepted in production where OUTBOUND_ALLOW_PRIVATE allows private networks (https still required)', async () => {
    const app = await startTestApp({
      env: {
        NODE_ENV: 'production',
        OUTBOUND_ALLOW_PRIVATE: 'true',
        ADMIN_API_KEY: randomUUID() + randomUUID(),
        DATABASE_URL: 'postgres://unused@127.0.0.1:1/unused',
        INVITATION_ACCEPT_URL: 'https://app.example.com/accept/{token}',
      },
    });
    try {
      const slug = await workspace(app);
      for (const url of privateUrls) await write(app, slug, url).expect(201);
      await write(app, slug, 'http://10.1.2.3/hook').expect(400);
    } finally {
      await app.close();
    }
  });
});

describe('a function trigger', () => {
  // A function acts with its own roles: binding it to events takes holding them, as invoking it
  // does, or managing members (the default admin policy). Otherwise a principal allowed to write
  // triggers could feed events it chose to a function that acts with roles it was never given.
  it("takes holding the function's roles to bind it, like invoking it", async () => {
    await request('post', '/policies')
      .send({
        name: `automator-${randomUUID().slice(0, 6)}`,
        roles: ['automator'],
        rules: [
          { action: 'manage', subject: 'Trigger' },
          { action: 'read', subject: 'Function' },
        ],
      })
      .expect(201);
    const automator = await tenant.token('user_automator', 'automator');
    for (const [name, roles] of [
      ['elevated', ['admin']],
      ['modest', ['automator']],
    ] as const) {
      await owner.query(
        `insert into functions (workspace_id, name, code, roles, timeout_ms, memory_mb)
         values ($1, $2, 'async function run() {}', $3, 1000, 16)`,
        [tenant.id, name, roles],
      );
    }
    const bind = (fn: string) => hook({ action: { type: 'function', function: fn } });

    const refused = await request('post', '/triggers', automator).send(bind('elevated')).expect(403);
    expect(refused.body.code).toBe('forbidden');
    expect(refused.body.detail).toContain('"admin"');
    const modest = (await request('post', '/triggers', automator).send(bind('modest')).expect(201)).body;
    await request('put', `/triggers/${modest.id}`, automator)
      .send({ ...bind('elevated'), name: modest.name })
      .expect(403);
    expect((await storedTrigger(modest.id)).action).toEqual({ type: 'function', function: 'modest' });
    await request('post', '/triggers').send(bind('elevated')).expect(201);
  });
});
