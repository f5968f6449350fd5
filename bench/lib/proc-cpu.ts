/**
 * CPU time of processes from /proc (Linux), to show how a benchmark's CPU was split between its parts.
 * Times are in seconds of one core (utime + stime). On other platforms every reading is 0.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { round } from './stats.ts';

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

/** CPU seconds of each part of a bench (and of the whole machine) at one moment. */
export interface CpuSnapshot<K extends string> {
  /** `performance.now()` when it was taken. */
  at: number;
  parts: Record<K, number>;
  machine: number;
}

/** Reads each part's CPU seconds (e.g. `{ server: () => cpuSeconds(pid) }`) and the machine's. */
export function cpuSnapshot<K extends string>(parts: Record<K, () => number>): CpuSnapshot<K> {
  const at = performance.now();
  const read = Object.fromEntries(Object.entries<() => number>(parts).map(([k, f]) => [k, f()])) as Record<K, number>;
  return { at, parts: read, machine: machineBusySeconds() };
}

/**
 * CPU of each part between two snapshots in % of one core (200 % = both cores of a 2-core machine), rounded to
 * `digits`, in the parts' order, then `otherOnMachine`: the rest of the machine (neighbours, the kernel).
 */
export function cpuPercent<K extends string>(a: CpuSnapshot<K>, b: CpuSnapshot<K>, digits = 1): Record<K | 'otherOnMachine', number> {
  const windowS = (b.at - a.at) / 1000;
  const pct = (x: number): number => round((x / windowS) * 100, digits);
  const out = {} as Record<K | 'otherOnMachine', number>;
  let ours = 0;
  for (const k of Object.keys(a.parts) as K[]) {
    const used = b.parts[k] - a.parts[k];
    ours += used;
    out[k] = pct(used);
  }
  out.otherOnMachine = pct(Math.max(0, b.machine - a.machine - ours));
  return out;
}
