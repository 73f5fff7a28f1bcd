import { readFile } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  Cordon,
  CordonError,
  type CordonRecord,
  type RealtimeEvent,
  type Subscription,
} from '../clients/typescript/src/index.ts';
import { startTestApp, type TestApp } from './support/app.ts';
import { eventually } from './support/eventually.ts';
import { TestIssuer } from './support/issuer.ts';
import { appOrigin, createTenant, type TestTenant } from './support/tenant.ts';

/**
 * The tutorial's steps 4 and 6 through @cordon/client against a listening Cordon: the app's API
 * routes list and create projects as the signed-in user, and its TaskBoard stays live through
 * realtime.subscribe — an admin, a member and a viewer with Clerk tokens, and a contractor whose
 * policy (the seed's) reads only the tasks assigned to it.
 */

interface Project {
  name: string;
  status?: 'active' | 'archived';
}
interface Task {
  title: string;
  status?: 'todo' | 'doing' | 'done';
  assigneeId?: string;
}

let cordon: TestApp;
let server: Server;
let baseUrl: string;
let issuer: TestIssuer;
let tenant: TestTenant;

/** Like Clerk's getToken: a fresh token for the signed-in user on every call. */
const signedIn = (userId: string, role: string) =>
  new Cordon({ baseUrl, workspace: tenant.slug, token: () => tenant.token(userId, role) });

beforeAll(async () => {
  cordon = await startTestApp();
  server = cordon.app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  issuer = await TestIssuer.start();
  tenant = await createTenant(cordon, issuer, 'tutorial');
  const example = JSON.parse(await readFile(new URL('../seeds/example.json', import.meta.url), 'utf8')) as {
    structures: object[];
    policies: object[];
  };
  const admin = await tenant.token('user_admin', 'admin');
  for (const [path, bodies] of [
    ['structures', example.structures],
    ['policies', example.policies],
  ] as const)
    for (const body of bodies)
      await cordon
        .http()
        .post(`/v1/workspaces/${tenant.slug}/${path}`)
        .auth(admin, { type: 'bearer' })
        .send(body)
        .expect(201);
}, 60_000);
afterAll(async () => {
  await cordon.realtime.close();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await issuer.close();
  await cordon.close();
});

/** The README's TaskBoard effect, with a Map for React's state. */
function taskBoard(client: Cordon, lastEventId?: string) {
  const tasks = new Map<string, CordonRecord<Task>>();
  const events: RealtimeEvent<Task>[] = [];
  const errors: Error[] = [];
  let refetches = 0;
  const refetch = async () => {
    const page = await client.queryRecords<Task>('Task', { sort: '-createdAt', limit: 200 });
    tasks.clear();
    for (const task of page.data) tasks.set(task.id, task);
    refetches += 1;
  };
  const subscription: Subscription = client.realtime.subscribe<Task>({
    structures: ['Task'],
    onEvent(event) {
      events.push(event);
      switch (event.event) {
        case 'record_created':
          tasks.set(event.recordId, event.data);
          break;
        case 'record_updated':
          tasks.set(event.recordId, event.data.after);
          break;
        case 'record_deleted':
          tasks.delete(event.recordId);
          break;
        case 'reset':
          void refetch();
          break;
      }
    },
    onError: (error) => errors.push(error),
    ...(lastEventId !== undefined && { lastEventId }),
  });
  const loaded = refetch();
  return {
    tasks,
    events,
    errors,
    subscription,
    get refetches() {
      return refetches;
    },
    /** Listed, and the stream has told its position: nothing after this is missed. */
    ready: async () => {
      await loaded;
      await eventually(async () => subscription.lastEventId !== undefined);
    },
  };
}

const summary = (events: RealtimeEvent<Task>[]) =>
  events.map((event) =>
    event.event === 'reset'
      ? ['reset']
      : [event.event, event.recordId, 'reason' in event ? (event.reason ?? null) : null],
  );

it('step 4: the API routes list and create projects as the signed-in user', async () => {
  const member = signedIn('user_member', 'member');
  const created = await member.createRecord<Project>('Project', { name: 'Apollo' });
  expect(created).toMatchObject({ data: { name: 'Apollo', status: 'active' }, createdBy: 'user_member' });
  await member.createRecord<Project>('Project', { name: 'Gemini' });

  const viewer = signedIn('user_viewer', 'viewer');
  const listed = await viewer.queryRecords<Project>('Project', { sort: '-createdAt', limit: 50 });
  expect(listed.data.map((project) => project.data.name)).toEqual(['Gemini', 'Apollo']);
  const refused = await viewer.createRecord<Project>('Project', { name: 'Mercury' }).catch((error: unknown) => error);
  expect(refused).toBeInstanceOf(CordonError);
  expect(refused).toMatchObject({ status: 403, code: 'forbidden' });
});

it('step 6: the TaskBoard follows creates, updates and deletes; a contractor sees its own tasks only', async () => {
  const admin = signedIn('user_admin', 'admin');
  const member = signedIn('user_member', 'member');
  const viewerBoard = taskBoard(signedIn('user_viewer', 'viewer'));
  const carlBoard = taskBoard(signedIn('user_carl', 'contractor'));
  await Promise.all([viewerBoard.ready(), carlBoard.ready()]);
  expect(viewerBoard.tasks.size).toBe(0);

  const project = await member.createRecord<Project>('Project', { name: 'Apollo board' });
  const forCarl = await member.createRecord<Task & { projectId: string }>('Task', {
    title: 'Wire the sensors',
    assigneeId: 'user_carl',
    projectId: project.id,
  });
  const forDana = await member.createRecord<Task>('Task', { title: 'Paint the hull', assigneeId: 'user_dana' });
  await member.updateRecord<Task>('Task', forCarl.id, { status: 'doing' }, { ifMatch: forCarl.version });
  await member.updateRecord<Task>('Task', forCarl.id, { assigneeId: 'user_dana' });
  await expect(member.deleteRecord('Task', forDana.id)).rejects.toMatchObject({ status: 403 });
  await admin.deleteRecord('Task', forDana.id);
  await member.updateRecord<Task>('Task', forCarl.id, { assigneeId: 'user_carl' });

  await eventually(async () => viewerBoard.events.length === 6 && carlBoard.events.length === 4);
  expect(summary(viewerBoard.events)).toEqual([
    ['record_created', forCarl.id, null],
    ['record_created', forDana.id, null],
    ['record_updated', forCarl.id, null],
    ['record_updated', forCarl.id, null],
    ['record_deleted', forDana.id, null],
    ['record_updated', forCarl.id, null],
  ]);
  expect(summary(carlBoard.events)).toEqual([
    ['record_created', forCarl.id, null],
    ['record_updated', forCarl.id, null],
    ['record_deleted', forCarl.id, 'left_view'],
    ['record_created', forCarl.id, 'entered_view'],
  ]);
  expect(JSON.stringify(carlBoard.events)).not.toContain(forDana.id);
  // Both boards hold what a refetch would show them.
  for (const board of [viewerBoard, carlBoard]) {
    expect([...board.tasks.values()]).toEqual([
      expect.objectContaining({
        id: forCarl.id,
        data: expect.objectContaining({ status: 'doing', assigneeId: 'user_carl' }),
      }),
    ]);
  }
  expect(viewerBoard.errors).toEqual([]);
  expect(carlBoard.errors).toEqual([]);

  // The effect's cleanup: nothing reaches an unsubscribed board.
  viewerBoard.subscription.unsubscribe();
  carlBoard.subscription.unsubscribe();
  await member.createRecord<Task>('Task', { title: 'After the board closed', assigneeId: 'user_carl' });
  await new Promise((resolve) => setTimeout(resolve, 300));
  expect(viewerBoard.events).toHaveLength(6);
  expect(carlBoard.events).toHaveLength(4);
});

it('refetches on reset: a board resuming from an id the workspace never reached', async () => {
  const member = signedIn('user_member', 'member');
  await member.createRecord<Task>('Task', { title: 'Before the reset' });
  const board = taskBoard(signedIn('user_viewer', 'viewer'), '999999999');
  await board.ready();
  await eventually(async () => board.refetches === 2);
  expect(board.events).toEqual([{ event: 'reset', seq: expect.stringMatching(/^\d+$/) }]);
  expect(board.subscription.lastEventId).toBe((board.events[0] as { seq: string }).seq);
  const listed = await member.queryRecords<Task>('Task', { limit: 200 });
  expect([...board.tasks.keys()].sort()).toEqual(listed.data.map((task) => task.id).sort());

  const later = await member.createRecord<Task>('Task', { title: 'After the reset' });
  await eventually(async () => board.tasks.has(later.id));
  board.subscription.unsubscribe();
});

it('keeps the board live across token expiry: token_expired, a fresh token, no event lost', async () => {
  const calls: unknown[] = [];
  const viewer = new Cordon({
    baseUrl,
    workspace: tenant.slug,
    token: (options) => {
      calls.push(options);
      // The first token lives two seconds; Clerk's getToken({ skipCache: true }) mints a new one.
      const claims = { v: 2, sub: 'user_viewer', azp: appOrigin, o: { id: tenant.orgId, rol: 'viewer' } };
      return issuer.sign(claims, { expiresInSeconds: calls.length === 1 ? 2 : 60 });
    },
  });
  const board = taskBoard(viewer);
  await board.ready();
  const member = signedIn('user_member', 'member');
  const before = await member.createRecord<Task>('Task', { title: 'Before expiry' });
  await eventually(async () => board.tasks.has(before.id));
  await eventually(async () => calls.some((call) => (call as { skipCache?: boolean } | undefined)?.skipCache), 10_000);
  const after = await member.createRecord<Task>('Task', { title: 'After expiry' });
  await eventually(async () => board.tasks.has(after.id));
  expect(summary(board.events)).toEqual([
    ['record_created', before.id, null],
    ['record_created', after.id, null],
  ]);
  expect(board.errors).toEqual([]);
  board.subscription.unsubscribe();
});
