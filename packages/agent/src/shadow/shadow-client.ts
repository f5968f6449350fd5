/**
 * The device side of the `device-state` shadow (DESIGN §4, notes/assignment-contract.md).
 *
 * Requests carry a `clientToken` and their answer is matched by it: the server broadcasts `update/accepted` to
 * every broker the device may be on, so answers arrive on whichever connection, possibly twice, and answers to
 * other requests (or other tools of the same device) arrive too. A request may insist on being answered
 * through one connection (`via`): that is how a move proves the new broker delivers both ways.
 *
 * What the agent learns from the shadow:
 * - `get/accepted` → an `assignment` event when `state.desired.mqtt` is a valid broker (version = shadow
 *   version), or `noAssignment` when the shadow has none;
 * - `get/rejected` 404 → `noAssignment` (no shadow yet: stay where you are);
 * - `update/delta` whose `state.mqtt` touches the broker: a delta carries only the *differing leaves*. When it
 *   holds every key of a broker target (`brokerId`, `broker`, `protocol`, `host`, `port` — the server's
 *   assignment deltas always carry the whole `desired.mqtt`, docs/protocol.md) and they form a valid target, it
 *   is the whole assignment → `assignment` at once, with the delta's version (no round trip before the move);
 *   otherwise → `assignmentChanged`, which the agent answers with a `get` rather than patching a target together.
 * Payloads are untrusted: anything malformed is logged and ignored.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'pino';
import {
  BROKER_SHADOW,
  parseTopic,
  shadowTopic,
  type GetAcceptedMessage,
  type JsonObject,
  type ShadowErrorBody,
} from '@switchyard/protocol';
import { brokerTargetFromDesired, type BrokerTarget } from '../broker-target.ts';
import type { Clock, TimerHandle } from '../clock.ts';

/** Where a reply arrived (a connection's id and broker). */
export interface ReplySource {
  /** Connection id. */
  id: string;
  /** Broker of the connection. */
  brokerId: number;
}

/** The answer to a shadow request. */
export type ShadowReplyResult =
  | { ok: true; body: Record<string, unknown>; via: ReplySource }
  | { ok: false; error: ShadowErrorBody; via: ReplySource };

/** A shadow request did not get an answer in time. */
export class ShadowTimeoutError extends Error {
  override readonly name = 'ShadowTimeoutError';
  constructor(op: string, clientToken: string, timeoutMs: number, via?: string) {
    super(`no answer to shadow ${op} ${clientToken}${via ? ` through ${via}` : ''} within ${timeoutMs} ms`);
  }
}

/** Sends one request: publishes `payload` on `topic` somewhere; resolves on PUBACK. */
export type ShadowSend = (topic: string, payload: string) => Promise<void>;

/** Options of {@link ShadowClient}. */
export interface ShadowClientOptions {
  deviceUuid: string;
  clock: Clock;
  log: Logger;
  /** Default answer timeout, ms; default 10000. */
  timeoutMs?: number;
}

/** Events of {@link ShadowClient}. */
export interface ShadowClientEvents {
  /**
   * `get/accepted` named a broker in `desired.mqtt` (`reported` is `reported.mqtt`, if any, of that document), or
   * a delta held a whole broker target (`fromDelta`, `reported` undefined).
   */
  assignment: [
    info: {
      target: BrokerTarget;
      version: number;
      reported: JsonObject | undefined;
      via: ReplySource;
      fromDelta?: boolean;
      /**
       * `get` only: the document's metadata shows `reported.mqtt.status` written in a later second than
       * `desired.mqtt` — so the device's last report already followed this assignment and nobody awaits another.
       */
      reportedAfterAssignment?: boolean;
    },
  ];
  /** A `get` answer without an assignment (404, or no `desired.mqtt`). `version` 0 when there is no shadow. */
  noAssignment: [info: { version: number; reported: JsonObject | undefined; via: ReplySource }];
  /** A delta touched `desired.mqtt` but did not name a whole broker: do a `get`. */
  assignmentChanged: [info: { version: number; via: ReplySource }];
}

/** Keys of `desired.mqtt` that name the broker; a delta touching one of them is an assignment change. */
const TARGET_KEYS = ['brokerId', 'broker', 'protocol', 'host', 'port'];

interface PendingRequest {
  op: 'get' | 'update';
  via?: string;
  resolve(result: ShadowReplyResult): void;
  timer: TimerHandle;
}

/** See the module comment. */
export class ShadowClient extends EventEmitter<ShadowClientEvents> {
  readonly #o: ShadowClientOptions;
  readonly #log: Logger;
  readonly #pending = new Map<string, PendingRequest>();
  /** Per-process prefix of client tokens, so answers meant for another process of the device are not taken. */
  readonly #tokenPrefix = randomBytes(4).toString('hex');
  #seq = 0;

  constructor(options: ShadowClientOptions) {
    super();
    this.#o = options;
    this.#log = options.log.child({ component: 'shadow-client' });
  }

  /** Reply topics to subscribe to before any request (contract: "subscribe … BEFORE any request"). */
  replyTopics(): string[] {
    const u = this.#o.deviceUuid;
    return [
      shadowTopic(u, BROKER_SHADOW, 'get', 'accepted'),
      shadowTopic(u, BROKER_SHADOW, 'get', 'rejected'),
      shadowTopic(u, BROKER_SHADOW, 'update', 'delta'),
      shadowTopic(u, BROKER_SHADOW, 'update', 'accepted'),
      shadowTopic(u, BROKER_SHADOW, 'update', 'rejected'),
    ];
  }

  /** A fresh client token (≤ 64 bytes). */
  nextToken(tag = 'r'): string {
    return `${tag}-${this.#tokenPrefix}-${++this.#seq}`;
  }

  /**
   * Sends a `get` of `device-state` and resolves with its answer (accepted or rejected).
   * @param send how to publish it (a connection's `publish`)
   * @param options.via accept the answer only through this connection id
   * @param options.clientToken default a fresh one
   * @throws (rejects) ShadowTimeoutError, or the error of `send`
   */
  get(send: ShadowSend, options: { via?: string; clientToken?: string; timeoutMs?: number } = {}): Promise<ShadowReplyResult> {
    const clientToken = options.clientToken ?? this.nextToken('get');
    return this.#request('get', send, JSON.stringify({ clientToken }), clientToken, options);
  }

  /**
   * Sends an `update` of `device-state` with `state` (e.g. `{ reported: { mqtt } }`).
   * @returns `acked` settles on PUBACK (or the send's failure); `reply` on the answer (or ShadowTimeoutError)
   */
  update(send: ShadowSend, state: JsonObject, options: { timeoutMs?: number } = {}): { clientToken: string; acked: Promise<void>; reply: Promise<ShadowReplyResult> } {
    const clientToken = this.nextToken('upd');
    let acked: Promise<void> | undefined;
    const reply = this.#request('update', (topic, payload) => (acked = send(topic, payload)), JSON.stringify({ state, clientToken }), clientToken, options);
    // `send` threw synchronously: the reply promise carries that error; PUBACK will never come.
    return { clientToken, acked: acked ?? reply.then(() => undefined), reply };
  }

  /** Feeds a message received on any connection; ignores topics that are not `device-state` replies. */
  handleMessage(via: ReplySource, topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (!parsed || parsed.kind !== 'shadow' || parsed.shadowName !== BROKER_SHADOW || parsed.deviceUuid !== this.#o.deviceUuid) return;
    if (parsed.reply === undefined) return;
    let body: unknown;
    try {
      body = JSON.parse(payload.toString('utf8'));
    } catch {
      this.#log.warn({ topic, via: via.id, bytes: payload.length }, 'ignored a shadow reply that is not JSON');
      return;
    }
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      this.#log.warn({ topic, via: via.id }, 'ignored a shadow reply that is not a JSON object');
      return;
    }
    const msg = body as Record<string, unknown>;
    const token = typeof msg.clientToken === 'string' ? msg.clientToken : undefined;
    const { op, reply } = parsed;
    if (op === 'get' && reply === 'accepted') this.#onGetAccepted(msg as unknown as GetAcceptedMessage, via);
    else if (op === 'get' && reply === 'rejected' && msg.code === 404) this.emit('noAssignment', { version: 0, reported: undefined, via });
    else if (op === 'update' && reply === 'delta') this.#onDelta(msg, via);
    if ((reply === 'accepted' || reply === 'rejected') && token !== undefined) {
      const pending = this.#pending.get(token);
      if (!pending || pending.op !== op || (pending.via !== undefined && pending.via !== via.id)) return;
      this.#pending.delete(token);
      this.#o.clock.clearTimeout(pending.timer);
      if (reply === 'accepted') pending.resolve({ ok: true, body: msg, via });
      else pending.resolve({ ok: false, error: msg as unknown as ShadowErrorBody, via });
    }
  }

  /** Rejects every pending request (agent stopping). */
  close(reason = 'agent stopping'): void {
    for (const [token, p] of this.#pending) {
      this.#o.clock.clearTimeout(p.timer);
      p.resolve({ ok: false, error: { code: 500, message: reason, timestamp: 0, clientToken: token }, via: { id: 'none', brokerId: 0 } });
    }
    this.#pending.clear();
  }

  #onGetAccepted(msg: GetAcceptedMessage, via: ReplySource): void {
    const version = msg.version;
    if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 0) {
      this.#log.warn({ via: via.id, version }, 'ignored a get/accepted without a valid version');
      return;
    }
    const state = isObject(msg.state) ? msg.state : {};
    const reported = isObject(state.reported) && isObject(state.reported.mqtt) ? (state.reported.mqtt as JsonObject) : undefined;
    const desired = isObject(state.desired) ? state.desired.mqtt : undefined;
    if (desired === undefined || desired === null) {
      this.emit('noAssignment', { version, reported, via });
      return;
    }
    const target = brokerTargetFromDesired(desired);
    if (!target.ok) {
      // The server wrote something this agent cannot use: stay, and say why (the operator sees it in the logs).
      this.#log.error({ via: via.id, version, errors: target.errors }, 'ignored an invalid broker assignment in desired.mqtt');
      this.emit('noAssignment', { version, reported, via });
      return;
    }
    this.emit('assignment', { target: target.value, version, reported, via, reportedAfterAssignment: reportedAfterAssignment(msg) });
  }

  #onDelta(msg: Record<string, unknown>, via: ReplySource): void {
    const state = msg.state;
    if (!isObject(state)) return;
    const mqtt = state.mqtt;
    if (mqtt === undefined) return;
    const touches = !isObject(mqtt) || TARGET_KEYS.some((k) => Object.prototype.hasOwnProperty.call(mqtt, k));
    if (!touches) return; // keys this agent neither reads nor reports: a get would only loop
    const version = typeof msg.version === 'number' ? msg.version : 0;
    if (isObject(mqtt) && Number.isSafeInteger(version) && version > 0 && TARGET_KEYS.every((k) => Object.prototype.hasOwnProperty.call(mqtt, k))) {
      const target = brokerTargetFromDesired(mqtt);
      if (target.ok) {
        this.emit('assignment', { target: target.value, version, reported: undefined, via, fromDelta: true });
        return;
      }
    }
    this.emit('assignmentChanged', { version, via });
  }

  #request(
    op: 'get' | 'update',
    send: ShadowSend,
    payload: string,
    clientToken: string,
    options: { via?: string; timeoutMs?: number },
  ): Promise<ShadowReplyResult> {
    const timeoutMs = options.timeoutMs ?? this.#o.timeoutMs ?? 10_000;
    return new Promise<ShadowReplyResult>((resolve, reject) => {
      const timer = this.#o.clock.setTimeout(() => {
        if (this.#pending.get(clientToken)?.timer !== timer) return;
        this.#pending.delete(clientToken);
        reject(new ShadowTimeoutError(op, clientToken, timeoutMs, options.via));
      }, timeoutMs);
      const entry: PendingRequest = { op, resolve, timer };
      if (options.via !== undefined) entry.via = options.via;
      this.#pending.set(clientToken, entry);
      let sending: Promise<void>;
      try {
        sending = send(shadowTopic(this.#o.deviceUuid, BROKER_SHADOW, op), payload);
      } catch (err) {
        sending = Promise.reject(err);
      }
      sending.catch((err: unknown) => {
        if (this.#pending.get(clientToken) !== entry) return;
        this.#pending.delete(clientToken);
        this.#o.clock.clearTimeout(timer);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * True when the `get` answer's metadata shows `reported.mqtt.status` written in a strictly later second than
 * every leaf of `desired.mqtt` (AWS metadata timestamps are epoch seconds, set by the server's clock). Missing
 * metadata, or the same second, is false: the caller then reports again rather than risk leaving an assignment
 * unconfirmed (one extra report is the worst case).
 */
export function reportedAfterAssignment(msg: GetAcceptedMessage): boolean {
  const metadata = isObject(msg.metadata) ? msg.metadata : {};
  const desired = isObject(metadata.desired) && isObject(metadata.desired.mqtt) ? metadata.desired.mqtt : undefined;
  const reported = isObject(metadata.reported) && isObject(metadata.reported.mqtt) ? metadata.reported.mqtt : undefined;
  const reportedAt = reported && isObject(reported.status) ? reported.status.timestamp : undefined;
  if (!desired || typeof reportedAt !== 'number') return false;
  for (const leaf of Object.values(desired)) {
    const at = isObject(leaf) ? leaf.timestamp : undefined;
    if (typeof at !== 'number' || at >= reportedAt) return false;
  }
  return true;
}
