/**
 * One measured load of bench/config-poll.ts: `generators` child processes (bench/lib/config-poll-generator.ts) keep
 * `connections` keep-alive connections busy with `GET …/config` + `If-None-Match` over the given devices; a warm-up,
 * then the measured window with the CPU of each part; the generators' histograms merged into one {@link Result}.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { TestProcess } from '../../test/helpers/processes.ts';
import type { RunStops } from './cleanup.ts';
import { log } from './cli.ts';
import { BIN_MS, type GeneratorDone, type GeneratorStart } from './config-poll-generator.ts';
import { cpuPercent, cpuSeconds, cpuSnapshot, treeCpuSeconds } from './proc-cpu.ts';
import { machineInfo } from './results.ts';
import { round } from './stats.ts';

/** Rows of the table: `hot` = `--devices` (each polled many times a second: the server's caches answer most), `cold` = `--cold-devices` on PostgreSQL (each device polled once every few seconds: every request misses both caches, as in a fleet polling every minute). */
export type Phase = 'hot' | 'cold';

export interface PollDevice {
  uuid: string;
  token: string;
  etag: string;
}

export interface Result {
  target: 'postgres' | 'pglite';
  phase: Phase;
  devices: number;
  requests: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  statuses: Record<string, number>;
  non304: number;
  errors: string[];
  cpu: { server: number; postgres: number; generators: number; otherOnMachine: number };
  loadAvg: { before: number[]; after: number[] };
  setupS: number;
}

/** What a target's loads share. */
export interface LoadContext {
  kind: 'postgres' | 'pglite';
  run: number;
  server: TestProcess & { url: string };
  postmasterPid: number | null;
  stops: RunStops;
  setupS: number;
  opts: { generators: number; connections: number; warmup: number; seconds: number };
}

const GENERATOR = fileURLToPath(new URL('./config-poll-generator.ts', import.meta.url));

function percentileOf(histogram: number[], overflow: number[], total: number, p: number): number {
  const rank = Math.ceil((p / 100) * total);
  let seen = 0;
  for (let i = 0; i < histogram.length; i++) {
    seen += histogram[i]!;
    if (seen >= rank) return (i + 1) * BIN_MS;
  }
  const rest = [...overflow].sort((a, b) => a - b);
  return rest[Math.min(rest.length - 1, rank - seen - 1)] ?? Number.NaN;
}

/** One measured load over `devs` (generators forked for it, stopped after). */
export async function runLoad(ctx: LoadContext, phase: Phase, devs: PollDevice[]): Promise<Result> {
  const { kind, run, server, postmasterPid, stops, setupS, opts } = ctx;
  // Generators: devices and connections split between them.
  const gens: ChildProcess[] = [];
  for (let g = 0; g < opts.generators; g++) {
    const child = fork(GENERATOR, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    gens.push(child);
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    stops.track(async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      if ((await Promise.race([exited.then(() => 'ok'), sleep(3000, 'timeout')])) === 'timeout') child.kill('SIGKILL');
    });
  }
  await sleep(1500); // let the children load (tsx) before the clock starts
  const { hostname: host, port } = new URL(server.url);
  const snap = () =>
    cpuSnapshot({
      server: () => cpuSeconds(server.child.pid!),
      postgres: () => (postmasterPid === null ? 0 : treeCpuSeconds(postmasterPid)),
      generators: () => gens.reduce((n, c) => n + cpuSeconds(c.pid!), 0),
    });
  const loadBefore = machineInfo().loadAvg;
  const done = gens.map(
    (child, g) =>
      new Promise<GeneratorDone>((resolve, reject) => {
        child.once('message', (m) => resolve(m as GeneratorDone));
        child.once('exit', (code) => reject(new Error(`generator ${g} exited (${code})`)));
        const share = devs.filter((_, i) => i % opts.generators === g);
        const conns = Math.floor(opts.connections / opts.generators) + (g < opts.connections % opts.generators ? 1 : 0);
        const msg: GeneratorStart = { type: 'start', host: host.replace(/^\[|\]$/g, ''), port: Number(port), devices: share, connections: conns, warmupMs: opts.warmup * 1000, durationMs: opts.seconds * 1000 };
        child.send(msg);
      }),
  );
  await sleep(opts.warmup * 1000);
  const before = snap();
  await sleep(opts.seconds * 1000);
  const after = snap();
  const results = await Promise.all(done);
  const loadAfter = machineInfo().loadAvg;

  const histogram = new Array<number>(results[0]!.histogram.length).fill(0);
  const overflow: number[] = [];
  const statuses: Record<string, number> = {};
  let requests = 0;
  for (const r of results) {
    requests += r.requests;
    r.histogram.forEach((v, i) => (histogram[i]! += v));
    overflow.push(...r.overflow);
    for (const [k, v] of Object.entries(r.statuses)) statuses[k] = (statuses[k] ?? 0) + v;
  }
  const maxMs = overflow.length > 0 ? Math.max(...overflow) : (histogram.findLastIndex((v) => v > 0) + 1) * BIN_MS;
  const result: Result = {
    target: kind,
    phase,
    devices: devs.length,
    requests,
    rps: round(requests / opts.seconds, 0),
    p50: round(percentileOf(histogram, overflow, requests, 50), 2),
    p90: round(percentileOf(histogram, overflow, requests, 90), 2),
    p99: round(percentileOf(histogram, overflow, requests, 99), 2),
    max: round(maxMs, 2),
    statuses,
    non304: requests - (statuses['304'] ?? 0),
    errors: results.flatMap((r) => r.errors),
    cpu: cpuPercent(before, after),
    loadAvg: { before: loadBefore, after: loadAfter },
    setupS: round(setupS, 1),
  };
  log(
    `[run ${run}] ${kind} ${phase} (${devs.length} devices): ${result.rps} req/s, p50 ${result.p50} p99 ${result.p99} ms, non-304 ${result.non304}, cpu srv/pg/gen/other ${result.cpu.server}/${result.cpu.postgres}/${result.cpu.generators}/${result.cpu.otherOnMachine} %, load ${loadBefore.join(' ')} → ${loadAfter.join(' ')}`,
  );
  for (const g of gens) g.kill('SIGTERM');
  return result;
}
