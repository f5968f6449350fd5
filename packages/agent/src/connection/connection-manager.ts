/**
 * The connection manager: owns the *current* connection — the one to the broker the device is on, which
 * carries its publishes — and keeps it up.
 *
 * States (one field, `#phase`):
 * - `stopped` — before `start` and after `stop`. Owns nothing.
 * - `connecting` — an `open` is in flight to `#target`. Entered from `start`, and from `waiting` when its timer
 *   fires. Left: CONNACK → `connected` (then `onConnected` runs); failure → `waiting`.
 * - `connected` — `#current` is up. Left: it closes → `waiting` (`onDisconnected` runs first); `adopt`
 *   replaces it (stays `connected`); `stop`.
 * - `waiting` — the reconnect timer runs: `nextDelay(attempt, backoff)` (exponential, capped, full jitter —
 *   mqtt.js's own reconnect is a fixed 1 s without jitter, which a fleet losing one broker turns into a
 *   thundering herd). Left when it fires → `connecting`; `adopt` → `connected`; `stop`.
 *
 * A broker move does not go through here until it is committed: the migration runner opens the new connection
 * itself and, at the switch, hands it over with `adopt(conn)`, which returns the previous connection for the
 * runner to close (make before break). From then on a loss of the new connection is reconnected here, to the
 * new broker.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { nextDelay, type BackoffPolicy } from '@switchyard/protocol';
import type { BrokerTarget } from '../broker-target.ts';
import type { Clock, TimerHandle } from '../clock.ts';
import type { MqttConnection } from './mqtt-connection.ts';

/** Default reconnect policy: first retry within 0.5 s, never more than 30 s apart. */
export const DEFAULT_RECONNECT_BACKOFF: BackoffPolicy = { baseMs: 500, maxMs: 30_000 };

/** Options of {@link ConnectionManager}. */
export interface ConnectionManagerOptions {
  /** Opens one connection (resolves on CONNACK). */
  open(target: BrokerTarget): Promise<MqttConnection>;
  /**
   * Runs on every connection the manager opens (first connect and each reconnect), before `connected` is
   * emitted: subscribe, switch the publish queue, presence, shadow `get`. A rejection drops the connection
   * and reconnects with backoff.
   */
  onConnected(conn: MqttConnection): Promise<void>;
  /** Runs when the current connection is lost (not on `adopt` or `stop`). */
  onDisconnected(conn: MqttConnection, reason: string): void;
  /** Reconnect backoff; default {@link DEFAULT_RECONNECT_BACKOFF}. */
  backoff?: BackoffPolicy;
  /** Random source for the jitter; default `Math.random`. */
  random?: () => number;
  clock: Clock;
  log: Logger;
}

/** Events of a {@link ConnectionManager}. */
export interface ConnectionManagerEvents {
  /** A connection became current (`adopted`: handed over by a broker move). */
  connected: [info: { brokerId: number; broker: string; connection: string; adopted: boolean }];
  /** The current connection was lost; a reconnect is scheduled in `retryInMs`. */
  disconnected: [info: { brokerId: number; reason: string; retryInMs: number }];
  /** An attempt to (re)connect failed; another is scheduled in `retryInMs`. */
  connectFailed: [info: { brokerId: number; reason: string; attempt: number; retryInMs: number }];
}

type Phase = 'stopped' | 'connecting' | 'connected' | 'waiting';

/** See the module comment. */
export class ConnectionManager extends EventEmitter<ConnectionManagerEvents> {
  readonly #o: ConnectionManagerOptions;
  readonly #log: Logger;
  #phase: Phase = 'stopped';
  #target: BrokerTarget | null = null;
  #current: MqttConnection | null = null;
  #attempt = 0;
  #timer: TimerHandle | null = null;
  /** Bumped by `adopt` and `stop`: an `open` started before is stale when it completes. */
  #generation = 0;

  constructor(options: ConnectionManagerOptions) {
    super();
    this.#o = options;
    this.#log = options.log.child({ component: 'connection-manager' });
  }

  /** The current connection, if up. */
  get current(): MqttConnection | null {
    return this.#current;
  }

  /** The broker the manager keeps a connection to (null before `start`). */
  get target(): BrokerTarget | null {
    return this.#target;
  }

  /** Starts connecting to `target` (returns at once; listen for `connected`). */
  start(target: BrokerTarget): void {
    if (this.#phase !== 'stopped') throw new Error('connection manager already started');
    this.#target = target;
    this.#attempt = 0;
    this.#connect();
  }

  /**
   * Makes `conn` (already connected, subscribed and verified by a broker move) the current connection, for
   * `conn.target`. Returns the previous connection, still open, for the caller to close.
   */
  adopt(conn: MqttConnection): MqttConnection | null {
    if (this.#phase === 'stopped') throw new Error('connection manager is stopped');
    const previous = this.#current;
    if (previous) previous.off('close', this.#onCurrentClose);
    this.#clearTimer();
    this.#generation++;
    this.#target = conn.target;
    this.#attempt = 0;
    this.#setCurrent(conn);
    this.emit('connected', { brokerId: conn.target.brokerId, broker: conn.target.url, connection: conn.id, adopted: true });
    if (!conn.isOpen) this.#lost(conn, conn.closeReason ?? 'closed before it was adopted');
    return previous;
  }

  /** Stops reconnecting and hands back the current connection (still open) for a clean close; idempotent. */
  stop(): MqttConnection | null {
    this.#phase = 'stopped';
    this.#generation++;
    this.#clearTimer();
    const conn = this.#current;
    this.#current = null;
    conn?.off('close', this.#onCurrentClose);
    return conn;
  }

  #connect(): void {
    const target = this.#target;
    if (!target) return;
    this.#phase = 'connecting';
    const generation = this.#generation;
    const attempt = this.#attempt;
    this.#o
      .open(target)
      .then(async (conn) => {
        if (generation !== this.#generation) {
          // Stopped or superseded by `adopt` while connecting: this connection is nobody's.
          await conn.end({ reason: 'superseded while connecting' });
          return;
        }
        this.#setCurrent(conn);
        try {
          await this.#o.onConnected(conn);
        } catch (err) {
          if (generation !== this.#generation || !conn.isOpen) return; // the close handler reconnects
          this.#log.warn({ err, brokerId: target.brokerId }, 'setting up the connection failed; dropping it and reconnecting');
          await conn.end({ clean: false, reason: `setup failed: ${(err as Error).message}` });
          return;
        }
        if (generation !== this.#generation || this.#current !== conn) return;
        this.#attempt = 0;
        this.emit('connected', { brokerId: target.brokerId, broker: target.url, connection: conn.id, adopted: false });
      })
      .catch((err: unknown) => {
        if (generation !== this.#generation) return;
        const reason = err instanceof Error ? err.message : String(err);
        const retryInMs = this.#schedule();
        this.#log.warn({ brokerId: target.brokerId, attempt, retryInMs, reason }, 'cannot connect to the broker; retrying with backoff');
        this.emit('connectFailed', { brokerId: target.brokerId, reason, attempt, retryInMs });
      });
  }

  #setCurrent(conn: MqttConnection): void {
    this.#current = conn;
    this.#phase = 'connected';
    conn.on('close', this.#onCurrentClose);
  }

  readonly #onCurrentClose = (): void => {
    const conn = this.#current;
    if (conn) this.#lost(conn, conn.closeReason ?? 'connection lost');
  };

  #lost(conn: MqttConnection, reason: string): void {
    if (this.#current !== conn || this.#phase === 'stopped') return;
    conn.off('close', this.#onCurrentClose);
    this.#current = null;
    this.#o.onDisconnected(conn, reason);
    const retryInMs = this.#schedule();
    this.#log.warn({ brokerId: conn.target.brokerId, reason, retryInMs }, 'connection to the broker lost; reconnecting');
    this.emit('disconnected', { brokerId: conn.target.brokerId, reason, retryInMs });
  }

  /** Schedules the next attempt; returns its delay. */
  #schedule(): number {
    const delay = nextDelay(this.#attempt, this.#o.backoff ?? DEFAULT_RECONNECT_BACKOFF, this.#o.random);
    this.#attempt++;
    this.#phase = 'waiting';
    this.#clearTimer();
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = null;
      if (this.#phase === 'waiting') this.#connect();
    }, delay);
    return delay;
  }

  #clearTimer(): void {
    if (this.#timer !== null) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }
}
