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
 * short-lived caches (device token → device, 2 s; config, 1 s) answer most requests; `cold` (PostgreSQL only) —
 * `--cold-devices` more devices, inserted with one SQL statement each for devices and shadows (real token hashes;
 * then ANALYZE and CHECKPOINT, so that neither stale statistics nor autovacuum distort the window), so that each device comes round only every few seconds and every request misses both caches and reads the
 * database: what a large fleet polling each device once a minute costs.
 *
 * Columns: req/s (answers received in the window), p50/p99/max ms (request written → answer read, in the
 * generator), non-304 (any other status: a failure here), CPU per part (% of one core: server, PostgreSQL, the
 * generators, the rest of the machine). Writes bench/results/config-poll.json; medians over `--runs`.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { createDatabase, freePort, startPgCluster, type PgCluster } from '../scripts/test-servers.mjs';
import { startMosquitto } from '../test/helpers/mosquitto.ts';
import { startServerProcess } from '../test/helpers/processes.ts';
import { BIN_MS, type GeneratorDone, type GeneratorStart } from './lib/config-poll-generator.ts';
import { cpuSeconds, machineBusySeconds, treeCpuSeconds } from './lib/proc-cpu.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { median, round } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

const { values: args } = parseArgs({
  options: {
    devices: { type: 'string', default: '1000' },
    'cold-devices': { type: 'string', default: '30000' },
    connections: { type: 'string', default: '64' },
    generators: { type: 'string', default: '2' },
    seconds: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    targets: { type: 'string', default: 'postgres,pglite' },
    runs: { type: 'string', default: '1' },
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
/** Rows of the table: `hot` = `--devices` (each polled many times a second: the server's caches answer most), `cold` = `--cold-devices` on PostgreSQL (each device polled once every few seconds: every request misses both caches, as in a fleet polling every minute). */
type Phase = 'hot' | 'cold';
for (const t of opts.targets) if (t !== 'postgres' && t !== 'pglite') throw new Error(`--targets: unknown target ${t}`);
if (opts.connections < opts.generators) throw new Error('--connections must be at least --generators');

const ADMIN_TOKEN = 'sya_bench-admin-token-0123456789abcdef';
const TARGET_RPS = 10_000;
const log = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

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
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping generators, server, Mosquitto and PostgreSQL…\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}
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

async function readPid(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8')).split('\n', 1)[0]!.trim());
}

type Api = <T = any>(method: string, path: string, body?: unknown, token?: string) => Promise<{ status: number; body: T; etag: string | null }>;
function apiOf(url: string): Api {
  return async (method, path, body, token = ADMIN_TOKEN) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined, etag: res.headers.get('etag') };
  };
}

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!(await pred())) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(20);
  }
}

/** Runs `fn` over `items` with at most `n` at once. */
async function pool<T, R>(items: T[], n: number, fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

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

// --- one measurement ------------------------------------------------------------------------------------------

interface Result {
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

let cluster: PgCluster | null = null;
const GENERATOR = fileURLToPath(new URL('./lib/config-poll-generator.ts', import.meta.url));

/**
 * `n` devices with real tokens on `brokerId`, each with the `device-state` shadow an agent leaves behind, inserted
 * with one statement per table (registering them through the API would take minutes); answers them with the ETag
 * the server will compute (`"<shadow version>.<brokerId>"`, checked on one device by the caller's first requests:
 * a wrong one shows as non-304 answers).
 */
async function insertColdDevices(databaseUrl: string, brokerId: number, n: number): Promise<Array<{ uuid: string; token: string; etag: string }>> {
  const devs = Array.from({ length: n }, (_, i) => {
    const token = `syd_${randomBytes(32).toString('base64url')}`;
    return { uuid: `bench-cold-${i}`, token, hash: createHash('sha256').update(token, 'utf8').digest('hex') };
  });
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(
      `INSERT INTO devices (uuid, name, mqtt_broker_id, token_hash)
       SELECT u, u, $2::int, h FROM jsonb_to_recordset($1::jsonb) AS t(u text, h text)`,
      [JSON.stringify(devs.map((d) => ({ u: d.uuid, h: d.hash }))), brokerId],
    );
    await client.query(
      `INSERT INTO device_shadows (device_uuid, shadow_name, reported, version)
       SELECT u, 'device-state', jsonb_build_object('mqtt', jsonb_build_object('status', 'connected', 'brokerId', $2::int)), 1
         FROM jsonb_array_elements_text($1::jsonb) AS t(u)`,
      [JSON.stringify(devs.map((d) => d.uuid)), brokerId],
    );
    // As a table that grew over time would be: statistics current (or the planner may think the table still
    // holds the 1,000 hot devices), the inserted rows flushed — and no autovacuum ANALYZE or checkpoint running
    // inside the measured window.
    await client.query('ANALYZE devices');
    await client.query('ANALYZE device_shadows');
    await client.query('CHECKPOINT');
  } finally {
    await client.end();
  }
  return devs.map((d) => ({ uuid: d.uuid, token: d.token, etag: `"1.${brokerId}"` }));
}

async function measure(kind: 'postgres' | 'pglite', run: number): Promise<Result[]> {
  const stops: Array<() => Promise<void>> = [];
  const stopAll = async (): Promise<void> => {
    for (const fn of stops.reverse()) await fn().catch((err: Error) => log(`stop: ${err.message}`));
  };
  const setupStart = performance.now();
  try {
    let postmasterPid: number | null = null;
    const env: Record<string, string> = {
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      SWITCHYARD_EMBEDDED_BROKERS: 'none',
      SWITCHYARD_DEMO_DEVICES: '0',
      SWITCHYARD_ADMIN_TOKEN: ADMIN_TOKEN,
      SWITCHYARD_SECRET: 'bench-secret-0123456789abcdef',
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    };
    const dataDir = await mkdtemp(join(tmpdir(), 'sy-bench-cfg-'));
    stops.push(track(() => rm(dataDir, { recursive: true, force: true })));
    env.SWITCHYARD_DATA_DIR = dataDir;
    if (kind === 'postgres') {
      if (cluster === null) {
        const c = await startPgCluster();
        cluster = c;
        track(() => c.stop());
      }
      postmasterPid = await readPid(join(cluster.dir, 'data', 'postmaster.pid'));
      env.DATABASE_URL = (await createDatabase(cluster.url)).url;
    }
    const mosquitto = await startMosquitto();
    stops.push(track(() => mosquitto.stop()));
    const server = await startServerProcess(env);
    stops.push(track(() => server.stop()));
    const api = apiOf(server.url);
    const broker = await api('POST', '/api/v1/brokers', { name: 'bench-mosquitto', protocol: 'mqtt', host: mosquitto.host, port: mosquitto.port });
    if (broker.status !== 201) throw new Error(`registering the broker: ${broker.status} ${JSON.stringify(broker.body)}`);
    const brokerId = broker.body.id as number;
    await until(async () => (await fetch(`${server.url}/readyz`)).status === 200, 30_000, 'server /readyz');

    // Devices: registered one by one through the API (real tokens), each with the shadow an agent leaves behind.
    const uuids = Array.from({ length: opts.devices }, (_, i) => `bench-cfg-${i}`);
    const devices = await pool(uuids, 16, async (uuid) => {
      const res = await api('POST', '/api/v1/devices', { uuid, brokerId });
      if (res.status !== 201) throw new Error(`registering ${uuid}: ${res.status} ${JSON.stringify(res.body)}`);
      const token = res.body.token as string;
      const mqtt = { status: 'connected', brokerId, broker: mosquitto.url, protocol: 'mqtt', host: mosquitto.host, port: mosquitto.port };
      const sh = await api('POST', `/api/v1/devices/${uuid}/shadows/device-state`, { state: { reported: { mqtt } } }, token);
      if (sh.status !== 200) throw new Error(`shadow of ${uuid}: ${sh.status} ${JSON.stringify(sh.body)}`);
      const cfg = await api('GET', `/api/v1/devices/${uuid}/config`, undefined, token);
      if (cfg.status !== 200 || !cfg.etag) throw new Error(`config of ${uuid}: ${cfg.status} ${JSON.stringify(cfg.body)}`);
      const again = await fetch(`${server.url}/api/v1/devices/${uuid}/config`, { headers: { authorization: `Bearer ${token}`, 'if-none-match': cfg.etag } });
      if (again.status !== 304) throw new Error(`config of ${uuid} with If-None-Match: ${again.status}`);
      return { uuid, token, etag: cfg.etag };
    });
    const setupS = (performance.now() - setupStart) / 1000;
    log(`[run ${run}] ${kind}: ${devices.length} devices ready in ${setupS.toFixed(1)} s`);

    /** One measured load over `devs` (generators forked for it, stopped after). */
    const load = async (phase: Phase, devs: Array<{ uuid: string; token: string; etag: string }>): Promise<Result> => {
      // Generators: devices and connections split between them.
      const gens: ChildProcess[] = [];
      for (let g = 0; g < opts.generators; g++) {
        const child = fork(GENERATOR, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        gens.push(child);
        const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
        stops.push(
          track(async () => {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGTERM');
            if ((await Promise.race([exited.then(() => 'ok'), sleep(3000, 'timeout')])) === 'timeout') child.kill('SIGKILL');
          }),
        );
      }
      await sleep(1500); // let the children load (tsx) before the clock starts
      const { hostname: host, port } = new URL(server.url);
      const snap = () => ({
        at: performance.now(),
        server: cpuSeconds(server.child.pid!),
        postgres: postmasterPid === null ? 0 : treeCpuSeconds(postmasterPid),
        generators: gens.reduce((n, c) => n + cpuSeconds(c.pid!), 0),
        machine: machineBusySeconds(),
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
      const windowS = (after.at - before.at) / 1000;
      const pct = (x: number): number => round((x / windowS) * 100, 1);
      const ours = after.server - before.server + (after.postgres - before.postgres) + (after.generators - before.generators);
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
        cpu: {
          server: pct(after.server - before.server),
          postgres: pct(after.postgres - before.postgres),
          generators: pct(after.generators - before.generators),
          otherOnMachine: pct(Math.max(0, after.machine - before.machine - ours)),
        },
        loadAvg: { before: loadBefore, after: loadAfter },
        setupS: round(setupS, 1),
      };
      log(
        `[run ${run}] ${kind} ${phase} (${devs.length} devices): ${result.rps} req/s, p50 ${result.p50} p99 ${result.p99} ms, non-304 ${result.non304}, cpu srv/pg/gen/other ${result.cpu.server}/${result.cpu.postgres}/${result.cpu.generators}/${result.cpu.otherOnMachine} %, load ${loadBefore.join(' ')} → ${loadAfter.join(' ')}`,
      );
      for (const g of gens) g.kill('SIGTERM');
      return result;
    };
    const showServer = (r: Result): void => {
      if (r.non304 > 0 || r.errors.length > 0) log(`server output (last 3000 characters):\n${server.output().slice(-3000)}`);
    };
    const out = [await load('hot', devices)];
    showServer(out[0]!);
    if (kind === 'postgres' && opts.coldDevices > 0) {
      const cold = await insertColdDevices(env.DATABASE_URL!, brokerId, opts.coldDevices);
      log(`[run ${run}] ${kind}: ${cold.length} more devices inserted by SQL (then ANALYZE, CHECKPOINT)`);
      await sleep(2000);
      out.push(await load('cold', cold));
      showServer(out[1]!);
    }
    return out;
  } finally {
    await stopAll();
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
      if (interrupted) throw new Error('interrupted');
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
