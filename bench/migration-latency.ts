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
 * The baseline device is a small mqtt.js client in this process. A watcher subscribed to
 * `iot/device/+/status` on both brokers records when each device's `online` presence arrives on the target
 * (the agent sends it right after the new connection's CONNACK): recorded in the JSON as `connack`.
 *
 * Writes bench/results/migration-latency.json and prints Markdown tables (medians over `--runs`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { createDatabase, freePort, startPgCluster, type PgCluster } from '../scripts/test-servers.mjs';
import { startMosquitto, type TestMosquitto } from '../test/helpers/mosquitto.ts';
import { startServerProcess, type TestProcess } from '../test/helpers/processes.ts';
import type { AgentInit, FromAgent } from './lib/migration-agent.ts';
import { cpuSeconds, machineBusySeconds, treeCpuSeconds } from './lib/proc-cpu.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { median, round, summarize, type LatencySummary } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

const { values: args } = parseArgs({
  options: {
    moves: { type: 'string', default: '200' },
    'baseline-moves': { type: 'string', default: '20' },
    warmup: { type: 'string', default: '5' },
    settle: { type: 'string', default: '50' },
    runs: { type: 'string', default: '3' },
    timeout: { type: 'string', default: '20' },
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
  moves: int('moves', args.moves),
  baselineMoves: int('baseline-moves', args['baseline-moves'], 0),
  warmup: int('warmup', args.warmup, 0),
  baselineWarmup: 1,
  settleMs: int('settle', args.settle, 0),
  runs: int('runs', args.runs),
  timeoutS: int('timeout', args.timeout),
};

const ADMIN_TOKEN = 'sya_bench-admin-token-0123456789abcdef';
const BASELINE_SLEEP_MS = 2000;
/** High-resolution wall clock (ms); the agent child uses the same formula, corrected by the measured offset. */
const now = (): number => performance.timeOrigin + performance.now();
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
    if (interrupted) process.exit(130); // second Ctrl-C: the helpers' exit hooks still kill the servers
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping the agent, server, Mosquitto and PostgreSQL…\n`);
    void cleanupAll().finally(() => process.exit(130));
  });
}
/** Registers `undo` to run at cleanup; returns a function that runs it now (once). */
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

// --- helpers ----------------------------------------------------------------------------------------------------

async function readPid(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8')).split('\n', 1)[0]!.trim());
}

interface Api {
  <T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
}
function apiOf(url: string): Api {
  return async (method, path, body) => {
    const res = await fetch(`${url}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    return { status: res.status, body: text ? JSON.parse(text) : undefined };
  };
}

/** Resolves when `pred()` holds, polling; rejects after `ms`. */
async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!(await pred())) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** The server's SSE stream of migration events: `onEvent(data, arrivedAt)` per `migration` event. */
async function openEvents(url: string, onEvent: (data: Record<string, any>, at: number) => void): Promise<() => Promise<void>> {
  const ac = new AbortController();
  const res = await fetch(`${url}/api/v1/events?types=migration`, { headers: { authorization: `Bearer ${ADMIN_TOKEN}` }, signal: ac.signal });
  if (res.status !== 200 || !res.body) throw new Error(`GET /api/v1/events: ${res.status}`);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  const pump = (async () => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const at = now();
      buf += decoder.decode(value, { stream: true });
      let sep: number;
      while ((sep = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, sep);
        buf = buf.slice(sep + 2);
        let event = 'message';
        let data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event: ')) event = line.slice(7);
          else if (line.startsWith('data: ')) data += line.slice(6);
        }
        if (event === 'migration' && data) onEvent(JSON.parse(data) as Record<string, any>, at);
      }
    }
  })().catch(() => undefined);
  return async () => {
    ac.abort();
    await pump;
  };
}

// --- the agent child ----------------------------------------------------------------------------------------------

interface AgentChild {
  child: ChildProcess;
  /** This process's clock minus the child's (add to a child timestamp). */
  offset: number;
  /** RTT of the ping the offset came from (its error is at most half of it). */
  offsetRttMs: number;
  calibrate(): Promise<void>;
  stop(): Promise<void>;
}

const AGENT = fileURLToPath(new URL('./lib/migration-agent.ts', import.meta.url));

async function startAgentChild(init: AgentInit, onMessage: (m: FromAgent) => void): Promise<AgentChild> {
  const child = fork(AGENT, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  let pong: ((m: { t0: number; tc: number }) => void) | null = null;
  let started: { resolve(): void; reject(e: Error): void } | null = null;
  child.on('message', (raw) => {
    const m = raw as FromAgent;
    if (m.type === 'pong') pong?.(m);
    else if (m.type === 'started') started?.resolve();
    else if (m.type === 'error') {
      log(`agent: ${m.message}`);
      if (m.fatal) started?.reject(new Error(`agent: ${m.message}`));
    } else onMessage(m);
  });
  const stop = track(async () => {
    if (exited) return;
    child.send({ type: 'stop' });
    if ((await Promise.race([exit.then(() => 'ok'), sleep(5000, 'timeout')])) === 'timeout') child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    started = { resolve, reject };
    child.once('exit', (code) => reject(new Error(`agent exited (${code})`)));
    child.send(init);
  });
  const a: AgentChild = {
    child,
    offset: 0,
    offsetRttMs: Infinity,
    async calibrate() {
      let best = { rtt: Infinity, offset: 0 };
      for (let i = 0; i < 30; i++) {
        const t0 = now();
        const m = await new Promise<{ t0: number; tc: number }>((resolve) => {
          pong = resolve;
          child.send({ type: 'ping', t0 });
        });
        const t1 = now();
        if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: (t0 + t1) / 2 - m.tc };
        await sleep(2);
      }
      a.offset = best.offset;
      a.offsetRttMs = best.rtt;
    },
    stop,
  };
  return a;
}

// --- the baseline device: the original design's flow --------------------------------------------------------------

interface BrokerInfo {
  id: number;
  host: string;
  port: number;
  url: string;
}

/**
 * On a delta touching `desired.mqtt`: `get` the `device-state` shadow (the delta holds only differing leaves),
 * disconnect, wait 2 s, connect to `desired.mqtt`, report `connected` there (and presence). No verification.
 */
function baselineDevice(o: { uuid: string; token: string; brokers: BrokerInfo[]; onConnack(brokerId: number, at: number): void }) {
  const base = `iot/device/${o.uuid}/shadow/name/device-state`;
  let client: MqttClient | null = null;
  let current: BrokerInfo | null = null;
  let seq = 0;
  let moving = false;
  let stopped = false;

  const report = (c: MqttClient, b: BrokerInfo): void => {
    const mqttState = { status: 'connected', brokerId: b.id, broker: b.url, protocol: 'mqtt', host: b.host, port: b.port };
    c.publish(`${base}/update`, JSON.stringify({ state: { reported: { mqtt: mqttState } }, clientToken: `bl-${++seq}` }), { qos: 1 });
    c.publish(`iot/device/${o.uuid}/status`, JSON.stringify({ state: 'online', brokerId: b.id, at: new Date().toISOString() }), { qos: 1 });
  };

  async function connect(b: BrokerInfo): Promise<void> {
    const c = mqtt.connect(b.url, {
      clientId: o.uuid,
      username: o.uuid,
      password: o.token,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      keepalive: 30,
      will: { topic: `iot/device/${o.uuid}/status`, payload: Buffer.from(JSON.stringify({ state: 'offline', brokerId: b.id })), qos: 1, retain: false },
    });
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => {
        o.onConnack(b.id, now());
        resolve();
      });
      c.once('error', reject);
    });
    // A reset of the connection being left (it was ended on purpose) is not news.
    c.on('error', (err) => {
      if (c === client && !moving && !stopped) log(`baseline device: ${err.message}`);
    });
    c.on('message', (topic, payload) => onMessage(c, topic, payload));
    client = c;
    current = b;
    c.subscribe([`${base}/update/delta`, `${base}/get/accepted`, `${base}/get/rejected`], { qos: 1 });
    report(c, b);
  }

  function onMessage(c: MqttClient, topic: string, payload: Buffer): void {
    if (c !== client || stopped) return;
    const msg = JSON.parse(payload.toString('utf8')) as Record<string, any>;
    if (topic.endsWith('/update/delta')) {
      if (msg.state?.mqtt !== undefined && !moving) c.publish(`${base}/get`, JSON.stringify({ clientToken: `bl-${++seq}` }), { qos: 1 });
      return;
    }
    if (topic.endsWith('/get/accepted')) {
      const desired = msg.state?.desired?.mqtt as { brokerId?: number } | undefined;
      const target = o.brokers.find((b) => b.id === desired?.brokerId);
      if (!target || target.id === current?.id || moving) return;
      moving = true;
      void (async () => {
        try {
          await c.endAsync(); // disconnect
          await sleep(BASELINE_SLEEP_MS); // wait 2 s
          if (!stopped) await connect(target); // connect to the new broker, report there
        } catch (err) {
          log(`baseline device: move failed: ${(err as Error).message}`);
        } finally {
          moving = false;
        }
      })();
    }
  }

  return {
    start: (b: BrokerInfo) => connect(b),
    async stop() {
      stopped = true;
      await client?.endAsync(true).catch(() => undefined);
    },
  };
}

// --- one run ------------------------------------------------------------------------------------------------------

/** Timestamps (this process's clock, ms) of one move. */
interface Move {
  index: number;
  warmup: boolean;
  toBrokerId: number;
  sent: number;
  migrationId?: number;
  httpDone?: number;
  notified?: number;
  migrating?: number;
  completed?: number;
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
  failed?: string;
}

interface Cpu {
  server: number;
  agent: number;
  mosquitto: number;
  postgres: number;
  bench: number;
  otherOnMachine: number;
}

interface FlowResult {
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

let cluster: PgCluster | null = null;

async function runOnce(run: number): Promise<{ flows: FlowResult[]; clockOffsetRttMs: number }> {
  const stops: Array<() => Promise<void>> = [];
  const stopRun = async (): Promise<void> => {
    for (const fn of stops.reverse()) await fn().catch((err: Error) => log(`stop: ${err.message}`));
  };
  try {
    if (cluster === null) {
      const c = await startPgCluster();
      cluster = c;
      track(() => c.stop());
    }
    const postmasterPid = await readPid(join(cluster.dir, 'data', 'postmaster.pid'));
    const databaseUrl = (await createDatabase(cluster.url)).url;
    const mosquittos: TestMosquitto[] = [];
    for (let i = 0; i < 2; i++) {
      const m = await startMosquitto();
      mosquittos.push(m);
      stops.push(track(() => m.stop()));
    }
    const mosquittoPids = await Promise.all(mosquittos.map((m) => readPid(join(m.configDir, 'server.pid'))));
    const dataDir = await mkdtemp(join(tmpdir(), 'sy-bench-mig-'));
    stops.push(track(() => rm(dataDir, { recursive: true, force: true })));
    const server: TestProcess & { url: string } = await startServerProcess({
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      DATABASE_URL: databaseUrl,
      SWITCHYARD_EMBEDDED_BROKERS: 'none',
      SWITCHYARD_ADMIN_TOKEN: ADMIN_TOKEN,
      SWITCHYARD_SECRET: 'bench-secret-0123456789abcdef',
      SWITCHYARD_DATA_DIR: dataDir,
      LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    });
    stops.push(track(() => server.stop()));
    const api = apiOf(server.url);
    const brokers: BrokerInfo[] = [];
    for (const [i, m] of mosquittos.entries()) {
      const res = await api('POST', '/api/v1/brokers', { name: `bench-mosquitto-${i + 1}`, protocol: 'mqtt', host: m.host, port: m.port });
      if (res.status !== 201) throw new Error(`registering a broker: ${res.status} ${JSON.stringify(res.body)}`);
      brokers.push({ id: res.body.id, host: m.host, port: m.port, url: m.url });
    }
    await until(async () => (await fetch(`${server.url}/readyz`)).status === 200, 20_000, 'server /readyz');

    // Live observers: the SSE stream, and a presence watcher on each broker.
    let current: Move | null = null;
    const completedAt = new Map<number, Record<string, number>>();
    const stopEvents = await openEvents(server.url, (data, at) => {
      const id = Number(data.id);
      const seen = completedAt.get(id) ?? {};
      if (seen[data.status] === undefined) seen[data.status] = at;
      completedAt.set(id, seen);
    });
    stops.push(track(stopEvents));
    let watchedUuid = '';
    for (const b of brokers) {
      const w = await mqtt.connectAsync(b.url, { clientId: `bench-watch-${run}-${b.id}`, protocolVersion: 4, clean: true, reconnectPeriod: 0 });
      (w.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
      // Presence, and every `device-state` request and reply on this broker: where the time goes, seen by the
      // brokers themselves (QoS 0: the watcher adds no acknowledgements to anyone's path).
      await w.subscribeAsync({ 'iot/device/+/status': { qos: 0 }, 'iot/device/+/shadow/name/device-state/#': { qos: 0 } });
      w.on('message', (topic, payload) => {
        const at = now();
        const m = current;
        if (!m) return;
        const prefix = `iot/device/${watchedUuid}/`;
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
      stops.push(track(() => w.endAsync(true)));
    }

    const newDevice = async (prefix: string): Promise<{ uuid: string; token: string }> => {
      const uuid = `${prefix}-r${run}-${process.pid}`;
      const res = await api('POST', '/api/v1/devices', { uuid, brokerId: brokers[0]!.id });
      if (res.status !== 201) throw new Error(`registering a device: ${res.status} ${JSON.stringify(res.body)}`);
      return { uuid, token: res.body.token };
    };
    const reportedOn = async (uuid: string, brokerId: number): Promise<boolean> => {
      const s = await api('GET', `/api/v1/devices/${uuid}/shadows/device-state`);
      const m = s.body?.state?.reported?.mqtt;
      return s.status === 200 && m?.status === 'connected' && m?.brokerId === brokerId && s.body?.state?.delta === undefined;
    };

    /** One flow: `count` measured moves after `warmup` ones, each after the previous ended. */
    const runFlow = async (
      flow: FlowResult['flow'],
      uuid: string,
      warmup: number,
      count: number,
      isDone: (m: Move) => boolean,
      cpuPid: () => number,
    ): Promise<FlowResult> => {
      watchedUuid = uuid;
      const timeline: Move[] = [];
      const loadBefore = machineInfo().loadAvg;
      const snap = () => ({
        at: performance.now(),
        server: cpuSeconds(server.child.pid!),
        agent: cpuSeconds(cpuPid()),
        mosquitto: mosquittoPids.reduce((n, p) => n + cpuSeconds(p), 0),
        postgres: treeCpuSeconds(postmasterPid),
        bench: cpuSeconds(process.pid),
        machine: machineBusySeconds(),
      });
      let before: ReturnType<typeof snap> | null = null;
      for (let i = 0; i < warmup + count; i++) {
        if (i === warmup) before = snap();
        if (interrupted) throw new Error('interrupted');
        const target = brokers[(i + 1) % 2]!; // the device starts on A: B, A, B, …
        const m: Move = { index: i, warmup: i < warmup, toBrokerId: target.id, sent: now() };
        current = m;
        timeline.push(m);
        const res = await api('PUT', `/api/v1/devices/${uuid}/broker`, { brokerId: target.id });
        m.httpDone = now();
        if (res.status !== 200 || !res.body?.migration?.id) {
          m.failed = `PUT answered ${res.status} ${JSON.stringify(res.body)}`;
        } else {
          m.migrationId = Number(res.body.migration.id);
          try {
            await until(
              () => {
                const seen = completedAt.get(m.migrationId!);
                if (seen) {
                  m.notified = seen.notified;
                  m.migrating = seen.migrating;
                  m.completed = seen.completed;
                  const final = ['superseded', 'timed_out', 'failed', 'canceled'].find((s) => seen[s] !== undefined);
                  if (final) throw new Error(`migration ended ${final}`);
                }
                return m.completed !== undefined && isDone(m);
              },
              opts.timeoutS * 1000,
              `move ${i} to broker ${target.id}`,
            );
          } catch (err) {
            m.failed = (err as Error).message;
          }
        }
        current = null;
        if (m.failed) {
          log(`[run ${run}] ${flow} move ${i}: FAILED: ${m.failed}`);
          // Let the device settle where the server thinks it is before the next move.
          await until(() => reportedOn(uuid, target.id), opts.timeoutS * 1000, 'the device to settle').catch(() => undefined);
        }
        await sleep(opts.settleMs);
      }
      const after = snap();
      before ??= after;
      const measured = timeline.filter((m) => !m.warmup);
      const ok = measured.filter((m) => !m.failed);
      const aOf = (m: Move): number | undefined => (flow === 'switchyard agent' ? m.switching : m.baselineConnack);
      const lat = (f: (m: Move) => number | undefined): number[] =>
        ok.map((m) => f(m)).filter((x): x is number => x !== undefined).map((x) => x);
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
      const windowS = (after.at - before.at) / 1000;
      const pct = (x: number): number => round((x / windowS) * 100, 1);
      const ours = after.server - before.server + (after.agent - before.agent) + (after.mosquitto - before.mosquitto) + (after.postgres - before.postgres) + (after.bench - before.bench);
      const r2 = (s: LatencySummary): LatencySummary => ({ count: s.count, p50: round(s.p50, 2), p90: round(s.p90, 2), p99: round(s.p99, 2), max: round(s.max, 2) });
      return {
        flow,
        moves: measured.length,
        failures: measured.length - ok.length,
        a: r2(summarize(lat(since(aOf)))),
        b: r2(summarize(lat(since((m) => m.completed)))),
        connack: r2(summarize(lat(since((m) => m.onlineOnTarget)))),
        steps,
        cpu: {
          server: pct(after.server - before.server),
          agent: pct(after.agent - before.agent),
          mosquitto: pct(after.mosquitto - before.mosquitto),
          postgres: pct(after.postgres - before.postgres),
          bench: pct(after.bench - before.bench),
          otherOnMachine: pct(Math.max(0, after.machine - before.machine - ours)),
        },
        loadAvg: { before: loadBefore, after: machineInfo().loadAvg },
        wallS: round(windowS, 1),
        timeline: timeline.map((m) => relative(m)),
      };
    };

    // --- the Switchyard agent -----------------------------------------------------------------------------------
    const dev = await newDevice('bench-mig-agent');
    const stateDir = await mkdtemp(join(tmpdir(), 'sy-bench-agent-'));
    stops.push(track(() => rm(stateDir, { recursive: true, force: true })));
    let agentChild: AgentChild | null = null;
    const agent = await startAgentChild({ type: 'init', apiUrl: server.url, uuid: dev.uuid, token: dev.token, stateDir }, (msg) => {
      const m = current;
      if (!m || !agentChild || msg.type !== 'migration') return;
      const t = msg.t + agentChild.offset;
      if (msg.to === 'connecting' && msg.targetBrokerId === m.toBrokerId) m.connecting ??= t;
      else if (msg.to === 'verifying' && msg.targetBrokerId === m.toBrokerId) m.verifying ??= t;
      else if (msg.to === 'switching' && msg.targetBrokerId === m.toBrokerId) m.switching ??= t;
      else if (msg.to === 'idle' && msg.from === 'switching' && msg.brokerId === m.toBrokerId) m.idle ??= t;
      else if (msg.to === 'backoff') log(`[run ${run}] agent: attempt failed: ${msg.reason}`);
    });
    agentChild = agent;
    stops.push(agent.stop);
    await until(() => reportedOn(dev.uuid, brokers[0]!.id), 30_000, 'the agent to report connected on broker A');
    await agent.calibrate();
    log(`[run ${run}] agent ready; clock offset ${agent.offset.toFixed(3)} ms (ping RTT ${agent.offsetRttMs.toFixed(3)} ms)`);
    const agentFlow = await runFlow('switchyard agent', dev.uuid, opts.warmup, opts.moves, (m) => m.switching !== undefined && m.idle !== undefined, () => agent.child.pid!);
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
          const m = current;
          if (m && m.toBrokerId === brokerId) m.baselineConnack ??= at;
        },
      });
      stops.push(track(() => device.stop()));
      await device.start(brokers[0]!);
      await until(() => reportedOn(bdev.uuid, brokers[0]!.id), 30_000, 'the baseline device to report connected on broker A');
      const baseline = await runFlow('baseline (disconnect, 2 s, connect)', bdev.uuid, opts.baselineWarmup, opts.baselineMoves, (m) => m.baselineConnack !== undefined, () => process.pid);
      log(`[run ${run}] baseline: (a) p50 ${baseline.a.p50} p99 ${baseline.a.p99} ms; (b) p50 ${baseline.b.p50} p99 ${baseline.b.p99} ms; failures ${baseline.failures}`);
      flows.push(baseline);
    }
    return { flows, clockOffsetRttMs: round(agent.offsetRttMs, 3) };
  } finally {
    await stopRun();
  }
}

/** A move's timestamps as ms since its PUT (for the JSON). */
function relative(m: Move): Move {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) {
    if (k === 'trace' && v) out[k] = Object.fromEntries(Object.entries(v as Record<string, number>).map(([t, x]) => [t, round(x - m.sent, 2)]));
    else if (typeof v === 'number' && k !== 'index' && k !== 'toBrokerId' && k !== 'sent' && k !== 'migrationId') out[k] = round(v - m.sent, 2);
    else out[k] = v;
  }
  return out as unknown as Move;
}

// --- main -----------------------------------------------------------------------------------------------------

const machineBefore = machineInfo();
const startedAt = new Date().toISOString();
const runs: Array<{ run: number; clockOffsetRttMs: number; flows: FlowResult[] }> = [];
try {
  for (let run = 1; run <= opts.runs; run++) {
    const r = await runOnce(run);
    runs.push({ run, ...r });
  }
} finally {
  await cleanupAll();
}
const machineAfter = machineInfo();

const flowNames = runs[0]!.flows.map((f) => f.flow);
const summary = flowNames.map((name) => {
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

const file = await writeResult('migration-latency', {
  bench: 'migration-latency',
  startedAt,
  finishedAt: new Date().toISOString(),
  machine: { ...machineBefore, loadAvgBefore: machineBefore.loadAvg, loadAvgAfter: machineAfter.loadAvg },
  config: { ...opts, baselineSleepMs: BASELINE_SLEEP_MS, mosquitto: { set_tcp_nodelay: true, persistence: false }, server: 'child process (switchyard serve), LOG_LEVEL warn' },
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
