/**
 * Config poll: requests per second of the `GET /api/v1/devices/:uuid/config` 304 path — what a fleet of polling
 * devices costs the server when nothing changed. Target ≥ 10,000/s on the bench machine (2 cores).
 *
 *   npm run bench -- config-poll [--devices 1000] [--cold-devices 30000] [--connections 64] [--generators 2]
 *     [--seconds 10] [--warmup 2] [--targets postgres,pglite] [--runs 1]
 *
 * Per target: the server as a child process (`switchyard serve`) on a throwaway PostgreSQL cluster (durable
 * settings) or on PGlite (embedded mode, a temp data dir), one Mosquitto registered as the broker. `--devices`
 * devices are registered through the API (each with its own token) on that broker, and each gets the
 * `device-state` shadow an agent leaves behind (`reported.mqtt` = connected there) — no assignment, so the config
 * comes from the device row and the broker, the longest path. Then `--generators` child processes
 * (bench/lib/config-poll-generator.ts) keep `--connections` keep-alive connections in all busy, one request in
 * flight each (no pipelining): `GET …/config` with the device's token and `If-None-Match` = its current ETag,
 * devices round robin. `--warmup` s unmeasured, then `--seconds` s measured.
 *
 * Two rows per target: `hot` — the `--devices` devices, each asked several times a second, so the server's
 * in-memory caches (device token → device, 60 s; config, 10 s; both dropped by notifications) answer them; `cold`
 * (PostgreSQL only) —
 * `--cold-devices` more devices, inserted with one SQL statement each for devices and shadows (real token hashes;
 * then ANALYZE and CHECKPOINT, so that neither stale statistics nor autovacuum distort the window), so that each
 * device comes round only every ≈ 14 s — longer than warm-up and window together, so every request is the device's
 * first, misses both caches and reads the database: what a large fleet polling each device once a minute costs.
 *
 * Columns: req/s (answers received in the window), p50/p99/max ms (request written → answer read, in the
 * generator), non-304 (any other status: a failure here), CPU per part (% of one core: server, PostgreSQL, the
 * generators, the rest of the machine). Writes bench/results/config-poll.json; medians over `--runs`.
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { cleanupAll, interrupted, runStops, stopOnSignals } from './lib/cleanup.ts';
import { benchArgs, int, log } from './lib/cli.ts';
import { insertColdDevices, registerPollingDevices } from './lib/config-poll-devices.ts';
import { runLoad, type LoadContext, type Result } from './lib/config-poll-load.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { startStack } from './lib/stack.ts';
import { median, round } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

const args = await benchArgs(import.meta.url, {
  devices: { type: 'string', default: '1000' },
  'cold-devices': { type: 'string', default: '30000' },
  connections: { type: 'string', default: '64' },
  generators: { type: 'string', default: '2' },
  seconds: { type: 'string', default: '10' },
  warmup: { type: 'string', default: '2' },
  targets: { type: 'string', default: 'postgres,pglite' },
  runs: { type: 'string', default: '1' },
});
const opts = {
  devices: int('devices', args.devices),
  coldDevices: int('cold-devices', args['cold-devices'], 0),
  connections: int('connections', args.connections),
  generators: int('generators', args.generators),
  seconds: int('seconds', args.seconds),
  warmup: int('warmup', args.warmup, 0),
  runs: int('runs', args.runs),
  targets: args.targets.split(',').map((t) => t.trim()) as Array<'postgres' | 'pglite'>,
};
for (const t of opts.targets) if (t !== 'postgres' && t !== 'pglite') throw new Error(`--targets: unknown target ${t}`);
if (opts.connections < opts.generators) throw new Error('--connections must be at least --generators');

const TARGET_RPS = 10_000;

stopOnSignals('generators, server, Mosquitto and PostgreSQL');

// --- one target -----------------------------------------------------------------------------------------------

async function measure(kind: 'postgres' | 'pglite', run: number): Promise<Result[]> {
  const stops = runStops();
  const setupStart = performance.now();
  try {
    const stack = await startStack(stops, { database: kind, mosquittos: 1, dataDirPrefix: 'sy-bench-cfg-', env: { SWITCHYARD_DEMO_DEVICES: '0' }, readyTimeoutMs: 30_000 });
    const { api, server, postmasterPid } = stack;
    const brokerId = stack.brokerIds[0]!;

    // Devices: registered one by one through the API (real tokens), each with the shadow an agent leaves behind.
    const uuids = Array.from({ length: opts.devices }, (_, i) => `bench-cfg-${i}`);
    const devices = await registerPollingDevices(api, server.url, stack.mosquittos[0]!, brokerId, uuids);
    const setupS = (performance.now() - setupStart) / 1000;
    log(`[run ${run}] ${kind}: ${devices.length} devices ready in ${setupS.toFixed(1)} s`);

    const ctx: LoadContext = { kind, run, server, postmasterPid, stops, setupS, opts };
    const showServer = (r: Result): void => {
      if (r.non304 > 0 || r.errors.length > 0) log(`server output (last 3000 characters):\n${server.output().slice(-3000)}`);
    };
    const out = [await runLoad(ctx, 'hot', devices)];
    showServer(out[0]!);
    if (kind === 'postgres' && opts.coldDevices > 0) {
      const cold = await insertColdDevices(stack.databaseUrl!, brokerId, opts.coldDevices);
      log(`[run ${run}] ${kind}: ${cold.length} more devices inserted by SQL (then ANALYZE, CHECKPOINT)`);
      await sleep(2000);
      out.push(await runLoad(ctx, 'cold', cold));
      showServer(out[1]!);
    }
    return out;
  } finally {
    await stops.stopAll();
  }
}

// --- main -----------------------------------------------------------------------------------------------------

const machineBefore = machineInfo();
const startedAt = new Date().toISOString();
const runs: Array<{ run: number; results: Result[] }> = [];
try {
  for (let run = 1; run <= opts.runs; run++) {
    const results: Result[] = [];
    for (const t of opts.targets) {
      if (interrupted()) throw new Error('interrupted');
      results.push(...(await measure(t, run)));
    }
    runs.push({ run, results });
  }
} finally {
  await cleanupAll();
}
const machineAfter = machineInfo();

const keys = runs[0]!.results.map((r) => ({ target: r.target, phase: r.phase }));
const summary = keys.map(({ target, phase }) => {
  const same = runs.map((r) => r.results.find((x) => x.target === target && x.phase === phase)!);
  const m = (f: (x: Result) => number, d = 1): number => round(median(same.map(f)), d);
  return {
    target,
    phase,
    devices: same[0]!.devices,
    rps: m((x) => x.rps, 0),
    rpsRuns: same.map((x) => x.rps),
    p50: m((x) => x.p50, 2),
    p90: m((x) => x.p90, 2),
    p99: m((x) => x.p99, 2),
    max: m((x) => x.max, 2),
    non304Total: same.reduce((n, x) => n + x.non304, 0),
    cpu: {
      server: m((x) => x.cpu.server),
      postgres: m((x) => x.cpu.postgres),
      generators: m((x) => x.cpu.generators),
      otherOnMachine: m((x) => x.cpu.otherOnMachine),
    },
    loadAvg: same.map((x) => `${x.loadAvg.before[0]} → ${x.loadAvg.after[0]}`),
  };
});

const table = markdownTable(
  ['target', 'caches', 'devices', 'connections', 'req/s', 'runs req/s', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'non-304', 'cpu srv/pg/gen/other %', 'load (1 min) per run'],
  summary.map((s) => [
    s.target,
    s.phase,
    s.devices,
    opts.connections,
    s.rps,
    s.rpsRuns.join(', '),
    s.p50,
    s.p90,
    s.p99,
    s.max,
    s.non304Total,
    `${s.cpu.server}/${s.cpu.postgres}/${s.cpu.generators}/${s.cpu.otherOnMachine}`,
    s.loadAvg.join('; '),
  ]),
);

const file = await writeResult('config-poll', {
  bench: 'config-poll',
  startedAt,
  finishedAt: new Date().toISOString(),
  machine: { ...machineBefore, loadAvgBefore: machineBefore.loadAvg, loadAvgAfter: machineAfter.loadAvg },
  config: { ...opts, server: 'child process (switchyard serve), LOG_LEVEL warn', generator: 'raw keep-alive HTTP/1.1 on net.Socket, one request in flight per connection' },
  target: { rps: TARGET_RPS },
  notes: [
    'Every request: GET /api/v1/devices/:uuid/config with the device\'s own token and If-None-Match = its current ETag → 304. Devices round robin.',
    'Devices registered through the API with a broker and a device-state shadow holding reported.mqtt (no assignment: the config is read from the device row and the broker).',
    'CPU is % of one core over the measured window (200 % = both cores); PGlite runs inside the server process.',
  ],
  medians: summary,
  runs,
});

process.stdout.write(`\n## Config poll, 304 path (medians of ${opts.runs} run(s); target ≥ ${TARGET_RPS.toLocaleString('en-US')} req/s)\n\n${table}\n\n`);
process.stdout.write(`load average before ${machineBefore.loadAvg.join(' ')}, after ${machineAfter.loadAvg.join(' ')}\n`);
process.stdout.write(`machine: ${machineBefore.cpus} × ${machineBefore.cpuModel}, Node ${machineBefore.node}\nwritten to ${file}\n`);
process.exit(0);
