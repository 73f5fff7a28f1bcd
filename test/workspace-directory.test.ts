import { randomBytes, randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { WorkspaceDirectory } from '../src/auth/workspace-directory.ts';
import { ChangeBus } from '../src/db/changes.ts';
import { startTestApp, uniqueSlug, type TestApp } from './support/app.ts';

let cordon: TestApp;
let slug: string;

const quietBus = () => new ChangeBus(undefined, pino({ level: 'silent' }));

/** A directory over the test app's real database, following a bus only the test speaks on. */
function directoryWithBus() {
  const changes = quietBus();
  return { changes, directory: new WorkspaceDirectory(cordon.database, changes) };
}

const createWorkspace = async (name: string) =>
  (await cordon.admin().post('/v1/workspaces').send({ slug: name, name }).expect(201)).body as { id: string };

beforeAll(async () => {
  cordon = await startTestApp();
  slug = uniqueSlug('directory');
  await createWorkspace(slug);
});
afterAll(async () => {
  await cordon.close();
});

describe('the workspace directory', () => {
  it('caches an answer, found or not', async () => {
    const { directory } = directoryWithBus();
    const unknown = uniqueSlug('nobody');
    expect((await directory.resolve(slug))?.workspace.slug).toBe(slug);
    expect(await directory.resolve(unknown)).toBeUndefined();
    expect(directory.cached(slug)?.workspace.slug).toBe(slug);
    expect(directory.cached(unknown)).toBeUndefined();
  });

  it('does not cache a lookup that a change overtook (a workspace created while "missing" was on its way)', async () => {
    const { changes, directory } = directoryWithBus();
    const created = uniqueSlug('overtaken');
    const answer = directory.resolve(created);
    // Nothing was awaited yet, so the lookup is in flight when the change arrives.
    changes.apply({ topic: 'workspace', workspaceId: '*' });
    expect(await answer).toBeUndefined();
    expect(directory.cached(created)).toBeNull();
    // Created behind this directory's back: found, because "missing" was not kept.
    await createWorkspace(created);
    expect((await directory.resolve(created))?.workspace.slug).toBe(created);
  });

  it.each([
    ['uppercase', 'Directory'],
    ['one character', 'a'],
    ['a leading dash', '-acme'],
    ['64 characters', 'a'.repeat(64)],
    ['an underscore', 'acme_corp'],
    ['a dot', 'acme.com'],
    ['non-ASCII', 'äcme'],
    ['a space', 'ac me'],
    ['nothing at all', ''],
  ])('answers a reference with %s as unknown, without a lookup and without caching it', async (_case, reference) => {
    const { directory } = directoryWithBus();
    expect(directory.cached(reference)).toBeUndefined();
    expect(await directory.resolve(reference)).toBeUndefined();
    expect(directory.held()).toEqual({ found: 0, missing: 0 });
  });

  it('keeps a found workspace cached however many unknown workspaces are asked for', async () => {
    const { directory } = directoryWithBus();
    await directory.resolve(slug);
    const references = Array.from({ length: 10_050 }, (_, index) =>
      index % 2 ? randomUUID() : `nobody-${randomBytes(8).toString('hex')}`,
    );
    const workers = Array.from({ length: 8 }, async () => {
      for (let reference = references.pop(); reference; reference = references.pop())
        expect(await directory.resolve(reference)).toBeUndefined();
    });
    await Promise.all(workers);
    expect(directory.cached(slug)?.workspace.slug).toBe(slug);
    expect(directory.held().missing).toBeLessThanOrEqual(1_000);
  }, 60_000);

  it('answers a reference that is no slug on a platform-admin route like an unknown workspace', async () => {
    const unknown = await cordon.admin().get(`/v1/workspaces/${uniqueSlug('nobody')}`);
    const invalid = await cordon.admin().get('/v1/workspaces/Not_A_Slug');
    expect(unknown.status).toBe(404);
    expect({ status: invalid.status, code: invalid.body.code }).toEqual({
      status: unknown.status,
      code: unknown.body.code,
    });
  });
});
