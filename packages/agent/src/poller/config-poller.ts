/**
 * The config poller: the HTTP channel (`poll`) and the rescue of a device whose broker died.
 *
 * It asks `GET /api/v1/devices/:uuid/config` with `If-None-Match` (the last ETag) and feeds a config that names
 * another broker than the one the device is on to the migration machine, as an assignment `{target, version}`
 * (source `poll`; the machine deduplicates by version across channels). A config naming the current broker is not
 * fed: the device's own reports bump the shadow version, and "stay here" at a newer version would make it report
 * again — a loop.
 *
 * States (one field, `#mode`):
 * - `off` — neither the `poll` channel nor the fallback wants requests. No timer.
 * - `polling` — a request is in flight, or the timer for the next one runs. Entered by `start()` with the `poll`
 *   channel enabled, or by {@link ConfigPoller.mqttDown} when the MQTT connection has been down longer than
 *   `fallbackAfterMs` (whatever the channels). Left by `stop()`, or by {@link ConfigPoller.mqttUp} when only the
 *   fallback wanted it.
 * Timers (at most one at a time, `#timer`): the fallback timer (`fallbackAfterMs` after the connection went down)
 * and the next-request timer: `pollIntervalMs` ± 50 % jitter after a plain poll; at once after a long-poll
 * (`?wait=longPollS`, at most 60 s — the server's limit) that came back after waiting; after a failure,
 * `nextDelay(failures)` capped at the poll interval.
 *
 * The rescue: with the old broker dead there is nothing to make "before break". The assignment goes through the
 * same machine: it opens the new connection while the connection manager keeps retrying the dead one, proves the
 * round trip, then `adopt`s the new connection (which cancels those retries); reports queued while the device was
 * cut off (`migrating`) go out through the new broker, followed by `connected`, which completes the server's row.
 */
import type { Logger } from 'pino';
import { nextDelay } from '@switchyard/protocol';
import { sameBroker, type BrokerTarget } from '../broker-target.ts';
import type { Clock, TimerHandle } from '../clock.ts';
import type { MigrationState } from '../migration/migration-types.ts';
import { ConfigFetchError, fetchDeviceConfig } from './config-client.ts';

/** The server's longest `?wait`, seconds. */
export const MAX_LONG_POLL_S = 60;

/** Options of {@link ConfigPoller}. */
export interface ConfigPollerOptions {
  apiUrl: string;
  deviceUuid: string;
  deviceToken: string;
  /** True when the `poll` channel is enabled: poll all the time. Otherwise only as the MQTT fallback. */
  pollChannel: boolean;
  /** Plain polling period, ms (± 50 % jitter). */
  pollIntervalMs: number;
  /** Long-poll wait, s; 0 = plain polling. Capped at {@link MAX_LONG_POLL_S}. */
  longPollS: number;
  /** MQTT down this long (ms) → poll. */
  fallbackAfterMs: number;
  /** Feeds an assignment to the migration machine. */
  assign(assignment: { target: BrokerTarget; version: number }): void;
  /** The migration machine's state now (null before boot). */
  state(): MigrationState | null;
  clock: Clock;
  log: Logger;
  fetch?: typeof fetch;
  /** Uniform random in [0, 1) for the jitter; default `Math.random`. */
  random?: () => number;
}

/** See the module comment. */
export class ConfigPoller {
  readonly #o: ConfigPollerOptions;
  readonly #log: Logger;
  #running = false;
  #fallback = false;
  #timer: TimerHandle | null = null;
  #inFlight: AbortController | null = null;
  #etag: string | undefined;
  #failures = 0;

  constructor(options: ConfigPollerOptions) {
    this.#o = options;
    this.#log = options.log.child({ component: 'config-poller' });
  }

  /**
   * Starts the `poll` channel (if enabled): a long-poll at once, a plain poll after the first jittered interval (the
   * shadow `get` after connecting already tells a booting device its assignment). Otherwise waits for {@link mqttDown}.
   */
  start(): void {
    this.#running = true;
    if (this.#o.pollChannel) this.#schedule(this.#o.longPollS > 0 ? 0 : this.#jittered());
  }

  /** Whether requests are being made (channel or fallback). */
  get active(): boolean {
    return this.#running && (this.#o.pollChannel || this.#fallback);
  }

  /** The MQTT connection is down (called on every loss and failed reconnect): arm the fallback timer once. */
  mqttDown(): void {
    if (!this.#running || this.#fallback || this.#o.pollChannel || this.#timer !== null) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = null;
      if (!this.#running) return;
      this.#fallback = true;
      this.#log.warn({ fallbackAfterMs: this.#o.fallbackAfterMs }, 'MQTT down too long; polling the config over HTTP');
      this.#poll();
    }, this.#o.fallbackAfterMs);
  }

  /** The MQTT connection is up again: the fallback (if that is all that polls) ends. */
  mqttUp(): void {
    if (this.#o.pollChannel) return;
    if (this.#fallback) this.#log.info('MQTT connected again; config polling stops');
    this.#fallback = false;
    this.#clearTimer();
    this.#inFlight?.abort();
  }

  /** Stops: cancels the timer and any request in flight. */
  stop(): void {
    this.#running = false;
    this.#fallback = false;
    this.#clearTimer();
    this.#inFlight?.abort();
  }

  #schedule(ms: number): void {
    this.#clearTimer();
    if (!this.active) return;
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = null;
      this.#poll();
    }, ms);
  }

  #clearTimer(): void {
    if (this.#timer !== null) this.#o.clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #jittered(): number {
    const r = this.#o.random ?? Math.random;
    return Math.round(this.#o.pollIntervalMs * (0.5 + r()));
  }

  #poll(): void {
    if (!this.active || this.#inFlight) return;
    const waitS = this.#etag ? Math.min(this.#o.longPollS, MAX_LONG_POLL_S) : 0;
    const abort = new AbortController();
    this.#inFlight = abort;
    const started = this.#o.clock.now();
    fetchDeviceConfig({
      apiUrl: this.#o.apiUrl,
      deviceUuid: this.#o.deviceUuid,
      deviceToken: this.#o.deviceToken,
      ...(this.#etag ? { etag: this.#etag } : {}),
      ...(waitS > 0 ? { waitS } : {}),
      ...(this.#o.fetch ? { fetch: this.#o.fetch } : {}),
      signal: AbortSignal.any([abort.signal, AbortSignal.timeout((waitS + 15) * 1000)]),
    }).then(
      (res) => {
        this.#failures = 0;
        if (res.etag) this.#etag = res.etag;
        if (res.status === 'ok') this.#apply(res.mqtt, res.version);
        // Long-polling: a new config (or the first answer, which had no ETag to wait on) or a long-poll that really
        // waited goes again at once. A plain poll — or a 304 that came back early (a server that does not hold
        // long-polls, or one shutting down) — waits the jittered interval.
        const waited = this.#o.clock.now() - started >= (waitS * 1000) / 2;
        const again = this.#o.longPollS > 0 && (res.status === 'ok' || waitS === 0 || waited) ? 0 : this.#jittered();
        this.#finish(abort, again);
      },
      (err: unknown) => {
        if (abort.signal.aborted) return this.#finish(abort, null);
        const delay = Math.min(nextDelay(this.#failures++, { baseMs: 1000, maxMs: 30_000 }), this.#o.pollIntervalMs);
        const permanent = err instanceof ConfigFetchError && err.permanent;
        this.#log[permanent ? 'error' : 'warn']({ err: (err as Error).message, retryInMs: delay }, 'config poll failed; retrying');
        this.#finish(abort, delay);
      },
    );
  }

  #finish(abort: AbortController, nextInMs: number | null): void {
    if (this.#inFlight === abort) this.#inFlight = null;
    if (nextInMs !== null) this.#schedule(nextInMs);
  }

  /** Feeds a config naming another broker than the one the device is on (or is moving to). */
  #apply(target: BrokerTarget | null, version: number): void {
    const s = this.#o.state();
    if (!target || !s) return;
    const heading = s.name === 'idle' ? s.current : s.target;
    if (sameBroker(target, heading)) {
      this.#log.debug({ brokerId: target.brokerId, version }, 'the config names the broker the device is on or moving to; nothing to do');
      return;
    }
    this.#log.info({ brokerId: target.brokerId, version }, 'the config names another broker; moving');
    this.#o.assign({ target, version });
  }
}
