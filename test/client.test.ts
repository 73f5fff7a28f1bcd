import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Cordon, CordonError, type Token } from '../clients/typescript/src/index.ts';
import { startTestApp, type TestApp } from './support/app.ts';
import { TestIssuer } from './support/issuer.ts';
import { createTenant, type TestTenant } from './support/tenant.ts';

/** @cordon/client against a listening Cordon over HTTP, as an app's server or browser calls it. */

interface Task {
  title: string;
  status?: 'todo' | 'doing' | 'done';
  points?: number;
  assigneeId?: string;
}

let cordon: TestApp;
let server: Server;
let baseUrl: string;
let issuer: TestIssuer;
let tenant: TestTenant;
const tokens: Record<'admin' | 'member' | 'viewer', string> = { admin: '', member: '', viewer: '' };

const client = (token: Token, workspace = tenant.slug) => new Cordon({ baseUrl, workspace, token });

async function refusal(promise: Promise<unknown>): Promise<CordonError> {
  const error = await promise.then(
    () => undefined,
    (reason: unknown) => reason,
  );
  expect(error).toBeInstanceOf(CordonError);
  return error as CordonError;
}

beforeAll(async () => {
  cordon = await startTestApp();
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'client');
  for (const role of ['admin', 'member', 'viewer'] as const) tokens[role] = await tenant.token(`user_${role}`, role);
  await cordon
    .http()
    .post(`/v1/workspaces/${tenant.slug}/structures`)
    .auth(tokens.admin, { type: 'bearer' })
    .send({
      name: 'Task',
      fields: {
        title: { type: 'text', required: true, maxLength: 200 },
        status: { type: 'text', enum: ['todo', 'doing', 'done'], default: 'todo' },
        points: { type: 'integer' },
        assigneeId: { type: 'text' },
      },
    })
    .expect(201);
});
afterAll(async () => {
  await issuer.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await cordon.close();
});

describe('records', () => {
  it('creates, reads, patches and deletes a record, with If-Match from its version', async () => {
    const member = client(tokens.member);
    const admin = client(tokens.admin);
    const created = await member.createRecord<Task>('Task', { title: 'Write the client', points: 3 });
    expect(created).toEqual(
      expect.objectContaining({
        structure: 'Task',
        data: { title: 'Write the client', status: 'todo', points: 3 },
        createdBy: 'user_member',
        version: 1,
      }),
    );
    expect(await member.getRecord<Task>('Task', created.id)).toEqual(created);

    const updated = await member.updateRecord<Task>(
      'Task',
      created.id,
      { status: 'doing', points: null },
      { ifMatch: 1 },
    );
    expect(updated.data).toEqual({ title: 'Write the client', status: 'doing' });
    expect(updated.version).toBe(2);

    const stale = await refusal(
      member.updateRecord('Task', created.id, { status: 'done' }, { ifMatch: created.version }),
    );
    expect(stale).toMatchObject({ status: 412, code: 'precondition_failed' });
    expect((await member.getRecord<Task>('Task', created.id)).data.status).toBe('doing');

    expect(await refusal(admin.deleteRecord('Task', created.id, { ifMatch: '"1"' }))).toMatchObject({ status: 412 });
    await admin.deleteRecord('Task', created.id, { ifMatch: `"${updated.version}"` });
    expect(await refusal(member.getRecord('Task', created.id))).toMatchObject({
      status: 404,
      code: 'record_not_found',
    });
  });

  it('lists with a filter, a sort, a limit and a count, and pages on with the cursor', async () => {
    const member = client(tokens.member);
    const marker = `list-${Date.now()}`;
    for (let index = 0; index < 7; index++)
      await member.createRecord<Task>('Task', { title: `${marker} ${index}`, points: index, assigneeId: marker });

    const first = await member.queryRecords<Task>('Task', {
      filter: { assigneeId: marker, points: { $gte: 2 } },
      sort: '-points',
      limit: 2,
      count: true,
    });
    expect(first.count).toBe(5);
    expect(first.data.map((record) => record.data.points)).toEqual([6, 5]);
    expect(first.nextCursor).toEqual(expect.any(String));
    const second = await member.queryRecords<Task>('Task', {
      filter: { assigneeId: marker, points: { $gte: 2 } },
      sort: '-points',
      limit: 2,
      cursor: first.nextCursor!,
    });
    expect(second.data.map((record) => record.data.points)).toEqual([4, 3]);
    expect(second.count).toBeUndefined();

    const all: number[] = [];
    for await (const record of member.records<Task>('Task', {
      filter: { assigneeId: marker },
      sort: 'points',
      limit: 3,
    }))
      all.push(record.data.points!);
    expect(all).toEqual([0, 1, 2, 3, 4, 5, 6]);
  });

  it('turns refusals into CordonErrors carrying the problem', async () => {
    const invalid = await refusal(client(tokens.member).createRecord('Task', { points: 'many' }));
    expect(invalid).toMatchObject({ status: 400, code: 'validation_failed', title: expect.any(String) });
    expect(invalid.errors.map((error) => error.pointer)).toEqual(expect.arrayContaining(['/data/title']));
    expect(invalid.requestId).toEqual(expect.any(String));
    expect(invalid.message).toContain(invalid.title);

    const forbidden = await refusal(client(tokens.viewer).createRecord('Task', { title: 'not mine to make' }));
    expect(forbidden).toMatchObject({ status: 403, code: 'forbidden', detail: expect.any(String) });

    const badFilter = await refusal(client(tokens.member).queryRecords('Task', { filter: { nope: 1 } }));
    expect(badFilter).toMatchObject({ status: 400, code: 'validation_failed' });
    expect(badFilter.errors[0]).toMatchObject({ pointer: '/filter', in: 'query' });

    expect(await refusal(client(tokens.member).getRecord('Nothing', crypto.randomUUID()))).toMatchObject({
      status: 404,
      code: 'structure_not_found',
    });
    // "." and ".." would be collapsed by URL parsing into another route (the list, whoami, the
    // workspaces): refused before anything is sent.
    const sent: string[] = [];
    const counting = new Cordon({
      baseUrl,
      workspace: tenant.slug,
      token: tokens.member!,
      fetch: (input, init) => {
        sent.push(String(input instanceof Request ? input.url : input));
        return fetch(input, init);
      },
    });
    for (const call of [
      () => counting.getRecord('Task', '.'),
      () => counting.getRecord('..', 'whoami'),
      () => counting.deleteRecord('..', '..'),
      () => counting.updateRecord('Task', '', { title: 'x' }),
      // Not strings (from a JSON body, say): openapi-fetch would join an array, empty an object.
      () => counting.getRecord('Task', ['..'] as unknown as string),
      () => counting.getRecord({} as unknown as string, 'x'),
    ]) {
      const error = await refusal(call());
      expect(error).toMatchObject({ status: 400, code: 'validation_failed' });
      expect(error.errors[0]).toMatchObject({ in: 'params' });
    }
    expect(sent).toEqual([]);
    expect(() => new Cordon({ baseUrl, workspace: '..', token: tokens.member! })).toThrow(CordonError);

    // A workspace that does not exist trusts no issuer: the token is what Cordon refuses.
    expect(await refusal(client(tokens.member, 'no-such-workspace').whoami())).toMatchObject({
      status: 401,
      code: expect.stringMatching(/^token_/),
    });
  });
});

describe('check and whoami', () => {
  it('answers checks in order with the deciding rule', async () => {
    const results = await client(tokens.member).check([
      { action: 'create', subject: 'Task' },
      { action: 'delete', subject: 'Task' },
    ]);
    expect(results).toEqual([
      expect.objectContaining({ allowed: true, policyId: expect.any(String), reason: expect.any(String) }),
      expect.objectContaining({ allowed: false }),
    ]);
  });

  it('lets an admin check for a principal it names, and refuses a member that tries', async () => {
    const principal = { id: 'user_someone', roles: ['viewer'] };
    const [result] = await client(tokens.admin).check([{ action: 'read', subject: 'Task' }], { principal });
    expect(result!.allowed).toBe(true);
    const refused = await refusal(client(tokens.member).check([{ action: 'read', subject: 'Task' }], { principal }));
    expect(refused).toMatchObject({ status: 403, code: 'forbidden' });
  });

  it('shows the principal Cordon resolved from the token', async () => {
    expect(await client(tokens.viewer).whoami()).toEqual(
      expect.objectContaining({ id: 'user_viewer', workspaceId: tenant.id, roles: ['viewer'], provider: 'clerk' }),
    );
  });
});

describe('tokens', () => {
  it('calls the token function for every request', async () => {
    const calls: unknown[] = [];
    const member = client(async (options) => {
      calls.push(options);
      return tokens.member;
    });
    await member.whoami();
    await member.queryRecords('Task', { limit: 1 });
    expect(calls).toEqual([undefined, undefined]);
  });

  it('asks for a fresh token once when Cordon refuses one, and repeats the request with it', async () => {
    const expired = await issuer.sign(
      { v: 2, sub: 'user_member', azp: 'https://app.example.com', o: { id: tenant.orgId, rol: 'member' } },
      { expiresInSeconds: -120 },
    );
    const calls: unknown[] = [];
    const member = client(async (options) => {
      calls.push(options);
      return options?.skipCache ? tokens.member : expired;
    });
    const created = await member.createRecord<Task>('Task', { title: 'after a refresh' });
    expect(created.createdBy).toBe('user_member');
    expect(calls).toEqual([undefined, { skipCache: true }]);
    const stored = await client(tokens.member).queryRecords<Task>('Task', { filter: { title: 'after a refresh' } });
    expect(stored.data).toHaveLength(1);
  });

  it('gives up after one fresh token, and never retries a token given as a string', async () => {
    let calls = 0;
    const refusedTwice = await refusal(
      client(() => {
        calls += 1;
        return 'not-a-jwt';
      }).whoami(),
    );
    expect(refusedTwice).toMatchObject({ status: 401, code: 'token_malformed' });
    expect(calls).toBe(2);

    const missing = await refusal(client(async () => null).whoami());
    expect(missing).toMatchObject({ status: 401, code: 'token_missing' });
    expect(await refusal(client('not-a-jwt').whoami())).toMatchObject({ status: 401, code: 'token_malformed' });
  });

  it('does not ask for a new token when the refusal is not about the token', async () => {
    let calls = 0;
    const viewer = client(() => {
      calls += 1;
      return tokens.viewer;
    });
    await refusal(viewer.createRecord('Task', { title: 'no' }));
    expect(calls).toBe(1);
  });
});

describe('options', () => {
  it('takes a base URL with a trailing slash and a fetch of its own', async () => {
    const seen: string[] = [];
    const member = new Cordon({
      baseUrl: `${baseUrl}/`,
      workspace: tenant.slug,
      token: tokens.member,
      fetch: (input, init) => {
        seen.push(input instanceof Request ? input.url : String(input));
        return fetch(input, init);
      },
    });
    await member.whoami();
    expect(seen).toEqual([`${baseUrl}/v1/workspaces/${tenant.slug}/whoami`]);
  });

  it('reports an answer that is not a problem document, e.g. from a proxy', async () => {
    const proxied = new Cordon({
      baseUrl,
      workspace: tenant.slug,
      token: tokens.member,
      fetch: async () => new Response('<html>Bad gateway</html>', { status: 502, statusText: 'Bad Gateway' }),
    });
    expect(await refusal(proxied.whoami())).toMatchObject({
      status: 502,
      code: 'unexpected_response',
      title: 'Cordon answered 502 Bad Gateway',
      detail: '<html>Bad gateway</html>',
    });
  });
});
