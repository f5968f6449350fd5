/**
 * The measuring half of bench/migration-latency.ts: a watcher on each broker (presence and every `device-state`
 * message of the watched device, as the brokers see them), and one flow — warm-up and measured moves of one device
 * back and forth, each after the previous one ended — summarized into a {@link FlowResult}.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt from 'mqtt';
import { now, reportedOn, until, type MigrationStatuses } from './api.ts';
import { interrupted, type RunStops } from './cleanup.ts';
import { log } from './cli.ts';
import type { BrokerInfo } from './migration-baseline.ts';
import { putMove, relative, type MoveTimes } from './moves.ts';
import { cpuPercent, cpuSeconds, cpuSnapshot, treeCpuSeconds } from './proc-cpu.ts';
import { machineInfo } from './results.ts';
import type { Stack } from './stack.ts';
import { median, round, summarize, type LatencySummary } from './stats.ts';

/** Timestamps (this process's clock, ms) of one move. */
export interface Move extends MoveTimes {
  /** Agent: `→ connecting`, `→ verifying` (CONNACK), `→ switching` (verified, switched), `→ idle` (done). */
  connecting?: number;
  verifying?: number;
  switching?: number;
  idle?: number;
  /** Baseline: CONNACK of the new connection. */
  baselineConnack?: number;
  /** The device's `online` presence arriving on the target broker (a watcher subscribed there). */
  onlineOnTarget?: number;
  /** First arrival at the broker watcher of each `device-state` message, by `old|new <topic suffix>`. */
  trace?: Record<string, number>;
}

export interface Cpu {
  server: number;
  agent: number;
  mosquitto: number;
  postgres: number;
  bench: number;
  otherOnMachine: number;
}

export interface FlowResult {
  flow: 'switchyard agent' | 'baseline (disconnect, 2 s, connect)';
  moves: number;
  failures: number;
  a: LatencySummary;
  b: LatencySummary;
  /** Broker-side: PUT → the device's `online` presence on the target (right after the new CONNACK). */
  connack: LatencySummary;
  /** Median ms from the PUT to each step (moves that completed). */
  steps: Record<string, number>;
  cpu: Cpu;
  loadAvg: { before: number[]; after: number[] };
  wallS: number;
  timeline: Move[];
}

/** What a run's flows share: its stack, brokers and SSE statuses, and the move under way. */
export interface FlowContext {
  run: number;
  stack: Stack;
  brokers: BrokerInfo[];
  statuses: MigrationStatuses;
  /** The move under way and the device the broker watchers follow (read by the agent's and watchers' listeners). */
  live: { current: Move | null; watchedUuid: string };
  settleMs: number;
  timeoutS: number;
}

/**
 * A watcher on each broker: the watched device's presence, and every `device-state` request and reply — where the
 * time goes, seen by the brokers themselves (QoS 0: the watcher adds no acknowledgements to anyone's path).
 */
export async function watchBrokers(ctx: FlowContext, stops: RunStops): Promise<void> {
  for (const b of ctx.brokers) {
    const w = await mqtt.connectAsync(b.url, { clientId: `bench-watch-${ctx.run}-${b.id}`, protocolVersion: 4, clean: true, reconnectPeriod: 0 });
    (w.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    await w.subscribeAsync({ 'iot/device/+/status': { qos: 0 }, 'iot/device/+/shadow/name/device-state/#': { qos: 0 } });
    w.on('message', (topic, payload) => {
      const at = now();
      const m = ctx.live.current;
      if (!m) return;
      const prefix = `iot/device/${ctx.live.watchedUuid}/`;
      if (!topic.startsWith(prefix)) return;
      const rest = topic.slice(prefix.length);
      if (rest === 'status') {
        if (m.onlineOnTarget !== undefined) return;
        const p = JSON.parse(payload.toString('utf8')) as { state?: string; brokerId?: number };
        if (p.state === 'online' && p.brokerId === m.toBrokerId && b.id === m.toBrokerId) m.onlineOnTarget = at;
        return;
      }
      let key = `${b.id === m.toBrokerId ? 'new' : 'old'} ${rest.slice('shadow/name/device-state/'.length)}`;
      if (key.endsWith(' update')) {
        const status = (JSON.parse(payload.toString('utf8')) as { state?: { reported?: { mqtt?: { status?: string } } } }).state?.reported?.mqtt?.status;
        if (status) key += ` (${status})`;
      }
      m.trace ??= {};
      m.trace[key] ??= at;
    });
    stops.track(() => w.endAsync(true));
  }
}

/** One flow: `count` measured moves after `warmup` ones, each after the previous ended (`isDone`). */
export async function runFlow(
  ctx: FlowContext,
  flow: FlowResult['flow'],
  uuid: string,
  warmup: number,
  count: number,
  isDone: (m: Move) => boolean,
  cpuPid: () => number,
): Promise<FlowResult> {
  const { api, server, mosquittoPids, postmasterPid } = ctx.stack;
  ctx.live.watchedUuid = uuid;
  const timeline: Move[] = [];
  const loadBefore = machineInfo().loadAvg;
  const snap = () =>
    cpuSnapshot({
      server: () => cpuSeconds(server.child.pid!),
      agent: () => cpuSeconds(cpuPid()),
      mosquitto: () => mosquittoPids.reduce((n, p) => n + cpuSeconds(p), 0),
      postgres: () => (postmasterPid === null ? 0 : treeCpuSeconds(postmasterPid)),
      bench: () => cpuSeconds(process.pid),
    });
  let before: ReturnType<typeof snap> | null = null;
  for (let i = 0; i < warmup + count; i++) {
    if (i === warmup) before = snap();
    if (interrupted()) throw new Error('interrupted');
    const target = ctx.brokers[(i + 1) % 2]!; // the device starts on A: B, A, B, …
    const m: Move = { index: i, warmup: i < warmup, toBrokerId: target.id, sent: now() };
    ctx.live.current = m;
    timeline.push(m);
    const what = `move ${i} to broker ${target.id}`;
    await putMove({ api, uuid, body: { brokerId: target.id }, move: m, statuses: ctx.statuses, keep: ['notified', 'migrating'], isDone, timeoutMs: ctx.timeoutS * 1000, what });
    ctx.live.current = null;
    if (m.failed) {
      log(`[run ${ctx.run}] ${flow} move ${i}: FAILED: ${m.failed}`);
      // Let the device settle where the server thinks it is before the next move.
      await until(() => reportedOn(api, uuid, target.id), ctx.timeoutS * 1000, 'the device to settle').catch(() => undefined);
    }
    await sleep(ctx.settleMs);
  }
  const after = snap();
  before ??= after;
  const measured = timeline.filter((m) => !m.warmup);
  const ok = measured.filter((m) => !m.failed);
  const aOf = (m: Move): number | undefined => (flow === 'switchyard agent' ? m.switching : m.baselineConnack);
  const lat = (f: (m: Move) => number | undefined): number[] => ok.map((m) => f(m)).filter((x): x is number => x !== undefined);
  const since = (f: (m: Move) => number | undefined) => (m: Move) => {
    const t = f(m);
    return t === undefined ? undefined : t - m.sent;
  };
  const steps: Record<string, number> = {};
  const stepFields: Array<[string, (m: Move) => number | undefined]> = [
    ['http 200', (m) => m.httpDone],
    ['notified (SSE)', (m) => m.notified],
    ['migrating (SSE)', (m) => m.migrating],
    ['agent → connecting', (m) => m.connecting],
    ['online on target (broker)', (m) => m.onlineOnTarget],
    ['agent → verifying', (m) => m.verifying],
    ['(a) on new broker', aOf],
    ['(b) completed (SSE)', (m) => m.completed],
    ['agent → idle', (m) => m.idle],
  ];
  for (const [name, f] of stepFields) {
    const xs = lat(since(f));
    if (xs.length > 0) steps[name] = round(median(xs), 2);
  }
  const traceKeys = [...new Set(ok.flatMap((m) => Object.keys(m.trace ?? {})))];
  for (const k of traceKeys) {
    const xs = lat(since((m) => m.trace?.[k]));
    if (xs.length >= ok.length / 2) steps[`broker sees: ${k}`] = round(median(xs), 2);
  }
  const r2 = (s: LatencySummary): LatencySummary => ({ count: s.count, p50: round(s.p50, 2), p90: round(s.p90, 2), p99: round(s.p99, 2), max: round(s.max, 2) });
  return {
    flow,
    moves: measured.length,
    failures: measured.length - ok.length,
    a: r2(summarize(lat(since(aOf)))),
    b: r2(summarize(lat(since((m) => m.completed)))),
    connack: r2(summarize(lat(since((m) => m.onlineOnTarget)))),
    steps,
    cpu: cpuPercent(before, after),
    loadAvg: { before: loadBefore, after: machineInfo().loadAvg },
    wallS: round((after.at - before.at) / 1000, 1),
    timeline: timeline.map((m) => relative(m)),
  };
}
