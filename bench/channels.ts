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
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { now, registerDevice, reportedOn, until, watchMigrations, type MigrationStatuses } from './lib/api.ts';
import { startAgentChild, type AgentChild } from './lib/agent-child.ts';
import { CHANNELS, SLOW_POLL_S, channelsReport, type Channel, type ChannelMove, type ChannelResult, type ChannelRun } from './lib/channels-report.ts';
import { fmtPair, mapTotals, roundStats, scale, scaleTraffic, totals, trafficDiff, type Traffic } from './lib/channels-traffic.ts';
import { cleanupAll, interrupted, runStops, stopOnSignals } from './lib/cleanup.ts';
import { benchArgs, int, log } from './lib/cli.ts';
import { diffStats, startCountingProxy, type CountingProxy } from './lib/counting-proxy.ts';
import type { AgentInit } from './lib/migration-agent.ts';
import { putMove, relative } from './lib/moves.ts';
import { cpuPercent, cpuSeconds, cpuSnapshot, treeCpuSeconds } from './lib/proc-cpu.ts';
import { machineInfo, writeResult } from './lib/results.ts';
import { benchTempDir, startStack } from './lib/stack.ts';
import { median, round, summarize } from './lib/stats.ts';

const args = await benchArgs(import.meta.url, {
  moves: { type: 'string', default: '30' },
  warmup: { type: 'string', default: '2' },
  settle: { type: 'string', default: '200' },
  idle: { type: 'string', default: '120' },
  runs: { type: 'string', default: '1' },
  timeout: { type: 'string', default: '20' },
  'poll-interval-ms': { type: 'string', default: '1000' },
  'long-poll-s': { type: 'string', default: '30' },
  only: { type: 'string', default: CHANNELS.join(',') },
});
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

stopOnSignals('the agents, proxies, server, Mosquitto and PostgreSQL');

// --- one run ------------------------------------------------------------------------------------------------------

async function runOnce(run: number): Promise<{ channels: ChannelResult[]; loadAvg: { before: number[]; after: number[] } }> {
  const stops = runStops();
  const runLoadBefore = machineInfo().loadAvg;
  try {
    const proxies: CountingProxy[] = [];
    const stack = await startStack(stops, {
      database: 'postgres',
      mosquittos: 2,
      dataDirPrefix: 'sy-bench-chan-',
      // Registered at the proxy's address: the device (and the server) reach the broker through it.
      brokerAddress: async (m) => {
        const p = await startCountingProxy({ protocol: 'mqtt', targetHost: m.host, targetPort: m.port });
        proxies.push(p);
        stops.track(() => p.close());
        return p;
      },
    });
    const { api, server, brokerIds, mosquittoPids, postmasterPid } = stack;
    const serverPort = Number(new URL(server.url).port);
    const statuses: MigrationStatuses = new Map();
    stops.track(await watchMigrations(server.url, statuses));

    // --- one device per channel -----------------------------------------------------------------------------
    interface Dev {
      channel: Channel;
      uuid: string;
      http: CountingProxy;
      agent: AgentChild;
      current: ChannelMove | null;
    }
    const devs: Dev[] = [];
    for (const channel of opts.channels) {
      const uuid = `bench-ch-${channel}-r${run}-${process.pid}`;
      const token = await registerDevice(api, uuid, brokerIds[0]!);
      const http = await startCountingProxy({ protocol: 'http', targetHost: '127.0.0.1', targetPort: serverPort });
      stops.track(() => http.close());
      const stateDir = await benchTempDir(stops, 'sy-bench-chan-agent-');
      const options: AgentInit['options'] =
        channel === 'poll'
          ? { channels: ['poll'], pollIntervalMs: opts.pollIntervalMs }
          : channel === 'long-poll'
            ? { channels: ['poll'], longPollS: opts.longPollS }
            : { channels: [channel] };
      const dev: Dev = { channel, uuid, http, agent: null as unknown as AgentChild, current: null };
      const init: AgentInit = { type: 'init', apiUrl: `http://${http.host}:${http.port}`, uuid, token, stateDir, options };
      dev.agent = await startAgentChild(
        init,
        (msg) => {
          const m = dev.current;
          if (!m || msg.type !== 'migration') return;
          const t = msg.t + dev.agent.offset;
          if (msg.to === 'connecting' && msg.targetBrokerId === m.toBrokerId) m.connecting ??= t;
          else if (msg.to === 'switching' && msg.targetBrokerId === m.toBrokerId) m.switching ??= t;
          else if (msg.to === 'idle' && msg.from === 'switching' && msg.brokerId === m.toBrokerId) m.idle ??= t;
          else if (msg.to === 'backoff') log(`[run ${run}] ${channel}: attempt failed: ${msg.reason}`);
        },
        `agent ${uuid}`,
      );
      stops.add(dev.agent.stop);
      devs.push(dev);
    }
    for (const d of devs) {
      await until(() => reportedOn(api, d.uuid, brokerIds[0]!), 30_000, `the ${d.channel} agent to report connected on broker A`);
      await d.agent.calibrate();
      log(`[run ${run}] ${d.channel} agent ready; clock offset ${d.agent.offset.toFixed(3)} ms (ping RTT ${d.agent.offsetRttMs.toFixed(3)} ms)`);
    }
    const traffic = (d: Dev): Traffic => {
      const a = proxies[0]!.stats(d.uuid);
      const b = proxies[1]!.stats(d.uuid);
      const mqtt = diffStats(a, scale(b, -1)); // a + b
      return { mqtt, http: d.http.stats() };
    };

    // --- idle ----------------------------------------------------------------------------------------------------
    await sleep(3000); // the first long-poll and the boot-time requests are over
    log(`[run ${run}] idle: ${opts.idleS} s, ${devs.length} devices, no moves`);
    const idleStart = performance.now();
    const idleBefore = devs.map(traffic);
    await sleep(opts.idleS * 1000);
    const idleWindowS = (performance.now() - idleStart) / 1000;
    const idleTraffic = devs.map((d, i) => trafficDiff(traffic(d), idleBefore[i]!));
    const idleRate = idleTraffic.map((t) => scaleTraffic(t, 1 / idleWindowS));

    // --- moves, one channel after the other -----------------------------------------------------------------------
    const results: ChannelResult[] = [];
    for (const [di, d] of devs.entries()) {
      const putChannel = d.channel === 'long-poll' ? 'poll' : d.channel;
      const timeline: ChannelMove[] = [];
      const loadBefore = machineInfo().loadAvg;
      const snap = () =>
        cpuSnapshot({
          server: () => cpuSeconds(server.child.pid!),
          agent: () => cpuSeconds(d.agent.child.pid!),
          mosquitto: () => mosquittoPids.reduce((n, p) => n + cpuSeconds(p), 0),
          postgres: () => (postmasterPid === null ? 0 : treeCpuSeconds(postmasterPid)),
          bench: () => cpuSeconds(process.pid),
        });
      let before: ReturnType<typeof snap> | null = null;
      let trafficBefore: Traffic | null = null;
      for (let i = 0; i < opts.warmup + opts.moves; i++) {
        if (interrupted()) throw new Error('interrupted');
        if (i === opts.warmup) {
          before = snap();
          trafficBefore = traffic(d);
        }
        const target = brokerIds[(i + 1) % 2]!;
        const m: ChannelMove = { index: i, warmup: i < opts.warmup, toBrokerId: target, sent: now() };
        d.current = m;
        timeline.push(m);
        const isDone = (x: ChannelMove): boolean => x.switching !== undefined && x.idle !== undefined;
        const what = `${d.channel} move ${i} to broker ${target}`;
        await putMove({ api, uuid: d.uuid, body: { brokerId: target, channel: putChannel }, move: m, statuses, keep: [], isDone, timeoutMs: opts.timeoutS * 1000, what });
        d.current = null;
        if (m.failed) {
          log(`[run ${run}] ${d.channel} move ${i}: FAILED: ${m.failed}`);
          await until(() => reportedOn(api, d.uuid, target), opts.timeoutS * 1000, 'the device to settle').catch(() => undefined);
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
      const net = scaleTraffic(trafficDiff(moveTraffic, scaleTraffic(rate, windowS)), 1 / n);
      const raw = scaleTraffic(moveTraffic, 1 / n);
      const idlePerHour = scaleTraffic(rate, 3600);
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
        cpu: cpuPercent(before, after),
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
    await stops.stopAll();
  }
}

// --- main -----------------------------------------------------------------------------------------------------

const machineBefore = machineInfo();
const startedAt = new Date().toISOString();
const runs: ChannelRun[] = [];
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

const { summary, slow, table, detail, loads } = channelsReport(runs, opts);

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
