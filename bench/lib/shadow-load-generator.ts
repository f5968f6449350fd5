/**
 * Load generator for `bench/shadow-throughput.ts`, run as a child process (`fork`, IPC with advanced
 * serialization) so that mqtt.js — CPU-heavy — runs on its own event loop and its CPU is measured apart.
 *
 * Messages from the parent:
 *  - `init {url, connections: string[][], shadowName, qos, prefix}`: opens one MQTT connection per entry (its
 *    devices' uuids), subscribes each to its devices' `…/update/accepted` and `…/update/rejected`, answers `ready`.
 *  - `phase {mode:'open', rate} | {mode:'closed', inFlight}` with `warmupMs`, `measureMs`, `graceMs`: sends
 *    updates round-robin over the devices (each device always from its own connection, in order), open loop at
 *    `rate`/s or closed loop with `inFlight` outstanding; then stops sending and waits up to `graceMs` for every
 *    outstanding reply; answers `result`.
 *  - `stop`: closes the connections and exits.
 *
 * Latency = publish call → matching reply (by clientToken) arriving here; only updates sent in the measured
 * window count for latency. Any update of the phase (warm-up included) without a reply after the grace period is
 * counted as lost.
 */
import mqtt from 'mqtt';
import { performance } from 'node:perf_hooks';
import { MiniMqttClient } from './mini-mqtt.ts';

export interface InitMessage {
  type: 'init';
  url: string;
  connections: string[][];
  shadowName: string;
  qos: 0 | 1;
  /** Unique per generator: clientIds and clientTokens start with it. */
  prefix: string;
  /** `mini`: the bench's minimal MQTT client (cheap); `mqttjs`: mqtt.js, as real Node devices would use. */
  client: 'mini' | 'mqttjs';
}

/** What the generator needs of a connection, whichever client library carries it. */
interface Conn {
  publish(topic: string, payload: string, qos: 0 | 1): void;
  end(): Promise<void>;
}

async function openConnection(msg: InitMessage, i: number, filters: string[]): Promise<Conn> {
  const clientId = `${msg.prefix}-c${i}`;
  const onError = (err: Error): void => send({ type: 'error', message: `connection ${i}: ${err.message}` });
  const onClose = (): void => {
    if (!stopping) send({ type: 'error', message: `connection ${i} closed unexpectedly` });
  };
  if (msg.client === 'mini') {
    const u = new URL(msg.url);
    const c = await MiniMqttClient.connect(u.hostname, Number(u.port), clientId);
    c.onMessage(onMessage);
    c.onError = onError;
    c.onClose = onClose;
    await c.subscribe(filters, 1);
    return { publish: (t, p, q) => c.publish(t, p, q), end: () => c.end() };
  }
  const client = await mqtt.connectAsync(msg.url, { clientId, protocolVersion: 4, clean: true, reconnectPeriod: 0, keepalive: 60 });
  await client.subscribeAsync(Object.fromEntries(filters.map((f) => [f, { qos: 1 as const }])));
  client.on('message', onMessage);
  client.on('error', onError);
  client.on('close', onClose);
  return {
    publish: (t, p, q) => void client.publish(t, p, { qos: q }),
    end: () => client.endAsync(true).catch(() => undefined),
  };
}

export interface PhaseMessage {
  type: 'phase';
  mode: 'open' | 'closed';
  /** Open loop: updates per second offered by this generator. */
  rate: number;
  /** Closed loop: updates outstanding at once from this generator. */
  inFlight: number;
  warmupMs: number;
  /** Open loop: the rate rises linearly from 0 to `rate` over this first part of the warm-up (0 = a step). */
  rampMs: number;
  measureMs: number;
  graceMs: number;
}

export interface PhaseResult {
  type: 'result';
  /** Updates sent in the measured window. */
  sent: number;
  /** Replies (accepted + rejected) that arrived during the measured window, whenever sent. */
  repliedInWindow: number;
  /** Of the updates sent in the measured window: accepted, rejected (by error code). */
  accepted: number;
  rejected: number;
  rejectedCodes: Record<string, number>;
  /** Updates of the whole phase (warm-up included) without any reply after the grace period. */
  lost: number;
  /** Replies whose clientToken was not outstanding (duplicates or from an earlier phase). */
  unexpected: number;
  /** Latencies (ms) of the accepted updates sent in the measured window. */
  latencies: Float64Array;
  /** When each of `latencies` was sent: ms after the window opened (same order). */
  sentAtMs: Float64Array;
  windowMs: number;
  /** Open loop: the furthest the sender fell behind its schedule (ms); large values mean the generator is the limit. */
  maxScheduleLagMs: number;
}

type FromParent = InitMessage | PhaseMessage | { type: 'stop' };

const send = (msg: unknown): void => {
  process.send?.(msg);
};

let clients: Conn[] = [];
/** Device i → its connection and topics. */
const devices: Array<{ client: Conn; topic: string; uuid: string }> = [];
let init: InitMessage | null = null;

async function start(msg: InitMessage): Promise<void> {
  init = msg;
  const opened = await Promise.all(
    msg.connections.map(async (uuids, i) => {
      const base = (u: string): string => `iot/device/${u}/shadow/name/${msg.shadowName}/update`;
      const client = await openConnection(msg, i, uuids.flatMap((u) => [`${base(u)}/accepted`, `${base(u)}/rejected`]));
      return { client, uuids, base };
    }),
  );
  clients = opened.map((o) => o.client);
  // A connection's devices next to each other in the rotation: the sends of one tick to one connection leave in one
  // write (the client flushes per connection per turn), as a gateway carrying several devices would send them.
  // Interleaved across connections, every update was a write of its own (A/B, 2 runs each at 3,000 and 5,000/s: the
  // generators' CPU 34–42 % of a core grouped, 37–50 % interleaved).
  for (const o of opened) for (const u of o.uuids) devices.push({ client: o.client, topic: o.base(u), uuid: u });
  send({ type: 'ready', devices: devices.length, connections: clients.length });
}

// --- one phase -----------------------------------------------------------------------------------------------

/** Outstanding updates: seq → send time (ms, performance.now()). */
const pending = new Map<number, number>();
let seq = 0;
let deviceCursor = 0;
interface PhaseState {
  windowStart: number;
  windowEnd: number;
  firstMeasuredSeq: number;
  lastMeasuredSeq: number; // exclusive; Infinity while the window is open
  sent: number;
  repliedInWindow: number;
  accepted: number;
  rejected: number;
  rejectedCodes: Record<string, number>;
  unexpected: number;
  latencies: number[];
  sentAtMs: number[];
  onReply: (() => void) | null;
}
let phase: PhaseState | null = null;
let stopping = false;

function sendOne(): void {
  const d = devices[deviceCursor]!;
  deviceCursor = (deviceCursor + 1) % devices.length;
  const s = ++seq;
  const body = `{"state":{"reported":{"temp":${20 + (s % 100) / 10},"seq":${s},"ok":true}},"clientToken":"${init!.prefix}.${s}"}`;
  pending.set(s, performance.now());
  d.client.publish(d.topic, body, init!.qos);
}

const TOKEN_KEY = '"clientToken":"';

function onMessage(topic: string, payload: Buffer): void {
  const now = performance.now();
  const text = payload.toString('utf8');
  // Cheaper than JSON.parse of the whole reply: the generator must not be the bottleneck.
  const at = text.lastIndexOf(TOKEN_KEY);
  const p = phase;
  if (at < 0 || p === null) {
    if (p) p.unexpected += 1;
    return;
  }
  const start = at + TOKEN_KEY.length;
  const token = text.slice(start, text.indexOf('"', start));
  const dot = token.lastIndexOf('.');
  const s = Number(token.slice(dot + 1));
  const sentAt = pending.get(s);
  if (sentAt === undefined || token.slice(0, dot) !== init!.prefix) {
    p.unexpected += 1;
    return;
  }
  pending.delete(s);
  if (now >= p.windowStart && now < p.windowEnd) p.repliedInWindow += 1;
  const measured = s >= p.firstMeasuredSeq && s < p.lastMeasuredSeq;
  if (measured) {
    if (topic.endsWith('/accepted')) {
      p.accepted += 1;
      p.latencies.push(now - sentAt);
      p.sentAtMs.push(sentAt - p.windowStart);
    } else {
      p.rejected += 1;
      const code = /"code":(\d+)/.exec(text)?.[1] ?? 'unknown';
      p.rejectedCodes[code] = (p.rejectedCodes[code] ?? 0) + 1;
    }
  }
  p.onReply?.();
}

async function runPhase(msg: PhaseMessage): Promise<PhaseResult> {
  pending.clear();
  const t0 = performance.now();
  const p: PhaseState = (phase = {
    windowStart: t0 + msg.warmupMs,
    windowEnd: t0 + msg.warmupMs + msg.measureMs,
    firstMeasuredSeq: Infinity,
    lastMeasuredSeq: Infinity,
    sent: 0,
    repliedInWindow: 0,
    accepted: 0,
    rejected: 0,
    rejectedCodes: {},
    unexpected: 0,
    latencies: [],
    sentAtMs: [],
    onReply: null,
  });
  let maxLag = 0;
  let sending = true;

  const markWindow = (): void => {
    const now = performance.now();
    if (p.firstMeasuredSeq === Infinity && now >= p.windowStart) p.firstMeasuredSeq = seq + 1;
  };

  if (msg.mode === 'open') {
    // Seconds-at-full-rate worth of updates due `t` ms into the phase: a linear ramp, then the full rate.
    const ramp = Math.min(msg.rampMs, msg.warmupMs);
    const sentBy = (t: number): number => (t < ramp ? (t * t) / (2 * ramp) : t - ramp / 2);
    let done = 0;
    await new Promise<void>((resolve) => {
      const tick = (): void => {
        const now = performance.now();
        if (now >= p.windowEnd) {
          resolve();
          return;
        }
        markWindow();
        const due = Math.floor((sentBy(now - t0) * msg.rate) / 1000);
        if (due - done > 1) maxLag = Math.max(maxLag, ((due - done) * 1000) / msg.rate);
        // Bounded burst per tick so the event loop can still read replies.
        const burst = Math.min(due - done, 2000);
        for (let i = 0; i < burst; i++) sendOne();
        done += burst;
        setTimeout(tick, 1);
      };
      tick();
    });
  } else {
    let inFlight = 0;
    const refill = (): void => {
      if (!sending) return;
      const now = performance.now();
      if (now >= p.windowEnd) {
        sending = false;
        return;
      }
      markWindow();
      while (inFlight < msg.inFlight) {
        inFlight += 1;
        sendOne();
      }
    };
    p.onReply = () => {
      inFlight -= 1;
      refill();
    };
    refill();
    // Replies drive the loop; this timer only ends the window (and opens it if nothing came back).
    await new Promise<void>((resolve) => {
      const check = (): void => {
        markWindow();
        if (performance.now() >= p.windowEnd) {
          sending = false;
          resolve();
        } else setTimeout(check, 5);
      };
      check();
    });
    p.onReply = null;
  }
  sending = false;
  p.lastMeasuredSeq = seq + 1;
  if (p.firstMeasuredSeq === Infinity) p.firstMeasuredSeq = p.lastMeasuredSeq;
  p.sent = p.lastMeasuredSeq - p.firstMeasuredSeq;

  // Grace: wait for every outstanding reply of this phase, or give up and count the rest as lost.
  const graceEnd = performance.now() + msg.graceMs;
  while (pending.size > 0 && performance.now() < graceEnd) await new Promise((r) => setTimeout(r, 20));
  const lost = pending.size;
  pending.clear();
  phase = null;
  return {
    type: 'result',
    sent: p.sent,
    repliedInWindow: p.repliedInWindow,
    accepted: p.accepted,
    rejected: p.rejected,
    rejectedCodes: p.rejectedCodes,
    lost,
    unexpected: p.unexpected,
    latencies: Float64Array.from(p.latencies),
    sentAtMs: Float64Array.from(p.sentAtMs),
    windowMs: msg.measureMs,
    maxScheduleLagMs: maxLag,
  };
}

async function stop(): Promise<void> {
  stopping = true;
  await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  process.exit(0);
}

process.on('message', (raw) => {
  const msg = raw as FromParent;
  const fail = (err: unknown): void => send({ type: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err), fatal: true });
  if (msg.type === 'init') start(msg).catch(fail);
  else if (msg.type === 'phase') runPhase(msg).then(send, fail);
  else if (msg.type === 'stop') void stop();
});
// The parent went away (crash, Ctrl-C): never outlive it.
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => undefined); // the parent decides when we stop (it forwards nothing; Ctrl-C reaches the group)
