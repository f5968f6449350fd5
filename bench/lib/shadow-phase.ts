/**
 * One phase of bench/shadow-throughput.ts — the generators' load at one level, a warm-up and a measured window,
 * with the CPU of each part and the server's batching counters — and the medians over the runs with their table.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import type { TestMosquitto } from '../../test/helpers/mosquitto.ts';
import { cpuPercent, cpuSeconds, cpuSnapshot, treeCpuSeconds } from './proc-cpu.ts';
import type { Generator } from './shadow-generators.ts';
import type { PhaseMessage, PhaseResult } from './shadow-load-generator.ts';
import { median, round, summarize } from './stats.ts';
import { markdownTable } from './table.ts';

/** `floor`: no server and no database, a trivial responder (bench/lib/shadow-floor.ts) — what the load alone costs. */
export type TargetKind = 'postgres' | 'pglite' | 'floor';

/** What one target's phases run against: Mosquitto and the in-process server with its database, or the floor responder. */
export interface Target {
  kind: TargetKind;
  /** The shadow service's counters and drain (the floor's: one "batch" per request, nothing to drain). */
  shadows: { stats(): { batches: number; requests: number }; drain(): Promise<void> };
  /** Registers the run's devices before the generators start. */
  addDevices(uuids: string[]): Promise<void>;
  mosquitto: TestMosquitto;
  mosquittoPid: number;
  postmasterPid: number | null;
  settings: Record<string, string>;
  stop(): Promise<void>;
}

/**
 * Seconds of warm-up, of the open loop's ramp at its start, of the measured window, and of grace for the last
 * replies (`--warmup`, `--ramp`, `--seconds`, `--grace`).
 */
export interface PhaseTiming {
  warmup: number;
  ramp: number;
  seconds: number;
  grace: number;
}

export interface PhaseSpec {
  label: string;
  mode: 'open' | 'closed';
  /** Open: total updates/s offered; closed: total updates in flight. */
  level: number;
}

export interface PhaseRow {
  target: TargetKind;
  phase: string;
  /** Updates/s actually sent in the measured window (open loop: should equal the offered rate). */
  offeredPerS: number;
  /** Replies `accepted` or `rejected` arriving in the measured window, per second. */
  acceptedPerS: number;
  sent: number;
  accepted: number;
  rejected: number;
  lost: number;
  unexpected: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Average requests per database transaction in the window (from the shadow service's counters). */
  avgBatch: number;
  /** CPU of each part in % of one core over the window (200 % = the whole 2-core machine). */
  cpu: { server: number; generators: number; mosquitto: number; postgres: number; otherOnMachine: number };
  /** Event-loop utilization of the server's thread in the window (1 = saturated). */
  serverEventLoop: number;
  /** Open loop: the furthest a generator fell behind its schedule (ms). */
  maxScheduleLagMs: number;
  rejectedCodes: Record<string, number>;
  /**
   * Latency of the window's updates by the second they were sent in (JSON only): a level line is a steady state; a
   * slope or a high first second is a backlog still draining (see bench/README.md, warm-up).
   */
  timeline: Array<{ second: number; count: number; p50: number; p99: number; max: number }>;
}

export function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

function snapshot(t: Target, gens: Generator[]) {
  return {
    ...cpuSnapshot({
      server: () => cpuSeconds(process.pid),
      generators: () => gens.reduce((n, g) => n + cpuSeconds(g.child.pid!), 0),
      mosquitto: () => cpuSeconds(t.mosquittoPid),
      postgres: () => (t.postmasterPid === null ? 0 : treeCpuSeconds(t.postmasterPid)),
    }),
    stats: t.shadows.stats(),
    elu: performance.eventLoopUtilization(),
  };
}

export async function runPhase(t: Target, gens: Generator[], spec: PhaseSpec, opts: PhaseTiming): Promise<PhaseRow> {
  const shares = split(spec.level, gens.length);
  const pending = gens.map((g, i) => {
    const msg: PhaseMessage = {
      type: 'phase',
      mode: spec.mode,
      rate: spec.mode === 'open' ? shares[i]! : 0,
      inFlight: spec.mode === 'closed' ? Math.max(1, shares[i]!) : 0,
      warmupMs: opts.warmup * 1000,
      rampMs: opts.ramp * 1000,
      measureMs: opts.seconds * 1000,
      graceMs: opts.grace * 1000,
    };
    return g.request<PhaseResult>(msg, 'result');
  });
  await sleep(opts.warmup * 1000);
  const a = snapshot(t, gens);
  await sleep(opts.seconds * 1000);
  const b = snapshot(t, gens);
  const results = await Promise.all(pending);

  const lat = summarize(concat(results.map((r) => r.latencies)));
  const sum = (f: (r: PhaseResult) => number): number => results.reduce((n, r) => n + f(r), 0);
  const codes: Record<string, number> = {};
  for (const r of results) for (const [c, n] of Object.entries(r.rejectedCodes)) codes[c] = (codes[c] ?? 0) + n;
  const batches = b.stats.batches - a.stats.batches;
  return {
    target: t.kind,
    phase: spec.label,
    offeredPerS: round(sum((r) => r.sent) / opts.seconds, 0),
    acceptedPerS: round(sum((r) => r.repliedInWindow) / opts.seconds, 0),
    sent: sum((r) => r.sent),
    accepted: sum((r) => r.accepted),
    rejected: sum((r) => r.rejected),
    lost: sum((r) => r.lost),
    unexpected: sum((r) => r.unexpected),
    p50: round(lat.p50, 2),
    p90: round(lat.p90, 2),
    p99: round(lat.p99, 2),
    max: round(lat.max, 2),
    avgBatch: batches > 0 ? round((b.stats.requests - a.stats.requests) / batches, 1) : Number.NaN,
    cpu: cpuPercent(a, b, 0),
    serverEventLoop: round(performance.eventLoopUtilization(b.elu, a.elu).utilization, 2),
    maxScheduleLagMs: round(Math.max(...results.map((r) => r.maxScheduleLagMs)), 0),
    rejectedCodes: codes,
    timeline: timeline(results, opts.seconds),
  };
}

function timeline(results: PhaseResult[], seconds: number): PhaseRow['timeline'] {
  const buckets: number[][] = Array.from({ length: seconds }, () => []);
  for (const r of results) {
    r.latencies.forEach((l, i) => buckets[Math.min(seconds - 1, Math.max(0, Math.floor(r.sentAtMs[i]! / 1000)))]!.push(l));
  }
  return buckets.map((b, second) => {
    const s = summarize(b);
    return { second, count: s.count, p50: round(s.p50, 1), p99: round(s.p99, 1), max: round(s.max, 1) };
  });
}

function concat(parts: Float64Array[]): Float64Array {
  const out = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Median of every numeric field over the runs, per (target, phase). */
export function medians(runs: Array<{ run: number; rows: PhaseRow[] }>) {
  const first = runs[0]!.rows;
  return first.map((row, i) => {
    const same = runs.map((r) => r.rows[i]!);
    const m = (f: (r: PhaseRow) => number): number => median(same.map(f));
    return {
      ...row,
      offeredPerS: m((r) => r.offeredPerS),
      acceptedPerS: m((r) => r.acceptedPerS),
      sent: m((r) => r.sent),
      accepted: m((r) => r.accepted),
      rejected: m((r) => r.rejected),
      lost: m((r) => r.lost),
      unexpected: m((r) => r.unexpected),
      p50: m((r) => r.p50),
      p90: m((r) => r.p90),
      p99: m((r) => r.p99),
      max: m((r) => r.max),
      avgBatch: m((r) => r.avgBatch),
      cpu: {
        server: m((r) => r.cpu.server),
        generators: m((r) => r.cpu.generators),
        mosquitto: m((r) => r.cpu.mosquitto),
        postgres: m((r) => r.cpu.postgres),
        otherOnMachine: m((r) => r.cpu.otherOnMachine),
      },
      serverEventLoop: m((r) => r.serverEventLoop),
      maxScheduleLagMs: m((r) => r.maxScheduleLagMs),
      rejectedCodes: {},
      timeline: row.timeline.map((t, k) => ({
        second: t.second,
        count: m((r) => r.timeline[k]?.count ?? Number.NaN),
        p50: round(m((r) => r.timeline[k]?.p50 ?? Number.NaN), 1),
        p99: round(m((r) => r.timeline[k]?.p99 ?? Number.NaN), 1),
        max: round(m((r) => r.timeline[k]?.max ?? Number.NaN), 1),
      })),
      // Total over the runs: a loss in any run must stay visible in the summary.
      ...{ lostTotal: same.reduce((n, r) => n + r.lost, 0), rejectedTotal: same.reduce((n, r) => n + r.rejected, 0) },
    };
  });
}

/** The Markdown table of the medians, one row per (target, phase). */
export function phaseTable(summary: PhaseRow[]): string {
  return markdownTable(
    ['target', 'phase', 'offered/s', 'accepted/s', 'rejected', 'lost', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'avg batch', 'cpu srv/gen/mosq/pg/other %', 'srv loop'],
    summary.map((r) => [
      r.target,
      r.phase,
      r.offeredPerS,
      r.acceptedPerS,
      r.rejected,
      r.lost,
      r.p50,
      r.p90,
      r.p99,
      r.max,
      r.avgBatch,
      `${r.cpu.server}/${r.cpu.generators}/${r.cpu.mosquitto}/${r.cpu.postgres}/${r.cpu.otherOnMachine}`,
      r.serverEventLoop,
    ]),
  );
}
