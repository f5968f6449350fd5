/**
 * Shadow throughput: K devices publish `reported` updates through Mosquitto to a Switchyard server, which
 * persists them (group commit, durable) and answers `accepted` after the commit. Measures accepted updates/s and
 * publish → `accepted` latency at the receiver, on PostgreSQL and on PGlite.
 *
 *   npm run bench -- shadow-throughput [--devices 1000] [--connections 200] [--rates 2000,5000,8000]
 *     [--seconds 8] [--warmup 15] [--ramp warmup/2] [--max-inflight 256] [--generators 1] [--pglite-rates 250,500,1000]
 *     [--targets postgres,pglite[,floor]] [--runs 1] [--qos 1] [--grace 15] [--max-batch 500] [--client mini|mqttjs]
 *
 * `--targets floor` runs the same phases against a trivial responder instead of the server, with no database
 * (bench/lib/shadow-floor.ts): what the generators and Mosquitto alone cost this machine.
 *
 * Parts (all on 127.0.0.1): a throwaway PostgreSQL cluster (default, durable settings: fsync and
 * synchronous_commit on — read back and recorded; WAL segments recycled as in a cluster in service, see
 * bench/lib/stack.ts), one Mosquitto (`max_queued_messages` raised so that nothing is
 * dropped; replies are counted at the receiver anyway), the Switchyard server in THIS process (so its CPU is this
 * process's CPU; with PGlite the database runs here too) and the load in `--generators` child processes
 * (bench/lib/shadow-load-generator.ts). Devices are inserted with one SQL statement and a dummy token hash (the
 * bench's Mosquitto allows anonymous clients, so tokens are never checked).
 *
 * Writes bench/results/shadow-throughput.json and prints a Markdown table (medians over `--runs`).
 */
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadConfig } from '../packages/server/src/config.ts';
import type { Queryable } from '../packages/server/src/db/db.ts';
import { createLogger } from '../packages/server/src/log.ts';
import { startSwitchyard } from '../packages/server/src/serve.ts';
import { freePort } from '../scripts/test-servers.mjs';
import { ADMIN_TOKEN, apiOf, registerBroker } from './lib/api.ts';
import { cleanupAll, runStops, stopOnSignals } from './lib/cleanup.ts';
import { benchArgs, int, intList, log } from './lib/cli.ts';
import { startGenerator, type Generator } from './lib/shadow-generators.ts';
import type { InitMessage } from './lib/shadow-load-generator.ts';
import { startFloorResponder } from './lib/shadow-floor.ts';
import { medians, phaseTable, runPhase, split, type PhaseRow, type PhaseSpec, type Target, type TargetKind } from './lib/shadow-phase.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { benchDatabase, benchMosquitto, benchTempDir } from './lib/stack.ts';

const args = await benchArgs(import.meta.url, {
  devices: { type: 'string', default: '1000' },
  connections: { type: 'string', default: '200' },
  rates: { type: 'string', default: '2000,5000,8000' },
  'pglite-rates': { type: 'string', default: '250,500,1000' },
  seconds: { type: 'string', default: '8' },
  warmup: { type: 'string', default: '15' },
  ramp: { type: 'string', default: '' },
  'max-inflight': { type: 'string', default: '256' },
  generators: { type: 'string', default: '1' },
  targets: { type: 'string', default: 'postgres,pglite' },
  runs: { type: 'string', default: '1' },
  qos: { type: 'string', default: '1' },
  grace: { type: 'string', default: '15' },
  'max-batch': { type: 'string', default: '' },
  client: { type: 'string', default: 'mini' },
});

const opts = {
  devices: int('devices', args.devices),
  connections: int('connections', args.connections),
  rates: intList('rates', args.rates),
  pgliteRates: intList('pglite-rates', args['pglite-rates']),
  seconds: int('seconds', args.seconds),
  warmup: int('warmup', args.warmup, 0),
  // Half the warm-up by default: the rest runs at the full rate before the window opens.
  ramp: args.ramp === '' ? int('warmup', args.warmup, 0) / 2 : int('ramp', args.ramp, 0),
  maxInflight: int('max-inflight', args['max-inflight'], 0),
  generators: int('generators', args.generators),
  targets: args.targets.split(',').map((t) => t.trim()) as TargetKind[],
  runs: int('runs', args.runs),
  qos: int('qos', args.qos, 0) as 0 | 1,
  grace: int('grace', args.grace, 1),
  maxBatch: args['max-batch'] ? int('max-batch', args['max-batch']) : undefined,
  client: args.client as 'mini' | 'mqttjs',
};
if (opts.client !== 'mini' && opts.client !== 'mqttjs') throw new Error('--client must be mini or mqttjs');
for (const t of opts.targets) if (t !== 'postgres' && t !== 'pglite' && t !== 'floor') throw new Error(`--targets: unknown target ${t}`);
if (opts.qos !== 0 && opts.qos !== 1) throw new Error('--qos must be 0 or 1');
if (opts.ramp > opts.warmup) throw new Error('--ramp must not exceed --warmup');
if (opts.connections > opts.devices) throw new Error('--connections must not exceed --devices');
if (opts.generators > opts.connections) throw new Error('--generators must not exceed --connections');

const SHADOW_NAME = 'bench';

stopOnSignals('generators, server, Mosquitto and PostgreSQL');

// --- the target: database + Mosquitto + server ----------------------------------------------------------------

/**
 * Mosquitto's default `max_queued_messages` is 1,000 (the helper raises it to 10,000): a subscriber that falls behind
 * silently loses messages. Raised so that any loss this bench reports is Switchyard's, not a queue limit.
 */
const MOSQUITTO_CONFIG = { extraConfig: 'max_queued_messages 1000000' };

async function startTarget(kind: 'postgres' | 'pglite'): Promise<Target> {
  const stops = runStops();
  const dataDir = await benchTempDir(stops, 'sy-bench-');
  try {
    const { mosquitto, pid: mosquittoPid } = await benchMosquitto(stops, MOSQUITTO_CONFIG);
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
      const db = await benchDatabase();
      postmasterPid = db.postmasterPid;
      env.DATABASE_URL = db.url;
    }
    const config = loadConfig(env);
    // Server logs (warnings and errors only by default) go to stderr, away from the results on stdout.
    const sy = await startSwitchyard({ config, log: createLogger({ level: config.logLevel, destination: { write: (s: string) => process.stderr.write(s) } }) });
    stops.track(() => sy.stop());

    const brokerId = await registerBroker(apiOf(sy.url), 'bench-mosquitto', mosquitto.host, mosquitto.port);
    await sy.pool.refresh();
    await sy.pool.waitConnected(brokerId, 10_000);

    const settings: Record<string, string> = {};
    for (const name of ['server_version', 'synchronous_commit', 'fsync', 'wal_sync_method', 'full_page_writes', 'commit_delay']) {
      const { rows } = await sy.db.query<Record<string, string>>(`SHOW ${name}`);
      settings[name] = String(Object.values(rows[0] ?? {})[0]);
    }
    return {
      kind,
      shadows: sy.shadows,
      addDevices: (uuids) => insertDevices(sy.db, brokerId, uuids),
      mosquitto,
      mosquittoPid,
      postmasterPid,
      settings,
      stop: () => stops.stopAll(),
    };
  } catch (err) {
    await stops.stopAll();
    throw err;
  }
}

/** The floor: the same Mosquitto, a trivial responder instead of the server, no database. */
async function startFloor(): Promise<Target> {
  const stops = runStops();
  try {
    const { mosquitto, pid: mosquittoPid } = await benchMosquitto(stops, MOSQUITTO_CONFIG);
    const responder = await startFloorResponder(mosquitto.host, mosquitto.port);
    stops.track(() => responder.close());
    return {
      kind: 'floor',
      shadows: responder,
      addDevices: async () => undefined,
      mosquitto,
      mosquittoPid,
      postmasterPid: null,
      settings: {},
      stop: () => stops.stopAll(),
    };
  } catch (err) {
    await stops.stopAll();
    throw err;
  }
}

/** Bulk registration: one INSERT, dummy token hash (the bench's Mosquitto does not check device tokens). */
async function insertDevices(db: Queryable, brokerId: number, uuids: string[]): Promise<void> {
  await db.query(
    `INSERT INTO devices (uuid, name, mqtt_broker_id, token_hash)
     SELECT u, u, $2::int, 'bench-no-token' FROM jsonb_array_elements_text($1::jsonb) AS t(u)`,
    [JSON.stringify(uuids), brokerId],
  );
}

async function runTarget(kind: TargetKind, run: number): Promise<{ rows: PhaseRow[]; settings: Record<string, string> }> {
  const started = performance.now();
  const t = kind === 'floor' ? await startFloor() : await startTarget(kind);
  try {
    const uuids = Array.from({ length: opts.devices }, (_, i) => `bench-r${run}-${String(i).padStart(6, '0')}`);
    await t.addDevices(uuids);
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

    const rates = kind === 'pglite' ? opts.pgliteRates : opts.rates;
    const specs: PhaseSpec[] = [
      ...rates.map((r) => ({ label: `open ${r}/s`, mode: 'open' as const, level: r })),
      ...(opts.maxInflight > 0 ? [{ label: `max (${opts.maxInflight} in flight)`, mode: 'closed' as const, level: opts.maxInflight }] : []),
    ];
    const rows: PhaseRow[] = [];
    for (const spec of specs) {
      // An overloaded phase leaves a backlog in the batcher: let it finish so the next phase starts clean.
      const drained = await Promise.race([t.shadows.drain().then(() => true), sleep(120_000, false)]);
      if (!drained) log(`[run ${run}] ${kind}: the server still had queued requests after 120 s; starting ${spec.label} anyway`);
      const row = await runPhase(t, gens, spec, opts);
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

const summary = medians(runs);
const table = phaseTable(summary);
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
