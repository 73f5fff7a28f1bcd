import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';

/** Root-owned and world-traversable, so the postgres user reaches what we put there. */
export const systemDirectory = '/var/lib/cordon';

export function errorCode(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? (error instanceof Error ? error.message : String(error));
}

/** Creates `/var/lib/cordon/<name>` (0755) or fails with one line that says what to do. */
export async function ensureSystemDirectory(name: string, why: string): Promise<string> {
  const directory = path.join(systemDirectory, name);
  try {
    await mkdir(directory, { recursive: true });
    // chmod as well: a umask of 077 would leave them closed to the postgres user.
    await chmod(systemDirectory, 0o755);
    await chmod(directory, 0o755);
    return directory;
  } catch (error) {
    throw new Error(
      `cannot create ${directory} (${errorCode(error)}), needed because ${why}: let root write ${systemDirectory}, start Cordon from a directory the postgres user can enter, or set DATABASE_URL`,
    );
  }
}
