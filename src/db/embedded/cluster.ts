import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { canEnter, type RunAs } from './postgres-user.ts';
import { ensureSystemDirectory, systemDirectory } from './system-directory.ts';

export interface Cluster {
  directory: string;
  /** Set when the cluster lives outside the data directory, saying where and why. */
  relocation?: string;
  initialised: boolean;
  remove(): Promise<void>;
}

/**
 * `<dataDir>/pg`, unless we are root and the postgres user cannot enter the data directory:
 * then `/var/lib/cordon/clusters/<hash of the data directory>`, one per clone, and
 * `<dataDir>/pg-location` names it for people and keeps it chosen on later starts.
 */
export async function locateCluster(
  dataDir: string,
  user: RunAs | undefined,
  hadPassword: boolean,
  logger: Logger,
): Promise<Cluster> {
  const local = path.join(dataDir, 'pg');
  const locationFile = path.join(dataDir, 'pg-location');
  const hash = createHash('sha256').update(dataDir).digest('hex').slice(0, 16);
  const relocated = path.join(systemDirectory, 'clusters', hash);
  const enterable = !user || canEnter(user, dataDir);
  const recorded = existsSync(locationFile) ? (await readFile(locationFile, 'utf8')).split('\n')[0] : undefined;
  if (recorded !== undefined && recorded !== relocated) {
    // Moved or copied from another path: that cluster is the other path's, this one gets its own.
    logger.warn({ cluster: recorded }, `${locationFile} named ${recorded}, the cluster of another path; not using it`);
    await rm(locationFile);
  }
  const chosenEarlier = recorded === relocated;
  if (!enterable && !chosenEarlier && existsSync(path.join(local, 'PG_VERSION'))) {
    throw new Error(
      `the postgres user cannot enter ${dataDir}, which holds a cluster: move it with \`mkdir -p ${path.dirname(relocated)} && mv ${local} ${relocated}\` and start again, or move ${dataDir} where the postgres user can enter`,
    );
  }
  let directory = local;
  let relocation: string | undefined;
  if (!enterable) {
    directory = relocated;
    relocation = `the postgres user cannot enter ${dataDir}; the embedded cluster lives in ${relocated} instead`;
  } else if (user && chosenEarlier) {
    directory = relocated;
    relocation = `the embedded cluster of ${dataDir} stays in ${relocated}, where an earlier start put it (see ${locationFile})`;
  }

  if (directory === relocated) {
    await ensureSystemDirectory('clusters', `the postgres user cannot enter ${dataDir}`);
    if (existsSync(path.join(relocated, 'PG_VERSION')) && !hadPassword) {
      // Its password went with an earlier data directory at this path: keep it, out of the way.
      const aside = `${relocated}.replaced-${new Date().toISOString().replace(/[:.]/g, '-')}`;
      await rename(relocated, aside);
      logger.warn(
        { cluster: aside },
        `moved the embedded cluster of an earlier ${dataDir} (its password is gone) to ${aside}; delete it when unneeded`,
      );
    }
    if (!chosenEarlier) {
      const explanation = `The embedded PostgreSQL cluster of ${dataDir} lives there: the postgres user, which runs PostgreSQL when Cordon starts as root, cannot enter ${dataDir}.`;
      await writeFile(locationFile, `${relocated}\n${explanation}\n`);
    }
  }

  const initialised = existsSync(path.join(directory, 'PG_VERSION'));
  if (!initialised) {
    await mkdir(directory, { recursive: true });
    if (user) await chown(directory, user.uid, user.gid);
    await chmod(directory, 0o700);
  }
  const remove = async () => {
    await rm(directory, { recursive: true, force: true });
    if (directory === relocated) await rm(locationFile, { force: true });
  };
  return { directory, relocation, initialised, remove };
}
