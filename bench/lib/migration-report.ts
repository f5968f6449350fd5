/** The summary of bench/migration-latency.ts: medians over the runs per flow, and its two Markdown tables. */
import type { FlowResult } from './migration-flow.ts';
import { median, round, type LatencySummary } from './stats.ts';
import { markdownTable } from './table.ts';

export interface RunResult {
  run: number;
  clockOffsetRttMs: number;
  flows: FlowResult[];
}

/** Per flow: medians over the runs (failures summed). */
export function summarizeFlows(runs: RunResult[]) {
  const flowNames = runs[0]!.flows.map((f) => f.flow);
  return flowNames.map((name) => {
    const same = runs.map((r) => r.flows.find((f) => f.flow === name)!);
    const m = (f: (x: FlowResult) => number): number => round(median(same.map(f)), 2);
    const lat = (f: (x: FlowResult) => LatencySummary) => ({ p50: m((x) => f(x).p50), p90: m((x) => f(x).p90), p99: m((x) => f(x).p99), max: m((x) => f(x).max) });
    const stepNames = Object.keys(same[0]!.steps);
    return {
      flow: name,
      moves: m((x) => x.moves),
      failuresTotal: same.reduce((n, x) => n + x.failures, 0),
      a: lat((x) => x.a),
      b: lat((x) => x.b),
      connack: lat((x) => x.connack),
      steps: Object.fromEntries(stepNames.map((s) => [s, m((x) => x.steps[s] ?? Number.NaN)])),
      cpu: {
        server: m((x) => x.cpu.server),
        agent: m((x) => x.cpu.agent),
        mosquitto: m((x) => x.cpu.mosquitto),
        postgres: m((x) => x.cpu.postgres),
        bench: m((x) => x.cpu.bench),
        otherOnMachine: m((x) => x.cpu.otherOnMachine),
      },
    };
  });
}

export type FlowSummary = ReturnType<typeof summarizeFlows>[number];

/** The latency table, the "where the time goes" table and one load-average line per run. */
export function flowTables(summary: FlowSummary[], runs: RunResult[]): { table: string; steps: string; loads: string[] } {
  const table = markdownTable(
    ['flow', 'moves', '(a) p50', 'p90', 'p99', 'max', '(b) p50', 'p90', 'p99', 'max', 'failures', 'cpu srv/agent/mosq/pg/bench/other %'],
    summary.map((s) => [
      s.flow,
      s.moves,
      s.a.p50,
      s.a.p90,
      s.a.p99,
      s.a.max,
      s.b.p50,
      s.b.p90,
      s.b.p99,
      s.b.max,
      s.failuresTotal,
      `${s.cpu.server}/${s.cpu.agent}/${s.cpu.mosquitto}/${s.cpu.postgres}/${s.cpu.bench}/${s.cpu.otherOnMachine}`,
    ]),
  );
  const stepKey = (n: string): number => {
    const v = summary.map((s) => s.steps[n]).find((x) => x !== undefined && Number.isFinite(x));
    return v ?? Infinity;
  };
  // In time order (the first flow's medians); the baseline's own steps after.
  const stepNames = [...new Set(summary.flatMap((s) => Object.keys(s.steps)))].sort((x, y) => stepKey(x) - stepKey(y));
  const steps = markdownTable(['ms after the PUT (median)', ...summary.map((s) => s.flow)], stepNames.map((n) => [n, ...summary.map((s) => s.steps[n] ?? null)]));
  const loads = runs.map((r) => `run ${r.run}: ${r.flows.map((f) => `${f.flow.split(' ')[0]} ${f.loadAvg.before.join(' ')} → ${f.loadAvg.after.join(' ')}`).join('; ')}`);
  return { table, steps, loads };
}
