/**
 * The agent's `device-state` `get` through its current connection: asked on every connect, on a delta that
 * touches the broker without naming it whole, and on a command's refresh. Its answer arrives as a shadow-client
 * event, so this only sends — coalesced (one `get` in flight per live connection; another asked meanwhile is sent
 * once it is answered) and retried with backoff when nobody answers (the answer may carry an assignment).
 */
import type { Logger } from 'pino';
import { nextDelay } from '@switchyard/protocol';
import type { Clock, TimerHandle } from '../clock.ts';
import type { MqttConnection } from '../connection/mqtt-connection.ts';
import type { ShadowClient } from './shadow-client.ts';

export interface ShadowGetterOptions {
  shadow: ShadowClient;
  clock: Clock;
  log: Logger;
  /** The connection publishing goes through now, if any. */
  current(): MqttConnection | null;
  /**
   * Where the agent's life stands: retries and coalesced `get`s only while `running`; answers are no longer looked
   * at once it is `stopping` or `stopped`.
   */
  lifecycle(): 'stopped' | 'starting' | 'running' | 'stopping';
}

export class ShadowGetter {
  readonly #o: ShadowGetterOptions;
  #inFlight: MqttConnection | null = null;
  #again = false;
  #failures = 0;
  #retry: TimerHandle | null = null;

  constructor(o: ShadowGetterOptions) {
    this.#o = o;
  }

  #running(): boolean {
    return this.#o.lifecycle() === 'running';
  }

  #stopping(): boolean {
    const l = this.#o.lifecycle();
    return l === 'stopping' || l === 'stopped';
  }

  /** Sends a `get` now, or once the one in flight on this connection is answered. */
  request(reason: string): void {
    const conn = this.#o.current();
    if (!conn) return; // the next connect does a get anyway
    // Coalesce with a get in flight on this same live connection; one sent on a connection since lost may
    // never be answered (its answer went to a session that no longer exists), so it does not count.
    if (this.#inFlight === conn && conn.isOpen) {
      this.#again = true;
      return;
    }
    this.#inFlight = conn;
    this.#o.shadow
      .get((topic, payload) => conn.publish(topic, payload, { qos: 1 }))
      .then(
        (answer) => {
          if (this.#stopping()) return;
          this.#failures = 0;
          if (!answer.ok && answer.error.code !== 404) this.#o.log.warn({ code: answer.error.code, message: answer.error.message, reason }, 'shadow get rejected');
        },
        (err: unknown) => {
          if (!this.#running() || this.#o.current() !== conn) return; // a new connection asks again
          // Unanswered (e.g. while another server instance takes the broker over): ask again with backoff.
          const delay = nextDelay(Math.min(this.#failures, 10), { baseMs: 1000, maxMs: 30_000 });
          this.#failures += 1;
          this.#o.log.warn({ err: (err as Error).message, reason, retryInMs: delay }, 'shadow get failed; asking again');
          this.cancel();
          this.#retry = this.#o.clock.setTimeout(() => {
            this.#retry = null;
            if (this.#running()) this.request('retry');
          }, delay);
        },
      )
      .finally(() => {
        if (this.#inFlight !== conn) return; // superseded by a get on a newer connection
        this.#inFlight = null;
        if (this.#again && this.#running()) {
          this.#again = false;
          this.request('coalesced');
        }
      });
  }

  /** Cancels a pending retry (agent stopping). */
  cancel(): void {
    if (this.#retry !== null) this.#o.clock.clearTimeout(this.#retry);
    this.#retry = null;
  }
}
