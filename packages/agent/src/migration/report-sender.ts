/**
 * Sends the machine's `report` effects as `reported.mqtt` updates of the `device-state` shadow, through whichever
 * connection carries publishes now (the publish queue).
 *
 * - A first attempt's `migrating` report is held `migratingReportDelayMs` (default 250 ms) and dropped when a later
 *   report comes first: a move that switches sooner never sends it (the `connected` report says more), and the
 *   verification `get` through the new broker does not queue behind the durable write of a report nobody reads.
 * - A `connected` report for the broker the device is on, while processing a document that already says so, is
 *   skipped: every report bumps the shadow version, and a version bump is what re-delivers that assignment.
 * - The latest report is sent again, with backoff (≤ 8 times), while it goes unanswered or is refused for now (429
 *   from the device's limits, 500/503) — requests can go unanswered while another server instance takes a broker
 *   over, a device moved many times a second meets its rate limit, and the report is what completes a move.
 */
import type { Logger } from 'pino';
import type { JsonObject } from '@switchyard/protocol';
import type { Clock, TimerHandle } from '../clock.ts';
import type { PublishQueue } from '../publish-queue.ts';
import type { ShadowClient } from '../shadow/shadow-client.ts';
import type { ReportEffect } from './migration-types.ts';
import { reportedMqtt, reportsConnectedTo } from './report.ts';

export interface ReportSenderOptions {
  clock: Clock;
  log: Logger;
  shadow: ShadowClient;
  queue: PublishQueue;
  /** See the module comment; default 250, 0 = send at once. */
  migratingReportDelayMs?: number;
  /** Called when `effect` is published; the callback it returns (if any) runs once the publish is acknowledged. */
  sent(effect: ReportEffect): (() => void) | undefined;
  /** Whether a held `migrating` report is still true when its hold ends. */
  stillMoving(effect: ReportEffect): boolean;
  /**
   * `reported.mqtt` of the `get` answer being processed, only when that answer shows the device's last report
   * written after its assignment and no move had started (else undefined: a `connected` report always goes out).
   */
  documentReported(): JsonObject | undefined;
}

export class ReportSender {
  readonly #o: ReportSenderOptions;
  #stopped = false;
  /** The latest report sent; an unanswered report is re-sent only while it is still the latest. */
  #last: ReportEffect | null = null;
  #retries = 0;
  #retry: TimerHandle | null = null;
  #held: { effect: ReportEffect; timer: TimerHandle } | null = null;

  constructor(options: ReportSenderOptions) {
    this.#o = options;
  }

  report(effect: ReportEffect): void {
    if (this.#held !== null) {
      // A later report supersedes the held `migrating` one.
      this.#o.clock.clearTimeout(this.#held.timer);
      this.#held = null;
    }
    const delay = this.#o.migratingReportDelayMs ?? 250;
    if (effect.status === 'migrating' && effect.attempt === 0 && delay > 0 && !this.#stopped) {
      const held = {
        effect,
        timer: this.#o.clock.setTimeout(() => {
          if (this.#held !== held) return;
          this.#held = null;
          if (this.#o.stillMoving(effect)) this.#send(effect);
        }, delay),
      };
      this.#held = held;
      return;
    }
    this.#send(effect);
  }

  /** Cancels the held report and any retry; nothing is sent afterwards. */
  stop(): void {
    this.#stopped = true;
    if (this.#retry !== null) this.#o.clock.clearTimeout(this.#retry);
    this.#retry = null;
    if (this.#held !== null) this.#o.clock.clearTimeout(this.#held.timer);
    this.#held = null;
  }

  #send(effect: ReportEffect): void {
    const log = this.#o.log;
    if (effect.status === 'connected' && effect.previousBrokerId === undefined && reportsConnectedTo(this.#o.documentReported(), effect.broker)) {
      log.debug({ brokerId: effect.broker.brokerId, version: effect.assignmentVersion }, 'already reported connected here; not reporting again');
      return;
    }
    if (this.#last !== effect) {
      this.#last = effect;
      this.#retries = 0;
    }
    if (this.#retry !== null) this.#o.clock.clearTimeout(this.#retry);
    this.#retry = null;
    const queue = this.#o.queue;
    const { acked, reply } = this.#o.shadow.update((topic, payload) => queue.publish(topic, payload, { qos: 1 }), { reported: { mqtt: reportedMqtt(effect) } });
    const onAcked = this.#o.sent(effect);
    acked.then(
      () => onAcked?.(),
      (err: unknown) => log.warn({ err: message(err), status: effect.status }, 'report not sent; the next connect reports again'),
    );
    const again = (why: string, detail: Record<string, unknown>): void => {
      if (this.#stopped || this.#last !== effect || this.#retries >= 8) {
        log.warn({ ...detail, status: effect.status }, `${why}; not sent again`);
        return;
      }
      const delay = Math.min(30_000, 500 * 2 ** this.#retries) * (0.5 + Math.random() / 2);
      this.#retries += 1;
      log.info({ ...detail, status: effect.status, retryInMs: Math.round(delay) }, `${why}; sending it again`);
      this.#retry = this.#o.clock.setTimeout(() => {
        this.#retry = null;
        if (!this.#stopped && this.#last === effect) this.#send(effect);
      }, delay);
    };
    reply.then(
      (answer) => {
        if (answer.ok) return;
        const { code, message: text } = answer.error;
        // Refused for now (this device's rate or in-flight limit, a full queue, a failed database): the report is
        // what completes a move, so it is sent again. Anything else would be refused again the same way.
        if (RETRYABLE_CODES.has(code)) again('the server refused a report for now', { code, message: text });
        else log.warn({ code, message: text, status: effect.status }, 'the server rejected a report');
      },
      (err: unknown) => again('no answer to a report', { err: message(err) }),
    );
    log.info({ status: effect.status, brokerId: effect.broker.brokerId, targetBrokerId: effect.targetBrokerId, error: effect.error, version: effect.assignmentVersion }, 'reporting reported.mqtt');
  }
}

/** Shadow error codes that say "not now" rather than "not this": 429 (limits), 500 (database), 503. */
const RETRYABLE_CODES = new Set([429, 500, 503]);

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
