/**
 * Channels: the four ways to tell a device of a broker change, measured side by side in one run.
 *
 * For each channel — `shadow` (delta), `command` (MQTT command + acks), `job` (device job), `poll` (plain polling,
 * `--poll-interval-ms`, default 1000 for a latency you can wait for; what 60 s implies is derived below), and
 * `long-poll` (`--long-poll-s`, default 30) — one device runs the Switchyard agent restricted to that channel
 * (`channels: [c]`, as `switchyard-agent --channels c`) in its own child process (bench/lib/migration-agent.ts).
 *
 *   npm run bench -- channels [--moves 30] [--warmup 2] [--settle 200] [--idle 120] [--runs 1] [--timeout 20]
 *     [--poll-interval-ms 1000] [--long-poll-s 30] [--only shadow,command,job,poll,long-poll]
 *
 * 1. Idle: all five devices connected, nothing assigned, for `--idle` seconds (heartbeat off): keep-alives and polls.
 *    Scaled to an hour.
 * 2. Moves, one channel after the other: `--warmup` unmeasured then `--moves` measured moves alternating A ↔ B, each
 *    `PUT /api/v1/devices/:uuid/broker {brokerId, channel}` sent after the previous move completed + `--settle` ms
 *    (plain poll: + a random 0–2 poll intervals, so the PUT falls at a random point of the poll cycle).
 *    Latency = PUT sent → the agent's `migration:state` `→ switching` (on the new broker, verified), timestamped in
 *    the agent process and converted to the bench's clock (ping/pong offset, min RTT), as bench/migration-latency.
 *    Traffic per move = (the device's traffic over the measured moves, from the first measured PUT to a quiet
 *    period after the last move) − (its idle rate × that time), ÷ moves: what a move costs on top of idling.
 *
 * Counting: every byte the device sends or receives passes a counting TCP proxy in this process
 * (bench/lib/counting-proxy.ts). Each Mosquitto is registered with the server at its proxy's address, so the
 * device reaches it through the proxy (so does the server's own connection: its traffic is not counted, only the
 * device's client id; both pay the proxy's hop, ~0.1 ms, on every channel alike). The agent's API URL is a proxy
 * of its own in front of the server. Messages: MQTT packets (every type: CONNECT … PINGREQ, PUBACK included) and
 * HTTP requests/responses. Bytes: TCP payload (MQTT/HTTP bytes; no TCP/IP headers, no TLS).
 *
 * Parts: a throwaway PostgreSQL cluster (durable), two Mosquitto (`set_tcp_nodelay true`), the server as a child
 * process (`switchyard serve`), the agents as child processes. Writes bench/results/channels.json and prints
 * Markdown tables (medians over `--runs`).
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { createDatabase, freePort, startPgCluster, type PgCluster } from '../scripts/test-servers.mjs';
import { startMosquitto, type TestMosquitto } from '../test/helpers/mosquitto.ts';
import { startServerProcess, type TestProcess } from '../test/helpers/processes.ts';
import { diffStats, startCountingProxy, type CountingProxy, type TrafficStats } from './lib/counting-proxy.ts';
import type { AgentInit, FromAgent } from './lib/migration-agent.ts';
import { cpuSeconds, machineBusySeconds, treeCpuSeconds } from './lib/proc-cpu.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { median, round, summarize, type LatencySummary } from './lib/stats.ts';
import { markdownTable } from './lib/table.ts';

const CHANNELS = ['shadow', 'command', 'job', 'poll', 'long-poll'] as const;
type Channel = (typeof CHANNELS)[number];

const { values: args } = parseArgs({
  options: {
    moves: { type: 'string', default: '30' },
    warmup: { type: 'string', default: '2' },
    settle: { type: 'string', default: '200' },
    idle: { type: 'string', default: '120' },
    runs: { type: 'string', default: '1' },
    timeout: { type: 'string', default: '20' },
    'poll-interval-ms': { type: 'string', default: '1000' },
    'long-poll-s': { type: 'string', default: '30' },
    only: { type: 'string', default: CHANNELS.join(',') },
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
const only = args.only.split(',').map((s) => s.trim());
for (const c of only) if (!(CHANNELS as readonly string[]).includes(c)) throw new Error(`--only: unknown channel ${JSON.stringify(c)}; expected ${CHANNELS.join(',')}`);
const opts = {
  moves: int('moves', args.moves),
  warmup: int('warmup', args.warmup, 0),
  settleMs: int('settle', args.settle, 0),
  idleS: int('idle', args.idle),
  runs: int('runs', args.runs),
  timeoutS: int('timeout', args.timeout),
  pollIntervalMs: int('poll-interval-ms', args['poll-interval-ms'], 100),
  longPollS: int('long-poll-s', args['long-poll-s']),
  channels: CHANNELS.filter((c) => only.includes(c)),
};
/** The plain-poll interval the 60 s row is derived for. */
const SLOW_POLL_S = 60;

const ADMIN_TOKEN = 'sya_bench-admin-token-0123456789abcdef';
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
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n${signal}: stopping the agents, proxies, server, Mosquitto and PostgreSQL…\n`);
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

// --- helpers ----------------------------------------------------------------------------------------------------

async function readPid(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8')).split('\n', 1)[0]!.trim());
}

type Api = <T = any>(method: string, path: string, body?: unknown) => Promise<{ status: number; body: T }>;
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

async function until(pred: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const end = performance.now() + ms;
  while (!(await pred())) {
    if (performance.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(5);
  }
}

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

// --- agent children ---------------------------------------------------------------------------------------------

interface AgentChild {
  child: ChildProcess;
  offset: number;
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
      log(`agent ${init.uuid}: ${m.message}`);
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

// --- one run ------------------------------------------------------------------------------------------------------

interface Move {
  index: number;
  warmup: boolean;
  toBrokerId: number;
  sent: number;
  migrationId?: number;
  httpDone?: number;
  completed?: number;
  connecting?: number;
  switching?: number;
  idle?: number;
  failed?: string;
}

/** Traffic as plain numbers: up/down messages and bytes (and connections), MQTT and HTTP apart. */
interface Traffic {
  mqtt: TrafficStats;
  http: TrafficStats;
}
const scale = (s: TrafficStats, f: number): TrafficStats => ({
  up: { bytes: s.up.bytes * f, messages: s.up.messages * f, byType: Object.fromEntries(Object.entries(s.up.byType).map(([k, v]) => [k, v * f])) },
  down: { bytes: s.down.bytes * f, messages: s.down.messages * f, byType: Object.fromEntries(Object.entries(s.down.byType).map(([k, v]) => [k, v * f])) },
  connections: s.connections * f,
});
const sub = (a: TrafficStats, b: TrafficStats): TrafficStats => diffStats(a, b);
const roundStats = (s: TrafficStats, d = 1): TrafficStats => ({
  up: { bytes: round(s.up.bytes, d), messages: round(s.up.messages, d), byType: Object.fromEntries(Object.entries(s.up.byType).map(([k, v]) => [k, round(v, d)])) },
  down: { bytes: round(s.down.bytes, d), messages: round(s.down.messages, d), byType: Object.fromEntries(Object.entries(s.down.byType).map(([k, v]) => [k, round(v, d)])) },
  connections: round(s.connections, d),
});
/** up+down, MQTT+HTTP. */
interface Totals {
  msgsUp: number;
  msgsDown: number;
  bytesUp: number;
  bytesDown: number;
}
const totals = (t: Traffic): Totals => ({
  msgsUp: t.mqtt.up.messages + t.http.up.messages,
  msgsDown: t.mqtt.down.messages + t.http.down.messages,
  bytesUp: t.mqtt.up.bytes + t.http.up.bytes,
  bytesDown: t.mqtt.down.bytes + t.http.down.bytes,
});

interface ChannelResult {
  channel: Channel;
  moves: number;
  failures: number;
  latency: LatencySummary;
  /** Median ms from the agent's `→ connecting` to `→ switching` (the move itself, once the device knows). */
  connectingToSwitchingMs: number;
  /** Median ms from the PUT to the agent's `→ connecting` (how long the device took to learn). */
  putToConnectingMs: number;
  perMove: { mqtt: TrafficStats; http: TrafficStats; totals: Totals };
  perMoveRaw: { mqtt: TrafficStats; http: TrafficStats; totals: Totals; windowS: number };
  idle: { windowS: number; mqtt: TrafficStats; http: TrafficStats; perHour: Totals };
  cpu: Record<string, number>;
  loadAvg: { before: number[]; after: number[] };
  timeline: Move[];
}

let cluster: PgCluster | null = null;

async function runOnce(run: number): Promise<{ channels: ChannelResult[]; loadAvg: { before: number[]; after: number[] } }> {
  const stops: Array<() => Promise<void>> = [];
  const stopRun = async (): Promise<void> => {
    for (const fn of stops.reverse()) await fn().catch((err: Error) => log(`stop: ${err.message}`));
  };
  const runLoadBefore = machineInfo().loadAvg;
  try {
    if (cluster === null) {
      const c = await startPgCluster();
      cluster = c;
      track(() => c.stop());
    }
    const postmasterPid = await readPid(join(cluster.dir, 'data', 'postmaster.pid'));
    const databaseUrl = (await createDatabase(cluster.url)).url;
    const mosquittos: TestMosquitto[] = [];
    const proxies: CountingProxy[] = [];
    for (let i = 0; i < 2; i++) {
      const m = await startMosquitto();
      mosquittos.push(m);
      stops.push(track(() => m.stop()));
      const p = await startCountingProxy({ protocol: 'mqtt', targetHost: m.host, targetPort: m.port });
      proxies.push(p);
      stops.push(track(() => p.close()));
    }
    const mosquittoPids = await Promise.all(mosquittos.map((m) => readPid(join(m.configDir, 'server.pid'))));
    const dataDir = await mkdtemp(join(tmpdir(), 'sy-bench-chan-'));
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
    const serverPort = Number(new URL(server.url).port);
    const api = apiOf(server.url);
    const brokerIds: number[] = [];
    for (const [i, p] of proxies.entries()) {
      // Registered at the proxy's address: the device (and the server) reach the broker through it.
      const res = await api('POST', '/api/v1/brokers', { name: `bench-mosquitto-${i + 1}`, protocol: 'mqtt', host: p.host, port: p.port });
      if (res.status !== 201) throw new Error(`registering a broker: ${res.status} ${JSON.stringify(res.body)}`);
      brokerIds.push(res.body.id);
    }
    await until(async () => (await fetch(`${server.url}/readyz`)).status === 200, 20_000, 'server /readyz');

    const completedAt = new Map<number, Record<string, number>>();
    stops.push(
      track(
        await openEvents(server.url, (data, at) => {
          const id = Number(data.id);
          const seen = completedAt.get(id) ?? {};
          if (seen[data.status] === undefined) seen[data.status] = at;
          completedAt.set(id, seen);
        }),
      ),
    );
    const reportedOn = async (uuid: string, brokerId: number): Promise<boolean> => {
      const s = await api('GET', `/api/v1/devices/${uuid}/shadows/device-state`);
      const m = s.body?.state?.reported?.mqtt;
      return s.status === 200 && m?.status === 'connected' && m?.brokerId === brokerId && s.body?.state?.delta === undefined;
    };

    // --- one device per channel -----------------------------------------------------------------------------
    interface Dev {
      channel: Channel;
      uuid: string;
      http: CountingProxy;
      agent: AgentChild;
      current: Move | null;
    }
    const devs: Dev[] = [];
    for (const channel of opts.channels) {
      const uuid = `bench-ch-${channel}-r${run}-${process.pid}`;
      const res = await api('POST', '/api/v1/devices', { uuid, brokerId: brokerIds[0]! });
      if (res.status !== 201) throw new Error(`registering a device: ${res.status} ${JSON.stringify(res.body)}`);
      const http = await startCountingProxy({ protocol: 'http', targetHost: '127.0.0.1', targetPort: serverPort });
      stops.push(track(() => http.close()));
      const stateDir = await mkdtemp(join(tmpdir(), 'sy-bench-chan-agent-'));
      stops.push(track(() => rm(stateDir, { recursive: true, force: true })));
      const options: AgentInit['options'] =
        channel === 'poll'
          ? { channels: ['poll'], pollIntervalMs: opts.pollIntervalMs }
          : channel === 'long-poll'
            ? { channels: ['poll'], longPollS: opts.longPollS }
            : { channels: [channel] };
      const dev: Dev = { channel, uuid, http, agent: null as unknown as AgentChild, current: null };
      dev.agent = await startAgentChild({ type: 'init', apiUrl: `http://${http.host}:${http.port}`, uuid, token: res.body.token, stateDir, options }, (msg) => {
        const m = dev.current;
        if (!m || msg.type !== 'migration') return;
        const t = msg.t + dev.agent.offset;
        if (msg.to === 'connecting' && msg.targetBrokerId === m.toBrokerId) m.connecting ??= t;
        else if (msg.to === 'switching' && msg.targetBrokerId === m.toBrokerId) m.switching ??= t;
        else if (msg.to === 'idle' && msg.from === 'switching' && msg.brokerId === m.toBrokerId) m.idle ??= t;
        else if (msg.to === 'backoff') log(`[run ${run}] ${channel}: attempt failed: ${msg.reason}`);
      });
      stops.push(dev.agent.stop);
      devs.push(dev);
    }
    for (const d of devs) {
      await until(() => reportedOn(d.uuid, brokerIds[0]!), 30_000, `the ${d.channel} agent to report connected on broker A`);
      await d.agent.calibrate();
      log(`[run ${run}] ${d.channel} agent ready; clock offset ${d.agent.offset.toFixed(3)} ms (ping RTT ${d.agent.offsetRttMs.toFixed(3)} ms)`);
    }
    const traffic = (d: Dev): Traffic => {
      const a = proxies[0]!.stats(d.uuid);
      const b = proxies[1]!.stats(d.uuid);
      const mqtt = diffStats(a, scale(b, -1)); // a + b
      return { mqtt, http: d.http.stats() };
    };
    const trafficDiff = (x: Traffic, y: Traffic): Traffic => ({ mqtt: sub(x.mqtt, y.mqtt), http: sub(x.http, y.http) });

    // --- idle ----------------------------------------------------------------------------------------------------
    await sleep(3000); // the first long-poll and the boot-time requests are over
    log(`[run ${run}] idle: ${opts.idleS} s, ${devs.length} devices, no moves`);
    const idleStart = performance.now();
    const idleBefore = devs.map(traffic);
    await sleep(opts.idleS * 1000);
    const idleWindowS = (performance.now() - idleStart) / 1000;
    const idleTraffic = devs.map((d, i) => trafficDiff(traffic(d), idleBefore[i]!));
    const idleRate = idleTraffic.map((t) => ({ mqtt: scale(t.mqtt, 1 / idleWindowS), http: scale(t.http, 1 / idleWindowS) }));

    // --- moves, one channel after the other -----------------------------------------------------------------------
    const results: ChannelResult[] = [];
    for (const [di, d] of devs.entries()) {
      const putChannel = d.channel === 'long-poll' ? 'poll' : d.channel;
      const timeline: Move[] = [];
      const loadBefore = machineInfo().loadAvg;
      const snap = () => ({
        at: performance.now(),
        server: cpuSeconds(server.child.pid!),
        agent: cpuSeconds(d.agent.child.pid!),
        mosquitto: mosquittoPids.reduce((n, p) => n + cpuSeconds(p), 0),
        postgres: treeCpuSeconds(postmasterPid),
        bench: cpuSeconds(process.pid),
        machine: machineBusySeconds(),
      });
      let before: ReturnType<typeof snap> | null = null;
      let trafficBefore: Traffic | null = null;
      for (let i = 0; i < opts.warmup + opts.moves; i++) {
        if (interrupted) throw new Error('interrupted');
        if (i === opts.warmup) {
          before = snap();
          trafficBefore = traffic(d);
        }
        const target = brokerIds[(i + 1) % 2]!;
        const m: Move = { index: i, warmup: i < opts.warmup, toBrokerId: target, sent: now() };
        d.current = m;
        timeline.push(m);
        const res = await api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: target, channel: putChannel });
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
                  m.completed = seen.completed;
                  const final = ['superseded', 'timed_out', 'failed', 'canceled'].find((s) => seen[s] !== undefined);
                  if (final) throw new Error(`migration ended ${final}`);
                }
                return m.completed !== undefined && m.switching !== undefined && m.idle !== undefined;
              },
              opts.timeoutS * 1000,
              `${d.channel} move ${i} to broker ${target}`,
            );
          } catch (err) {
            m.failed = (err as Error).message;
          }
        }
        d.current = null;
        if (m.failed) {
          log(`[run ${run}] ${d.channel} move ${i}: FAILED: ${m.failed}`);
          await until(() => reportedOn(d.uuid, target), opts.timeoutS * 1000, 'the device to settle').catch(() => undefined);
        }
        // Plain polling: a random extra pause (0–2 intervals), so that the next PUT lands at a random point of the
        // poll cycle (the wait for the next poll is then the renewal residual the 60 s row is derived from) rather
        // than a fixed time after the poll that ended the previous move.
        await sleep(opts.settleMs + (d.channel === 'poll' ? Math.random() * 2 * opts.pollIntervalMs : 0));
      }
      // A quiet period: trailing acks, job updates, the poll that sees the device's own report, the old DISCONNECT.
      const quietMs = d.channel === 'poll' ? 2 * opts.pollIntervalMs : 1000;
      await sleep(quietMs);
      const after = snap();
      before ??= after;
      const moveTraffic = trafficDiff(traffic(d), trafficBefore ?? traffic(d));
      const windowS = (after.at - before.at) / 1000;
      const measured = timeline.filter((m) => !m.warmup);
      const ok = measured.filter((m) => !m.failed);
      const n = Math.max(1, measured.length);
      const rate = idleRate[di]!;
      const net: Traffic = {
        mqtt: scale(sub(moveTraffic.mqtt, scale(rate.mqtt, windowS)), 1 / n),
        http: scale(sub(moveTraffic.http, scale(rate.http, windowS)), 1 / n),
      };
      const raw: Traffic = { mqtt: scale(moveTraffic.mqtt, 1 / n), http: scale(moveTraffic.http, 1 / n) };
      const idlePerHour: Traffic = { mqtt: scale(rate.mqtt, 3600), http: scale(rate.http, 3600) };
      const pct = (x: number): number => round((x / windowS) * 100, 1);
      const ours = after.server - before.server + (after.agent - before.agent) + (after.mosquitto - before.mosquitto) + (after.postgres - before.postgres) + (after.bench - before.bench);
      const lat = summarize(ok.filter((m) => m.switching !== undefined).map((m) => m.switching! - m.sent));
      const r = (x: number) => round(x, 2);
      const result: ChannelResult = {
        channel: d.channel,
        moves: measured.length,
        failures: measured.length - ok.length,
        latency: { count: lat.count, p50: r(lat.p50), p90: r(lat.p90), p99: r(lat.p99), max: r(lat.max) },
        connectingToSwitchingMs: r(median(ok.filter((m) => m.connecting !== undefined && m.switching !== undefined).map((m) => m.switching! - m.connecting!))),
        putToConnectingMs: r(median(ok.filter((m) => m.connecting !== undefined).map((m) => m.connecting! - m.sent))),
        perMove: { mqtt: roundStats(net.mqtt), http: roundStats(net.http), totals: mapTotals(totals(net), 1) },
        perMoveRaw: { mqtt: roundStats(raw.mqtt), http: roundStats(raw.http), totals: mapTotals(totals(raw), 1), windowS: round(windowS, 2) },
        idle: {
          windowS: round(idleWindowS, 2),
          mqtt: idleTraffic[di]!.mqtt,
          http: idleTraffic[di]!.http,
          perHour: mapTotals(totals(idlePerHour), 0),
        },
        cpu: {
          server: pct(after.server - before.server),
          agent: pct(after.agent - before.agent),
          mosquitto: pct(after.mosquitto - before.mosquitto),
          postgres: pct(after.postgres - before.postgres),
          bench: pct(after.bench - before.bench),
          otherOnMachine: pct(Math.max(0, after.machine - before.machine - ours)),
        },
        loadAvg: { before: loadBefore, after: machineInfo().loadAvg },
        timeline: timeline.map(relative),
      };
      log(
        `[run ${run}] ${d.channel}: p50 ${result.latency.p50} p99 ${result.latency.p99} ms, failures ${result.failures}; per move ${fmtPair(result.perMove.totals.msgsUp, result.perMove.totals.msgsDown)} msgs, ${fmtPair(result.perMove.totals.bytesUp, result.perMove.totals.bytesDown)} B; idle/h ${fmtPair(result.idle.perHour.msgsUp, result.idle.perHour.msgsDown)} msgs, ${fmtPair(result.idle.perHour.bytesUp, result.idle.perHour.bytesDown)} B`,
      );
      results.push(result);
    }
    return { channels: results, loadAvg: { before: runLoadBefore, after: machineInfo().loadAvg } };
  } finally {
    await stopRun();
  }
}

function mapTotals(t: Totals, digits: number): Totals {
  return { msgsUp: round(t.msgsUp, digits), msgsDown: round(t.msgsDown, digits), bytesUp: round(t.bytesUp, digits), bytesDown: round(t.bytesDown, digits) };
}

function relative(m: Move): Move {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) {
    if (typeof v === 'number' && k !== 'index' && k !== 'toBrokerId' && k !== 'sent' && k !== 'migrationId') out[k] = round(v - m.sent, 2);
    else out[k] = v;
  }
  return out as unknown as Move;
}

const fmtNum = (x: number): string => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '–');
const fmtPair = (up: number, down: number): string => `${fmtNum(up)} / ${fmtNum(down)}`;

// --- main -----------------------------------------------------------------------------------------------------

const machineBefore = machineInfo();
const startedAt = new Date().toISOString();
const runs: Array<{ run: number; loadAvg: { before: number[]; after: number[] }; channels: ChannelResult[] }> = [];
try {
  for (let run = 1; run <= opts.runs; run++) {
    const r = await runOnce(run);
    runs.push({ run, ...r });
    log(`[run ${run}] load average ${r.loadAvg.before.join(' ')} → ${r.loadAvg.after.join(' ')}`);
  }
} finally {
  await cleanupAll();
}
const machineAfter = machineInfo();

const summary = opts.channels.map((channel) => {
  const same = runs.map((r) => r.channels.find((c) => c.channel === channel)!);
  const m = (f: (x: ChannelResult) => number, d = 1): number => round(median(same.map(f)), d);
  const t = (f: (x: ChannelResult) => Totals, d = 0): Totals => ({
    msgsUp: m((x) => f(x).msgsUp, d === 0 ? 1 : d),
    msgsDown: m((x) => f(x).msgsDown, d === 0 ? 1 : d),
    bytesUp: m((x) => f(x).bytesUp, d),
    bytesDown: m((x) => f(x).bytesDown, d),
  });
  return {
    channel,
    moves: m((x) => x.moves),
    failuresTotal: same.reduce((n, x) => n + x.failures, 0),
    latency: { p50: m((x) => x.latency.p50, 2), p90: m((x) => x.latency.p90, 2), p99: m((x) => x.latency.p99, 2), max: m((x) => x.latency.max, 2) },
    putToConnectingMs: m((x) => x.putToConnectingMs, 2),
    connectingToSwitchingMs: m((x) => x.connectingToSwitchingMs, 2),
    perMove: t((x) => x.perMove.totals),
    perMoveMqtt: t((x) => totals({ mqtt: x.perMove.mqtt, http: scale(x.perMove.http, 0) })),
    perMoveHttp: t((x) => totals({ mqtt: scale(x.perMove.mqtt, 0), http: x.perMove.http })),
    idlePerHour: t((x) => x.idle.perHour),
    idleMqttPerHour: t((x) => totals({ mqtt: scale(x.idle.mqtt, 3600 / x.idle.windowS), http: scale(x.idle.http, 0) })),
    idleHttpPerHour: t((x) => totals({ mqtt: scale(x.idle.mqtt, 0), http: scale(x.idle.http, 3600 / x.idle.windowS) })),
    /** One idle HTTP exchange (request + response), bytes up/down: the plain poll's 304. */
    httpExchange: {
      requests: m((x) => x.idle.http.up.messages),
      bytesUp: m((x) => (x.idle.http.up.messages > 0 ? x.idle.http.up.bytes / x.idle.http.up.messages : Number.NaN)),
      bytesDown: m((x) => (x.idle.http.down.messages > 0 ? x.idle.http.down.bytes / x.idle.http.down.messages : Number.NaN)),
    },
    cpu: Object.fromEntries(Object.keys(same[0]!.cpu).map((k) => [k, m((x) => x.cpu[k]!)])),
  };
});

// The 60 s plain poll, derived: the wait for the next poll is the residual of a renewal process whose interval is
// uniform in [0.5 I, 1.5 I] (± 50 % jitter): P(wait ≤ w) = w/I below 0.5 I, 1 − (1.5 I − w)² / (2 I²) above —
// p50 = 0.5 I, p99 = (1.5 − √0.02) I ≈ 1.359 I, mean = (13/24) I ≈ 0.542 I. Plus the move itself once the device knows
// (measured: the poll row's connecting → switching).
const pollRow = summary.find((s) => s.channel === 'poll');
const slow = pollRow
  ? (() => {
      const I = SLOW_POLL_S * 1000;
      const moveMs = pollRow.connectingToSwitchingMs;
      const pollsPerHour = 3600 / SLOW_POLL_S;
      return {
        channel: `poll ${SLOW_POLL_S} s (derived)`,
        latency: { p50: round(0.5 * I + moveMs, 0), p99: round((1.5 - Math.sqrt(0.02)) * I + moveMs, 0), mean: round((13 / 24) * I + moveMs, 0) },
        perMove: pollRow.perMove,
        idlePerHour: {
          msgsUp: round(pollRow.idleMqttPerHour.msgsUp + pollsPerHour, 1),
          msgsDown: round(pollRow.idleMqttPerHour.msgsDown + pollsPerHour, 1),
          bytesUp: round(pollRow.idleMqttPerHour.bytesUp + pollsPerHour * pollRow.httpExchange.bytesUp, 0),
          bytesDown: round(pollRow.idleMqttPerHour.bytesDown + pollsPerHour * pollRow.httpExchange.bytesDown, 0),
        },
        note: `latency: the wait for the next poll (interval ${SLOW_POLL_S} s ± 50 %: p50 ${0.5 * SLOW_POLL_S} s, p99 ${round((1.5 - Math.sqrt(0.02)) * SLOW_POLL_S, 1)} s, mean ${round((13 / 24) * SLOW_POLL_S, 1)} s) + the measured move once known (${moveMs} ms); per move: as measured at ${opts.pollIntervalMs} ms; idle: the poll device's measured MQTT keep-alives + ${pollsPerHour} polls/h × one measured 304 exchange (${round(pollRow.httpExchange.bytesUp, 0)} / ${round(pollRow.httpExchange.bytesDown, 0)} B)`,
      };
    })()
  : null;

const label = (c: Channel): string =>
  c === 'poll' ? `poll ${opts.pollIntervalMs >= 1000 ? `${opts.pollIntervalMs / 1000} s` : `${opts.pollIntervalMs} ms`}` : c === 'long-poll' ? `long-poll ${opts.longPollS} s` : c;
const rows: Array<Array<string | number>> = summary.map((s) => [
  label(s.channel),
  s.moves,
  s.latency.p50,
  s.latency.p99,
  s.failuresTotal,
  fmtPair(s.perMove.msgsUp, s.perMove.msgsDown),
  fmtPair(s.perMove.bytesUp, s.perMove.bytesDown),
  fmtPair(s.idlePerHour.msgsUp, s.idlePerHour.msgsDown),
  fmtPair(s.idlePerHour.bytesUp, s.idlePerHour.bytesDown),
]);
if (slow) {
  rows.splice(summary.findIndex((s) => s.channel === 'poll') + 1, 0, [
    slow.channel,
    '–',
    `≈ ${fmtNum(slow.latency.p50)}`,
    `≈ ${fmtNum(slow.latency.p99)}`,
    '–',
    fmtPair(slow.perMove.msgsUp, slow.perMove.msgsDown),
    fmtPair(slow.perMove.bytesUp, slow.perMove.bytesDown),
    fmtPair(slow.idlePerHour.msgsUp, slow.idlePerHour.msgsDown),
    fmtPair(slow.idlePerHour.bytesUp, slow.idlePerHour.bytesDown),
  ]);
}
const table = markdownTable(['channel', 'moves', 'p50 ms', 'p99 ms', 'failures', 'msgs/move ↑/↓', 'bytes/move ↑/↓', 'msgs/idle h ↑/↓', 'bytes/idle h ↑/↓'], rows);
const detail = markdownTable(
  ['channel', 'PUT → knows (connecting) ms', 'knows → switched ms', 'MQTT msgs/move ↑/↓', 'MQTT B/move ↑/↓', 'HTTP msgs/move ↑/↓', 'HTTP B/move ↑/↓', 'MQTT B/idle h ↑/↓', 'HTTP B/idle h ↑/↓', 'cpu srv/agent/mosq/pg/bench/other %'],
  summary.map((s) => [
    label(s.channel),
    s.putToConnectingMs,
    s.connectingToSwitchingMs,
    fmtPair(s.perMoveMqtt.msgsUp, s.perMoveMqtt.msgsDown),
    fmtPair(s.perMoveMqtt.bytesUp, s.perMoveMqtt.bytesDown),
    fmtPair(s.perMoveHttp.msgsUp, s.perMoveHttp.msgsDown),
    fmtPair(s.perMoveHttp.bytesUp, s.perMoveHttp.bytesDown),
    fmtPair(s.idleMqttPerHour.bytesUp, s.idleMqttPerHour.bytesDown),
    fmtPair(s.idleHttpPerHour.bytesUp, s.idleHttpPerHour.bytesDown),
    `${s.cpu.server}/${s.cpu.agent}/${s.cpu.mosquitto}/${s.cpu.postgres}/${s.cpu.bench}/${s.cpu.otherOnMachine}`,
  ]),
);
const loads = runs.map((r) => `run ${r.run}: ${r.loadAvg.before.join(' ')} → ${r.loadAvg.after.join(' ')}`);

const file = await writeResult('channels', {
  bench: 'channels',
  startedAt,
  finishedAt: new Date().toISOString(),
  machine: { ...machineBefore, loadAvgBefore: machineBefore.loadAvg, loadAvgAfter: machineAfter.loadAvg },
  config: { ...opts, slowPollS: SLOW_POLL_S, mosquitto: { set_tcp_nodelay: true, persistence: false }, server: 'child process (switchyard serve), PostgreSQL, LOG_LEVEL warn', agent: 'child process (createAgent), heartbeat off, one channel' },
  notes: [
    'Latency: ms from the PUT being sent to the agent\'s migration:state → switching (new connection open and verified by a shadow get round trip through it, publishing switched), timestamped in the agent process and converted to the bench clock.',
    'Traffic is counted by TCP proxies in the bench: every MQTT packet and HTTP message of the device, each way, and the TCP payload bytes (no TCP/IP headers, no TLS). ↑ = device → broker/server, ↓ = to the device.',
    'Per move = (traffic over the measured moves + a quiet period) − idle rate × that time, ÷ moves: the cost of a move on top of idling. perMoveRaw keeps the undeducted figure.',
    `Idle: all devices at once for ${opts.idleS} s, heartbeat off, no moves; scaled to an hour. MQTT keep-alive 30 s.`,
    `Poll ${SLOW_POLL_S} s is derived, not run: ${slow?.note ?? 'poll not run'}.`,
    'The server\'s own MQTT connections also pass the proxies (brokers are registered at the proxy address) but are not counted; every channel pays the extra hop alike.',
  ],
  medians: summary,
  derived: slow,
  runs,
});

process.stdout.write(`\n## Channels (medians of ${opts.runs} run(s); ms from the PUT to the device on the new broker; traffic of the device)\n\n${table}\n\n`);
process.stdout.write(`### Detail\n\n${detail}\n\n`);
if (slow) process.stdout.write(`${slow.channel}: ${slow.note}\n`);
process.stdout.write(`load average before ${machineBefore.loadAvg.join(' ')}, after ${machineAfter.loadAvg.join(' ')} (${loads.join(' | ')})\n`);
process.stdout.write(`machine: ${machineBefore.cpus} × ${machineBefore.cpuModel}, Node ${machineBefore.node}\nwritten to ${file}\n`);
process.exit(0);
