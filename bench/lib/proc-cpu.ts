/**
 * CPU time of processes from /proc (Linux), to show how a benchmark's CPU was split between its parts.
 * Times are in seconds of one core (utime + stime). On other platforms every reading is 0.
 */
import { readFileSync, readdirSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ: 100 on every mainstream Linux

interface Stat {
  ppid: number;
  /** utime + stime, seconds. */
  self: number;
  /** cutime + cstime (reaped children), seconds. */
  children: number;
}

function readStat(pid: number): Stat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null; // gone, or not Linux
  }
  // The command name (field 2) may hold spaces: fields after it start after the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const n = (i: number): number => Number(f[i - 3]);
  return { ppid: n(4), self: (n(14) + n(15)) / TICKS_PER_SECOND, children: (n(16) + n(17)) / TICKS_PER_SECOND };
}

/** CPU seconds used so far by `pid` (its threads included). */
export function cpuSeconds(pid: number): number {
  return readStat(pid)?.self ?? 0;
}

/**
 * CPU seconds used by `rootPid` and every live child, plus children it has already reaped
 * (a PostgreSQL postmaster and its backends).
 */
export function treeCpuSeconds(rootPid: number): number {
  const root = readStat(rootPid);
  if (!root) return 0;
  let total = root.self + root.children;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^[0-9]+$/.test(p));
  } catch {
    return total; // no /proc: the root's own time is all we know
  }
  for (const p of pids) {
    const s = readStat(Number(p));
    if (s && s.ppid === rootPid) total += s.self;
  }
  return total;
}

/** Busy CPU seconds of the whole machine so far (all cores, every process: ours and the neighbours'). */
export function machineBusySeconds(): number {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!;
    const [, user, nice, system, , , irq, softirq] = line.trim().split(/\s+/).map(Number);
    return ((user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0)) / TICKS_PER_SECOND;
  } catch {
    return 0; // not Linux
  }
}
