import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

// /proc reports CPU time in USER_HZ ticks, 100 a second on Linux.
const ticks = 100;

function procStat(pid: number | string): { ppid: number; own: number; reaped: number } | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = text
      .slice(text.lastIndexOf(')') + 2)
      .split(' ')
      .map(Number);
    // Fields 4, 14–17 of proc(5): ppid, utime, stime, and the children's it has waited for.
    return { ppid: fields[1]!, own: (fields[11]! + fields[12]!) / ticks, reaped: (fields[13]! + fields[14]!) / ticks };
  } catch {
    return undefined;
  }
}

/** CPU seconds of a PostgreSQL server: the postmaster, its live children, and those it has reaped. */
export function serverSeconds(postmaster: number): number {
  let total = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    const stat = procStat(pid);
    if (Number(pid) === postmaster && stat) total += stat.own + stat.reaped;
    else if (stat?.ppid === postmaster) total += stat.own;
  }
  return total;
}

/** CPU seconds the whole machine was busy (steal included: another guest had the core). */
export function machineSeconds(): number {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const idle = fields[3]! + fields[4]!;
  return (fields.reduce((sum, value) => sum + value, 0) - idle) / ticks;
}

/**
 * Watches how busy the machine was with other work (other processes, other guests) while a
 * suite ran: neither this process nor its PostgreSQL server. A ratio's spread means more next
 * to this number. Returns null where there is no /proc.
 */
export function watchOtherWork(postmaster: number | undefined): () => number | null {
  try {
    const start = { wall: performance.now(), machine: machineSeconds(), self: selfSeconds(), server: 0 };
    start.server = postmaster ? serverSeconds(postmaster) : 0;
    return () => {
      const seconds = (performance.now() - start.wall) / 1000;
      const server = postmaster ? serverSeconds(postmaster) - start.server : 0;
      const other = machineSeconds() - start.machine - (selfSeconds() - start.self) - server;
      return Number(Math.min(availableParallelism(), Math.max(0, other / seconds)).toFixed(2));
    };
  } catch {
    return () => null;
  }
}

function selfSeconds(): number {
  const usage = process.cpuUsage();
  return (usage.user + usage.system) / 1e6;
}
