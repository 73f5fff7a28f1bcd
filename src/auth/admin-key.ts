import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';

/**
 * Development convenience: without ADMIN_API_KEY, a key is generated once into
 * `<dataDir>/admin-key` (mode 0600) and reused on every later start.
 */
export async function developmentAdminKey(dataDir: string): Promise<{ key: string; file: string; created: boolean }> {
  const file = path.resolve(dataDir, 'admin-key');
  if (existsSync(file)) return { key: (await readFile(file, 'utf8')).trim(), file, created: false };
  await mkdir(path.dirname(file), { recursive: true });
  const key = randomBytes(32).toString('base64url');
  await writeFile(file, key + '\n', { mode: 0o600, flag: 'wx' });
  return { key, file, created: true };
}
