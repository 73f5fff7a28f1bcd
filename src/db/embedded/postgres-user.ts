import { spawnSync } from 'node:child_process';

/** The user PostgreSQL runs as when we are root, since it refuses to run as root itself. */
export interface RunAs {
  uid: number;
  gid: number;
}

function lookUp(): RunAs | undefined {
  const uid = spawnSync('id', ['-u', 'postgres'], { encoding: 'utf8' });
  const gid = spawnSync('id', ['-g', 'postgres'], { encoding: 'utf8' });
  if (uid.status !== 0 || gid.status !== 0) return undefined;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Undefined when we are not root: PostgreSQL then runs as we do. */
export function postgresUser(): RunAs | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const existing = lookUp();
  if (existing) return existing;
  spawnSync('groupadd', ['--system', 'postgres']);
  spawnSync('useradd', ['--system', '--gid', 'postgres', '--shell', '/usr/sbin/nologin', 'postgres']);
  const created = lookUp();
  if (created) return created;
  throw new Error(
    'PostgreSQL does not run as root and no postgres user could be created: create one (useradd --system postgres), start Cordon as another user, or set DATABASE_URL',
  );
}

export interface Outcome {
  ok: boolean;
  /** The first line the command printed, or why it could not start. */
  detail: string;
}

/**
 * Runs a short command as `user` (as us when undefined): the kernel decides, so modes,
 * ownership and ACLs all count.
 */
export function attempt(user: RunAs | undefined, command: string, args: string[]): Outcome {
  const result = spawnSync(command, args, { ...user, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const output = `${result.error?.message ?? ''}\n${result.stderr ?? ''}\n${result.stdout ?? ''}`;
  const detail = output.split('\n').find((line) => line.trim()) ?? `exit code ${result.status}`;
  return { ok: result.status === 0, detail: detail.trim() };
}

/** Whether `user` can traverse every directory down to `directory` and search it. */
export function canEnter(user: RunAs | undefined, directory: string): boolean {
  return attempt(user, 'test', ['-x', directory]).ok;
}
