/**
 * Types and summary of bench/channels.ts: one result per channel and run, medians over the runs, the plain poll at
 * 60 s derived from the measured one, and the two Markdown tables.
 */
import type { TrafficStats } from './counting-proxy.ts';
import type { MoveTimes } from './moves.ts';
import { fmtNum, fmtPair, scale, totals, type Totals } from './channels-traffic.ts';
import { median, round, type LatencySummary } from './stats.ts';
import { markdownTable } from './table.ts';

export const CHANNELS = ['shadow', 'command', 'job', 'poll', 'long-poll'] as const;
export type Channel = (typeof CHANNELS)[number];

/** The plain-poll interval the 60 s row is derived for. */
export const SLOW_POLL_S = 60;

/** A move's timestamps: the agent's `→ connecting`, `→ switching` and `→ idle` besides the common ones. */
export interface ChannelMove extends MoveTimes {
  connecting?: number;
  switching?: number;
  idle?: number;
}

export interface ChannelResult {
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
  timeline: ChannelMove[];
}

export interface ChannelRun {
  run: number;
  loadAvg: { before: number[]; after: number[] };
  channels: ChannelResult[];
}

/** Medians per channel, the derived 60 s poll row (when `poll` ran), the tables and one load-average line per run. */
export function channelsReport(runs: ChannelRun[], opts: { channels: Channel[]; pollIntervalMs: number; longPollS: number }) {
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
  return { summary, slow, table, detail, loads };
}
