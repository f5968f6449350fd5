/**
 * Migration latency: one device moved back and forth between two Mosquitto brokers (A ↔ B) by
 * `PUT /api/v1/devices/:uuid/broker`, each move started after the previous one completed (+ `--settle` ms).
 * Measured from the moment the `PUT` is sent to
 *   (a) the device being on the new broker — Switchyard agent: its `migration:state` event `→ switching`
 *       (new connection open, the round trip through it verified, publishing switched to it); baseline: the
 *       CONNACK of its new connection — and
 *   (b) the server seeing it: the `migration` event with `status: completed` on the server's SSE stream
 *       (`GET /api/v1/events?types=migration`), i.e. the device's `connected` report arrived through the target
 *       broker, was committed, and went out through NOTIFY.
 * Beside it, in the same run, the original design's agent flow as the baseline: on an assignment the device
 * disconnects, waits 2 s and connects to the new broker (no verification), then reports `connected` there.
 *
 *   npm run bench -- migration-latency [--moves 200] [--baseline-moves 20] [--warmup 5] [--settle 50]
 *     [--runs 3] [--timeout 20]
 *
 * Parts (all on 127.0.0.1): a throwaway PostgreSQL cluster (durable settings), two Mosquitto
 * (test/helpers/mosquitto.ts: `set_tcp_nodelay true`), the Switchyard server as a CHILD PROCESS
 * (`switchyard serve`, as in test/e2e — its own event loop and CPU, like a real deployment), the Switchyard agent
 * (`createAgent`) in another child process (bench/lib/migration-agent.ts) that reports its events over IPC with
 * its high-resolution wall clock, converted to this process's time base by a ping/pong offset estimate (min RTT).
 * The server runs with `SWITCHYARD_DEVICE_RATE_LIMIT=100`: the bench's device, moved ~7 times a second, would
 * otherwise meet the default 20/s limit and measure its retries. The baseline device is a small mqtt.js client in this process. A watcher subscribed to
 * `iot/device/+/status` on both brokers records when each device's `online` presence arrives on the target
 * (the agent sends it right after the new connection's CONNACK): recorded in the JSON as `connack`.
 *
 * Writes bench/results/migration-latency.json and prints Markdown tables (medians over `--runs`).
 */
import { registerDevice, reportedOn, until, watchMigrations, type MigrationStatuses } from './lib/api.ts';
import { startAgentChild, type AgentChild } from './lib/agent-child.ts';
import { cleanupAll, runStops, stopOnSignals } from './lib/cleanup.ts';
import { benchArgs, int, log } from './lib/cli.ts';
import { BASELINE_SLEEP_MS, baselineDevice, type BrokerInfo } from './lib/migration-baseline.ts';
import { runFlow, watchBrokers, type FlowContext, type FlowResult, type Move } from './lib/migration-flow.ts';
import { flowTables, summarizeFlows, type RunResult } from './lib/migration-report.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { benchTempDir, startStack } from './lib/stack.ts';

/** The server's per-device shadow request limit in this bench (see where the stack starts). */
const DEVICE_RATE_LIMIT = 100;
import { round } from './lib/stats.ts';

const args = await benchArgs(import.meta.url, {
  moves: { type: 'string', default: '200' },
  'baseline-moves': { type: 'string', default: '20' },
  warmup: { type: 'string', default: '5' },
  settle: { type: 'string', default: '50' },
  runs: { type: 'string', default: '3' },
  timeout: { type: 'string', default: '20' },
});
const opts = {
  moves: int('moves', args.moves),
  baselineMoves: int('baseline-moves', args['baseline-moves'], 0),
  warmup: int('warmup', args.warmup, 0),
  baselineWarmup: 1,
  settleMs: int('settle', args.settle, 0),
  runs: int('runs', args.runs),
  timeoutS: int('timeout', args.timeout),
};

stopOnSignals('the agent, server, Mosquitto and PostgreSQL');

// --- one run ------------------------------------------------------------------------------------------------------

async function runOnce(run: number): Promise<{ flows: FlowResult[]; clockOffsetRttMs: number }> {
  const stops = runStops();
  try {
    // One device moved ~7 times a second makes ~21 shadow requests a second, past the default per-device limit
    // (20/s, AWS's): its `connected` reports would meet 429 and be sent again after a backoff, and (b) would measure
    // the limiter. Raised here, for this synthetic device only.
    const stack = await startStack(stops, { database: 'postgres', mosquittos: 2, dataDirPrefix: 'sy-bench-mig-', env: { SWITCHYARD_DEVICE_RATE_LIMIT: String(DEVICE_RATE_LIMIT) } });
    const { api, server } = stack;
    const brokers: BrokerInfo[] = stack.mosquittos.map((m, i) => ({ id: stack.brokerIds[i]!, host: m.host, port: m.port, url: m.url }));

    // Live observers: the SSE stream, and a presence watcher on each broker.
    const statuses: MigrationStatuses = new Map();
    stops.track(await watchMigrations(server.url, statuses));
    const ctx: FlowContext = { run, stack, brokers, statuses, live: { current: null, watchedUuid: '' }, settleMs: opts.settleMs, timeoutS: opts.timeoutS };
    await watchBrokers(ctx, stops);

    const newDevice = async (prefix: string): Promise<{ uuid: string; token: string }> => {
      const uuid = `${prefix}-r${run}-${process.pid}`;
      return { uuid, token: await registerDevice(api, uuid, brokers[0]!.id) };
    };
    const reportedOnA = (uuid: string, what: string) => until(() => reportedOn(api, uuid, brokers[0]!.id), 30_000, `the ${what} to report connected on broker A`);

    // --- the Switchyard agent -----------------------------------------------------------------------------------
    const dev = await newDevice('bench-mig-agent');
    const stateDir = await benchTempDir(stops, 'sy-bench-agent-');
    let agentChild: AgentChild | null = null;
    const agent = await startAgentChild({ type: 'init', apiUrl: server.url, uuid: dev.uuid, token: dev.token, stateDir }, (msg) => {
      const m = ctx.live.current;
      if (!m || !agentChild || msg.type !== 'migration') return;
      const t = msg.t + agentChild.offset;
      if (msg.to === 'connecting' && msg.targetBrokerId === m.toBrokerId) m.connecting ??= t;
      else if (msg.to === 'verifying' && msg.targetBrokerId === m.toBrokerId) m.verifying ??= t;
      else if (msg.to === 'switching' && msg.targetBrokerId === m.toBrokerId) m.switching ??= t;
      else if (msg.to === 'idle' && msg.from === 'switching' && msg.brokerId === m.toBrokerId) m.idle ??= t;
      else if (msg.to === 'backoff') log(`[run ${run}] agent: attempt failed: ${msg.reason}`);
    });
    agentChild = agent;
    stops.add(agent.stop);
    await reportedOnA(dev.uuid, 'agent');
    await agent.calibrate();
    log(`[run ${run}] agent ready; clock offset ${agent.offset.toFixed(3)} ms (ping RTT ${agent.offsetRttMs.toFixed(3)} ms)`);
    const agentDone = (m: Move): boolean => m.switching !== undefined && m.idle !== undefined;
    const agentFlow = await runFlow(ctx, 'switchyard agent', dev.uuid, opts.warmup, opts.moves, agentDone, () => agent.child.pid!);
    await agent.calibrate(); // drift check
    log(`[run ${run}] agent: (a) p50 ${agentFlow.a.p50} p99 ${agentFlow.a.p99} ms; (b) p50 ${agentFlow.b.p50} p99 ${agentFlow.b.p99} ms; failures ${agentFlow.failures}; offset after ${agent.offset.toFixed(3)} ms`);
    const flows = [agentFlow];

    // --- the baseline ---------------------------------------------------------------------------------------------
    if (opts.baselineMoves > 0) {
      const bdev = await newDevice('bench-mig-baseline');
      const device = baselineDevice({
        uuid: bdev.uuid,
        token: bdev.token,
        brokers,
        onConnack: (brokerId, at) => {
          const m = ctx.live.current;
          if (m && m.toBrokerId === brokerId) m.baselineConnack ??= at;
        },
      });
      stops.track(() => device.stop());
      await device.start(brokers[0]!);
      await reportedOnA(bdev.uuid, 'baseline device');
      const baseline = await runFlow(ctx, 'baseline (disconnect, 2 s, connect)', bdev.uuid, opts.baselineWarmup, opts.baselineMoves, (m) => m.baselineConnack !== undefined, () => process.pid);
      log(`[run ${run}] baseline: (a) p50 ${baseline.a.p50} p99 ${baseline.a.p99} ms; (b) p50 ${baseline.b.p50} p99 ${baseline.b.p99} ms; failures ${baseline.failures}`);
      flows.push(baseline);
    }
    return { flows, clockOffsetRttMs: round(agent.offsetRttMs, 3) };
  } finally {
    await stops.stopAll();
  }
}

// --- main -----------------------------------------------------------------------------------------------------

const machineBefore = machineInfo();
const startedAt = new Date().toISOString();
const runs: RunResult[] = [];
try {
  for (let run = 1; run <= opts.runs; run++) {
    const r = await runOnce(run);
    runs.push({ run, ...r });
  }
} finally {
  await cleanupAll();
}
const machineAfter = machineInfo();

const summary = summarizeFlows(runs);
const { table, steps, loads } = flowTables(summary, runs);

const file = await writeResult('migration-latency', {
  bench: 'migration-latency',
  startedAt,
  finishedAt: new Date().toISOString(),
  machine: { ...machineBefore, loadAvgBefore: machineBefore.loadAvg, loadAvgAfter: machineAfter.loadAvg },
  config: { ...opts, baselineSleepMs: BASELINE_SLEEP_MS, mosquitto: { set_tcp_nodelay: true, persistence: false }, server: 'child process (switchyard serve), LOG_LEVEL warn', deviceRateLimit: DEVICE_RATE_LIMIT },
  target: { p50Ms: 25, p99Ms: 100 },
  notes: [
    'Times are ms from the moment the PUT is sent. (a) agent: its migration:state event → switching (new connection verified by a shadow get round trip through it, publishing switched), timestamped in the agent process and converted to the bench clock (ping/pong offset, min RTT); (a) baseline: CONNACK of the new connection. (b): the `migration` SSE event with status completed arriving at the bench.',
    '`connack`: the device\'s `online` presence arriving at a watcher subscribed on the target broker (the agent publishes it right after the new CONNACK, before verifying).',
    'Server and agent are child processes; the baseline device (mqtt.js) runs in the bench process. CPU is % of one core over the measured moves (200 % = both cores); "other" is the rest of the machine.',
    `Each move starts after the previous one completed (agent: also back to idle, old connection closed) + ${opts.settleMs} ms; ${opts.warmup} (agent) / ${opts.baselineWarmup} (baseline) warm-up moves are not counted. Medians over ${opts.runs} run(s); failures are summed.`,
  ],
  medians: summary,
  runs,
});

process.stdout.write(`\n## Migration latency (medians of ${opts.runs} run(s); ms from the PUT; target p50 ≤ 25, p99 ≤ 100)\n\n${table}\n\n`);
process.stdout.write(`### Where the time goes\n\n${steps}\n\n`);
process.stdout.write(`load average before ${machineBefore.loadAvg.join(' ')}, after ${machineAfter.loadAvg.join(' ')} (${opts.runs} run(s): ${loads.join(' | ')})\n`);
process.stdout.write(`machine: ${machineBefore.cpus} × ${machineBefore.cpuModel}, Node ${machineBefore.node}\nwritten to ${file}\n`);
process.exit(0);
