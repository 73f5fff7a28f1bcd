import { spawn, type ChildProcess } from 'node:child_process';
import { chown, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Logger } from 'pino';
import type { RunAs } from './postgres-user.ts';

export interface Programs {
  /** Holds `bin/`, `lib/` and `share/`. */
  binaries: string;
  cluster: string;
  user: RunAs | undefined;
  logger: Logger;
}

interface Run {
  child: ChildProcess;
  /** The last lines it printed. */
  output: string[];
  /** How it ended, once all its output is read. */
  ended: Promise<string>;
}

/** One line out of a PostgreSQL program's output: its errors, then its hints. */
function failureLine(output: string[]): string {
  const marked = (marker: RegExp) =>
    output.flatMap((line) => {
      const at = line.search(marker);
      return at < 0 ? [] : [line.slice(at).replace(/\s+/g, ' ')];
    });
  const found = [...marked(/\b(FATAL|PANIC|ERROR|error):/), ...marked(/\b(HINT|hint):/)];
  return (found.length ? found : output.slice(-1)).join(' ') || 'no output';
}

function run(programs: Programs, program: string, args: string[], onLine = (_line: string) => {}): Run {
  const child = spawn(path.join(programs.binaries, 'bin', program), args, {
    ...programs.user,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  // Read to the end even when nobody waits for it: a full pipe would stall PostgreSQL.
  for (const stream of [child.stdout!, child.stderr!]) {
    createInterface({ input: stream }).on('line', (line) => {
      programs.logger.debug({ postgres: line });
      output.push(line);
      if (output.length > 50) output.shift();
      onLine(line);
    });
  }
  const ended = new Promise<string>((resolve) => {
    child.once('error', (error) => resolve(error.message));
    child.once('close', (code, signal) => resolve(signal ? `signal ${signal}` : `exit code ${code}`));
  });
  return { child, output, ended };
}

export async function initialise(programs: Programs, password: string): Promise<void> {
  // initdb reads the password from a file the postgres user can open: beside the cluster, in
  // a directory only that user enters, and gone once initdb is done (never in a shared /tmp).
  const scratch = await mkdtemp(path.join(path.dirname(programs.cluster), '.initdb-'));
  try {
    const passwordFile = path.join(scratch, 'password');
    await writeFile(passwordFile, password + '\n', { mode: 0o600 });
    if (programs.user) {
      await chown(passwordFile, programs.user.uid, programs.user.gid);
      await chown(scratch, programs.user.uid, programs.user.gid);
    }
    const initdb = run(programs, 'initdb', [
      `--pgdata=${programs.cluster}`,
      '--auth=scram-sha-256',
      // UTF-8 with the C locale: the same cluster whatever LANG the machine has (C always admits
      // UTF-8), and untranslated messages, so start() can wait for the English "ready" line.
      '--encoding=UTF8',
      '--locale=C',
      '--username=postgres',
      `--pwfile=${passwordFile}`,
    ]);
    const ending = await initdb.ended;
    if (ending !== 'exit code 0') throw new Error(`initdb failed (${ending}): ${failureLine(initdb.output)}`);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
}

export interface Server {
  stop(): Promise<void>;
}

export async function start(programs: Programs, port: number): Promise<Server> {
  let markReady = () => {};
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  const postgres = run(
    programs,
    'postgres',
    ['-D', programs.cluster, '-p', String(port), '-c', 'listen_addresses=127.0.0.1'],
    (line) => line.includes('database system is ready to accept connections') && markReady(),
  );
  // A postgres that outlived us would hold the port and the cluster's lock against the next start.
  const stopWithUs = () => postgres.child.kill('SIGINT');
  process.on('exit', stopWithUs);
  let state: 'starting' | 'running' | 'stopping' = 'starting';
  const ended = postgres.ended.then((ending) => {
    process.off('exit', stopWithUs);
    if (state === 'running') programs.logger.warn({ ending }, 'embedded PostgreSQL stopped by itself');
    return ending;
  });

  const ending = await Promise.race([ready.then(() => undefined), ended]);
  if (ending !== undefined) {
    throw new Error(`embedded PostgreSQL on port ${port} did not start (${ending}): ${failureLine(postgres.output)}`);
  }
  state = 'running';
  return {
    async stop() {
      state = 'stopping';
      // SIGINT is PostgreSQL's fast shutdown: sessions end, the cluster stays consistent.
      if (postgres.child.exitCode === null && postgres.child.signalCode === null) postgres.child.kill('SIGINT');
      await ended;
    },
  };
}
