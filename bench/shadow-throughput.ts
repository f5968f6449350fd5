/**
 * Shadow throughput: K devices publish `reported` updates through Mosquitto to a Switchyard server, which
 * persists them (group commit, durable) and answers `accepted` after the commit. Measures accepted updates/s and
 * publish → `accepted` latency at the receiver, on PostgreSQL and on PGlite.
 *
 *   npm run bench -- shadow-throughput [--devices 1000] [--connections 200] [--rates 2000,5000,8000]
 *     [--seconds 8] [--warmup 2] [--max-inflight 256] [--generators 2] [--pglite-rates 250,500,1000]
 *     [--targets postgres,pglite] [--runs 1] [--qos 1] [--grace 15] [--max-batch 500] [--client mini|mqttjs]
 *
 * Parts (all on 127.0.0.1): a throwaway PostgreSQL cluster (default, durable settings: fsync and
 * synchronous_commit on — read back and recorded), one Mosquitto (`max_queued_messages` raised so that nothing is
 * dropped; replies are counted at the receiver anyway), the Switchyard server in THIS process (so its CPU is this
 * process's CPU; with PGlite the database runs here too) and the load in `--generators` child processes
 * (bench/lib/shadow-load-generator.ts). Devices are inserted with one SQL statement and a dummy token hash (the
 * bench's Mosquitto allows anonymous clients, so tokens are never checked).
 *
 * Writes bench/results/shadow-throughput.json and prints a Markdown table (medians over `--runs`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadConfig } from '../packages/server/src/config.ts';
import { createLogger } from '../packages/server/src/log.ts';
import { startSwitchyard, type Switchyard } from '../packages/server/src/serve.ts';
import { createDatabase, freePort, startPgCluster, type PgCluster } from '../scripts/test-servers.mjs';
import { startMosquitto, type TestMosquitto } from '../test/helpers/mosquitto.ts';
import type { InitMessage, PhaseMessage, PhaseResult } from './lib/shadow-load-generator.ts';
import { cpuSeconds, machineBusySeconds, treeCpuSeconds } from './lib/proc-cpu.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { median, round, summarize } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    connections: { type: 'string', default: '200' },
    rates: { type: 'string', default: '2000,5000,8000' },
    'pglite-rates': { type: 'string', default: '250,500,1000' },
    seconds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    'max-inflight': { type: 'string', default: '256' },
    generators: { type: 'string', default: '2' },
    targets: { type: 'string', default: 'postgres,pglite' },
    runs: { type: 'string', default: '1' },
    qos: { type: 'string', default: '1' },
    grace: { type: 'string', default: '15' },
    'max-batch': { type: 'string', default: '' },
    client: { type: 'string', default: 'mini' },
    help: { type: 'boolean', default: false },
  },
});
if (args.help) {
  process.stdout.write(`${(await readFile(fileURLToPath(import.meta.url), 'utf8')).split('*/')[0]}*/\n`);
  process.exit(0);
}

const int = (name: string, raw: string, min = 1): number => {
  const n = Number(raw);
  if (!Number.isSafeInteger(n) || n < min) throw new Error(`--${name} must be a whole number ≥ ${min}, got ${JSON.stringify(raw)}`);
  return n;
};
const intList = (name: string, raw: string): number[] => (raw.trim() === '' ? [] : raw.split(',').map((x) => int(name, x.trim())));

const opts = {
  devices: int('devices', args.devices),
  connections: int('connections', args.connections),
  rates: intList('rates', args.rates),
  pgliteRates: intList('pglite-rates', args['pglite-rates']),
  seconds: int('seconds', args.seconds),
  warmup: int('warmup', args.warmup, 0),
  maxInflight: int('max-inflight', args['max-inflight'], 0),
  generators: int('generators', args.generators),
  targets: args.targets.split(',').map((t) => t.trim()) as Array<'postgres' | 'pglite'>,
  runs: int('runs', args.runs),
  qos: int('qos', args.qos, 0) as 0 | 1,
  grace: int('grace', args.grace, 1),
  maxBatch: args['max-batch'] ? int('max-batch', args['max-batch']) : undefined,
  client: args.client as 'mini' | 'mqttjs',
};
if (opts.client !== 'mini' && opts.client !== 'mqttjs') throw new Error('--client must be mini or mqttjs');
for (const t of opts.targets) if (t !== 'postgres' && t !== 'pglite') throw new Error(`--targets: unknown target ${t}`);
if (opts.qos !== 0 && opts.qos !== 1) throw new Error('--qos must be 0 or 1');
if (opts.connections > opts.devices) throw new Error('--connections must not exceed --devices');
if (opts.generators > opts.connections) throw new Error('--generators must not exceed --connections');

const SHADOW_NAME = 'bench';
const ADMIN_TOKEN = 'sya_bench-admin-token-0123456789abcdef';

// --- cleanup (also on Ctrl-C) ------------------------------------------------------------------------------

const cleanups: Array<() => Promise<unknown>> = [];
async function cleanupAll(): Promise<void> {
  while (cleanups.length > 0) {
    const fn = cleanups.pop()!;
    try {
      await fn();
    } catch (err) {
      process.stderr.write(`cleanup step failed (continuing): ${(err as Error).message}\n`);
    }
  }
}
let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130); // second Ctrl-C: the exit hooks of the helpers still kill the servers
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping generators, server, Mosquitto and PostgreSQL…\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}
/** Runs `fn` and registers `undo` to run at cleanup; returns a function that runs `undo` now (once). */
function track(undo: () => Promise<unknown>): () => Promise<void> {
  let done = false;
  const once = async (): Promise<void> => {
    if (done) return;
    done = true;
    const i = cleanups.indexOf(once);
    if (i >= 0) cleanups.splice(i, 1);
    await undo();
  };
  cleanups.push(once);
  return once;
}

const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

// --- the target: database + Mosquitto + server ----------------------------------------------------------------

interface Target {
  kind: 'postgres' | 'pglite';
  sy: Switchyard;
  mosquitto: TestMosquitto;
  mosquittoPid: number;
  postmasterPid: number | null;
  brokerId: number;
  settings: Record<string, string>;
  stop(): Promise<void>;
}

let cluster: PgCluster | null = null;

async function readPid(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8')).split('\n', 1)[0]!.trim());
}

async function startTarget(kind: 'postgres' | 'pglite'): Promise<Target> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sy-bench-'));
  const stops: Array<() => Promise<void>> = [];
  stops.push(track(() => rm(dataDir, { recursive: true, force: true })));
  const stop = async (): Promise<void> => {
    for (const fn of stops.reverse()) await fn();
  };
  try {
    const mosquitto = await startMosquitto({
      // Default is 1,000 (the helper raises it to 10,000): a subscriber that falls behind silently loses
      // messages. Raised so that any loss this bench reports is Switchyard's, not a queue limit.
      extraConfig: 'max_queued_messages 1000000',
    });
    stops.push(track(() => mosquitto.stop()));
    const env: Record<string, string> = {
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      SWITCHYARD_DATA_DIR: dataDir,
      SWITCHYARD_ADMIN_TOKEN: ADMIN_TOKEN,
      SWITCHYARD_EMBEDDED_BROKERS: 'none',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
      ...(opts.maxBatch ? { SWITCHYARD_SHADOW_BATCH_MAX: String(opts.maxBatch) } : {}),
    };
    let postmasterPid: number | null = null;
    if (kind === 'postgres') {
      if (cluster === null) {
        const started = await startPgCluster();
        cluster = started;
        track(() => started.stop());
      }
      const c = cluster;
      postmasterPid = await readPid(join(c.dir, 'data', 'postmaster.pid'));
      env.DATABASE_URL = (await createDatabase(c.url)).url;
    }
    const config = loadConfig(env);
    // Server logs (warnings and errors only by default) go to stderr, away from the results on stdout.
    const sy = await startSwitchyard({ config, log: createLogger({ level: config.logLevel, destination: { write: (s: string) => process.stderr.write(s) } }) });
    stops.push(track(() => sy.stop()));

    const res = await fetch(`${sy.url}/api/v1/brokers`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'bench-mosquitto', protocol: 'mqtt', host: mosquitto.host, port: mosquitto.port }),
    });
    const broker = (await res.json()) as { id: number };
    if (res.status !== 201 && res.status !== 200) throw new Error(`registering the broker failed: ${res.status} ${JSON.stringify(broker)}`);
    await sy.pool.refresh();
    await sy.pool.waitConnected(broker.id, 10_000);

    const settings: Record<string, string> = {};
    for (const name of ['server_version', 'synchronous_commit', 'fsync', 'wal_sync_method', 'full_page_writes', 'commit_delay']) {
      const { rows } = await sy.db.query<Record<string, string>>(`SHOW ${name}`);
      settings[name] = String(Object.values(rows[0] ?? {})[0]);
    }
    return {
      kind,
      sy,
      mosquitto,
      mosquittoPid: await readPid(join(mosquitto.configDir, 'server.pid')),
      postmasterPid,
      brokerId: broker.id,
      settings,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Bulk registration: one INSERT, dummy token hash (the bench's Mosquitto does not check device tokens). */
async function insertDevices(t: Target, uuids: string[]): Promise<void> {
  await t.sy.db.query(
    `INSERT INTO devices (uuid, name, mqtt_broker_id, token_hash)
     SELECT u, u, $2::int, 'bench-no-token' FROM jsonb_array_elements_text($1::jsonb) AS t(u)`,
    [JSON.stringify(uuids), t.brokerId],
  );
}

// --- generators -----------------------------------------------------------------------------------------------

interface Generator {
  child: ChildProcess;
  request<T>(msg: unknown, expect: string): Promise<T>;
  stop(): Promise<void>;
}

const GENERATOR = fileURLToPath(new URL('./lib/shadow-load-generator.ts', import.meta.url));

function startGenerator(index: number): Generator {
  const child = fork(GENERATOR, [], {
    execArgv: ['--import', 'tsx'],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let waiter: { expect: string; resolve(v: any): void; reject(e: Error): void } | null = null;
  let exited = false;
  child.on('message', (raw) => {
    const msg = raw as { type: string; message?: string; fatal?: boolean };
    if (msg.type === 'error') {
      log(`generator ${index}: ${msg.message}`);
      if (msg.fatal && waiter) waiter.reject(new Error(`generator ${index}: ${msg.message}`));
      return;
    }
    if (waiter && msg.type === waiter.expect) {
      const w = waiter;
      waiter = null;
      w.resolve(msg);
    }
  });
  child.on('exit', (code, signal) => {
    exited = true;
    waiter?.reject(new Error(`generator ${index} exited (${signal ?? code})`));
  });
  const stop = track(async () => {
    if (exited) return;
    child.send({ type: 'stop' });
    const gone = new Promise((r) => child.once('exit', r));
    if ((await Promise.race([gone, sleep(5000, 'timeout')])) === 'timeout') child.kill('SIGKILL');
  });
  return {
    child,
    stop,
    request<T>(msg: unknown, expect: string): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        waiter = { expect, resolve, reject };
        child.send(msg as object);
      });
    },
  };
}

// --- phases ---------------------------------------------------------------------------------------------------

interface PhaseSpec {
  label: string;
  mode: 'open' | 'closed';
  /** Open: total updates/s offered; closed: total updates in flight. */
  level: number;
}

export interface PhaseRow {
  target: 'postgres' | 'pglite';
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
}

function split(total: number, parts: number): number[] {
  return Array.from({ length: parts }, (_, i) => Math.floor(total / parts) + (i < total % parts ? 1 : 0));
}

interface Snapshot {
  at: number;
  stats: { batches: number; requests: number };
  server: number;
  generators: number;
  mosquitto: number;
  postgres: number;
  machine: number;
  elu: ReturnType<typeof performance.eventLoopUtilization>;
}

function snapshot(t: Target, gens: Generator[]): Snapshot {
  return {
    at: performance.now(),
    stats: t.sy.shadows.stats(),
    server: cpuSeconds(process.pid),
    generators: gens.reduce((n, g) => n + cpuSeconds(g.child.pid!), 0),
    mosquitto: cpuSeconds(t.mosquittoPid),
    postgres: t.postmasterPid === null ? 0 : treeCpuSeconds(t.postmasterPid),
    machine: machineBusySeconds(),
    elu: performance.eventLoopUtilization(),
  };
}

async function runPhase(t: Target, gens: Generator[], spec: PhaseSpec): Promise<PhaseRow> {
  const shares = split(spec.level, gens.length);
  const pending = gens.map((g, i) => {
    const msg: PhaseMessage = {
      type: 'phase',
      mode: spec.mode,
      rate: spec.mode === 'open' ? shares[i]! : 0,
      inFlight: spec.mode === 'closed' ? Math.max(1, shares[i]!) : 0,
      warmupMs: opts.warmup * 1000,
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

  const windowS = (b.at - a.at) / 1000;
  const lat = summarize(concat(results.map((r) => r.latencies)));
  const sum = (f: (r: PhaseResult) => number): number => results.reduce((n, r) => n + f(r), 0);
  const pct = (x: number): number => round((x / windowS) * 100, 0);
  const ours = b.server - a.server + (b.generators - a.generators) + (b.mosquitto - a.mosquitto) + (b.postgres - a.postgres);
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
    cpu: {
      server: pct(b.server - a.server),
      generators: pct(b.generators - a.generators),
      mosquitto: pct(b.mosquitto - a.mosquitto),
      postgres: pct(b.postgres - a.postgres),
      otherOnMachine: pct(Math.max(0, b.machine - a.machine - ours)),
    },
    serverEventLoop: round(performance.eventLoopUtilization(b.elu, a.elu).utilization, 2),
    maxScheduleLagMs: round(Math.max(...results.map((r) => r.maxScheduleLagMs)), 0),
    rejectedCodes: codes,
  };
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

async function runTarget(kind: 'postgres' | 'pglite', run: number): Promise<{ rows: PhaseRow[]; settings: Record<string, string> }> {
  const started = performance.now();
  const t = await startTarget(kind);
  try {
    const uuids = Array.from({ length: opts.devices }, (_, i) => `bench-r${run}-${String(i).padStart(6, '0')}`);
    await insertDevices(t, uuids);
    // Connection c holds devices c, c + C, c + 2C, …; generator g holds a contiguous range of connections.
    const conns: string[][] = Array.from({ length: opts.connections }, () => []);
    uuids.forEach((u, i) => conns[i % opts.connections]!.push(u));
    const perGen = split(opts.connections, opts.generators);
    const gens: Generator[] = [];
    let from = 0;
    for (const [g, n] of perGen.entries()) {
      const gen = startGenerator(g);
      gens.push(gen);
      const init: InitMessage = {
        type: 'init',
        url: t.mosquitto.url,
        connections: conns.slice(from, from + n),
        shadowName: SHADOW_NAME,
        qos: opts.qos,
        prefix: `g${g}r${run}`,
        client: opts.client,
      };
      from += n;
      await gen.request(init, 'ready');
    }
    log(`[run ${run}] ${kind}: ready in ${Math.round(performance.now() - started)} ms (${opts.devices} devices, ${opts.connections} connections, ${opts.generators} generators)`);

    const rates = kind === 'postgres' ? opts.rates : opts.pgliteRates;
    const specs: PhaseSpec[] = [
      ...rates.map((r) => ({ label: `open ${r}/s`, mode: 'open' as const, level: r })),
      ...(opts.maxInflight > 0 ? [{ label: `max (${opts.maxInflight} in flight)`, mode: 'closed' as const, level: opts.maxInflight }] : []),
    ];
    const rows: PhaseRow[] = [];
    for (const spec of specs) {
      // An overloaded phase leaves a backlog in the batcher: let it finish so the next phase starts clean.
      const drained = await Promise.race([t.sy.shadows.drain().then(() => true), sleep(120_000, false)]);
      if (!drained) log(`[run ${run}] ${kind}: the server still had queued requests after 120 s; starting ${spec.label} anyway`);
      const row = await runPhase(t, gens, spec);
      rows.push(row);
      log(
        `[run ${run}] ${kind} ${spec.label}: ${row.acceptedPerS}/s accepted, p50 ${row.p50} ms, p99 ${row.p99} ms, ` +
          `lost ${row.lost}, batch ${row.avgBatch}, cpu ${JSON.stringify(row.cpu)}, server loop ${row.serverEventLoop}`,
      );
    }
    for (const g of gens) await g.stop();
    return { rows, settings: t.settings };
  } finally {
    await t.stop();
  }
}

// --- main -----------------------------------------------------------------------------------------------------

const machineBefore = machineInfo();
const startedAt = new Date().toISOString();
const runs: Array<{ run: number; rows: PhaseRow[] }> = [];
const settings: Record<string, Record<string, string>> = {};
try {
  for (let run = 1; run <= opts.runs; run++) {
    const rows: PhaseRow[] = [];
    for (const kind of opts.targets) {
      const r = await runTarget(kind, run);
      rows.push(...r.rows);
      settings[kind] = r.settings;
    }
    runs.push({ run, rows });
  }
} finally {
  await cleanupAll();
}

/** Median of every numeric field over the runs, per (target, phase). */
function medians(): PhaseRow[] {
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
      // Total over the runs: a loss in any run must stay visible in the summary.
      ...{ lostTotal: same.reduce((n, r) => n + r.lost, 0), rejectedTotal: same.reduce((n, r) => n + r.rejected, 0) },
    };
  });
}

const summary = medians();
const table = markdownTable(
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
const machineAfter = machineInfo();
const file = await writeResult('shadow-throughput', {
  bench: 'shadow-throughput',
  startedAt,
  finishedAt: new Date().toISOString(),
  machine: { ...machineBefore, loadAvgBefore: machineBefore.loadAvg, loadAvgAfter: machineAfter.loadAvg },
  config: { ...opts, shadowName: SHADOW_NAME, mosquitto: { max_queued_messages: 1_000_000 } },
  settings,
  notes: [
    'Server in the bench process; load generators in child processes; Mosquitto and PostgreSQL as processes. CPU is per part in % of one core over the measured window (200 % = both cores); "other" is the rest of the machine (neighbours, the kernel).',
    `Generators use ${opts.client === 'mini' ? 'a minimal MQTT 3.1.1 client (bench/lib/mini-mqtt.ts) so that they leave the CPU to the server' : 'mqtt.js'}; devices publish at QoS ${opts.qos}.`,
    'Devices inserted by SQL with a dummy token hash; Mosquitto allows anonymous clients.',
    'accepted/s counts replies (accepted or rejected) arriving during the measured window; latency is publish → accepted at the receiver for updates sent in the window; lost = updates of the phase (warm-up included) with no reply after the grace period.',
    `medians over ${opts.runs} run(s); lost/rejected in the table are medians, lostTotal/rejectedTotal in "medians" are sums over the runs.`,
  ],
  medians: summary,
  runs,
});
process.stdout.write(`\n## Shadow throughput (medians of ${opts.runs} run(s); ${opts.devices} devices, ${opts.connections} connections, QoS ${opts.qos})\n\n${table}\n\n`);
process.stdout.write(`settings: ${JSON.stringify(settings)}\nload average before ${machineBefore.loadAvg.join(' ')}, after ${machineAfter.loadAvg.join(' ')}\nwritten to ${file}\n`);
process.exit(0);
