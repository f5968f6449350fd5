/**
 * The effect runner of the broker migration: the one place that turns the pure machine's effects
 * (`migration-machine.ts`) into sockets, timers, shadow requests and file writes, and turns what happens on
 * them back into machine events.
 *
 * Events are processed one at a time, in arrival order: `transition(state, event)`, then every effect in order,
 * each awaited — except a `persist` that only records a move in progress (`pending`), which is written in the
 * background (saves stay in order; see the `persist` case). Effects return quickly — opening a connection,
 * subscribing and the verification `get` run in the background and come back as events (`connected`,
 * `connectFailed`, `verified`, `verifyFailed`, `newConnectionLost`), so the machine's timers start when it says and bound everything.
 *
 * Connections (`move-connections.ts`): the old one is the {@link ConnectionManager}'s current connection; the runner opens the new one
 * per attempt (`openConnection`), publishes presence on it, and at `switchPublishing` hands it to the manager
 * (`adopt`), which returns the old one. `closeConnection old` then publishes `{state: "offline", brokerId: old}`
 * on the old connection and closes it cleanly (a clean DISCONNECT suppresses the will, so the server would
 * otherwise never learn the device left that broker).
 *
 * `switched` is dispatched once the `connected` report of the switch is acknowledged (PUBACK) through the new
 * connection; timer `switch` covers a report that never is.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { JsonObject } from '@switchyard/protocol';
import type { BrokerTarget } from '../broker-target.ts';
import type { Clock, TimerHandle } from '../clock.ts';
import type { ConnectionManager } from '../connection/connection-manager.ts';
import type { MqttConnection } from '../connection/mqtt-connection.ts';
import type { PublishQueue } from '../publish-queue.ts';
import type { ShadowClient } from '../shadow/shadow-client.ts';
import type { StateStore } from '../state/state-store.ts';
import type { MigrationMachine } from './migration-machine.ts';
import {
  TIMER_EVENTS,
  type MigrationEffect,
  type MigrationEvent,
  type MigrationState,
  type MigrationStateEvent,
  type TimerName,
} from './migration-types.ts';
import { reportsConnectedTo } from './report.ts';
import { ReportSender } from './report-sender.ts';
import { MoveConnections } from './move-connections.ts';

export { withTimeout } from './with-timeout.ts';

/** A machine event without its time: the runner stamps `at` from its clock. */
export type RunnerEvent = MigrationEvent extends infer E ? (E extends MigrationEvent ? Omit<E, 'at'> : never) : never;

/** Options of {@link MigrationRunner}. */
export interface MigrationRunnerOptions {
  deviceUuid: string;
  machine: MigrationMachine;
  /** The state to start in (`machine.initialState(persisted)`). */
  initialState: MigrationState;
  /** Opens a connection to a broker (resolves on CONNACK); the connection is already wired to the shadow client. */
  open(target: BrokerTarget): Promise<MqttConnection>;
  manager: ConnectionManager;
  shadow: ShadowClient;
  queue: PublishQueue;
  store: StateStore;
  clock: Clock;
  log: Logger;
  /** Bound of a presence publish before a close, ms; default 2000. */
  closeTimeoutMs?: number;
  /**
   * How long the `migrating` report of a move's first attempt is held back, ms; default 250 (0 = sent at once).
   * A move that switches sooner never sends it: the `connected` report says more, and the verification `get`
   * through the new broker does not queue behind the durable write of a report nobody will read.
   */
  migratingReportDelayMs?: number;
}

/** Events of {@link MigrationRunner}. */
export interface MigrationRunnerEvents {
  /** Every transition (STYLE: "every transition emits a typed event"). */
  'migration:state': [event: MigrationStateEvent];
}

/** What a `get` answer told the agent (see {@link MigrationRunner.shadowDocument}). */
export interface ShadowDocumentInfo {
  /** `desired.mqtt` as a broker, with the shadow version, when the shadow names one. */
  assignment?: { target: BrokerTarget; version: number };
  /** `reported.mqtt` of the document, if any. */
  reported: JsonObject | undefined;
  /** The document's metadata shows the last report written after `desired.mqtt` (see the shadow client). */
  reportedAfterAssignment?: boolean;
}

type Work = { kind: 'event'; event: MigrationEvent } | { kind: 'document'; info: ShadowDocumentInfo; at: number };

/** See the module comment. */
export class MigrationRunner extends EventEmitter<MigrationRunnerEvents> {
  readonly #o: MigrationRunnerOptions;
  readonly #log: Logger;
  #state: MigrationState;
  readonly #work: Work[] = [];
  #draining: Promise<void> | null = null;
  readonly #timers = new Map<TimerName, TimerHandle>();
  /** The connections of the attempts (new ones, and old ones after a switch). */
  readonly #conns: MoveConnections;
  /** The attempt whose switch is in progress (its `connected` report ends it). */
  #switching: string | null = null;
  /** Work started in the background (closing connections, pending-move saves): awaited by `stop`. */
  readonly #inBackground = new Set<Promise<unknown>>();
  #stopped = false;
  readonly #reports: ReportSender;
  /** While a `get` answer is processed: its `reported.mqtt`, to skip a `connected` report it already shows. */
  #documentReported: JsonObject | undefined;

  constructor(options: MigrationRunnerOptions) {
    super();
    this.#o = options;
    this.#log = options.log.child({ component: 'migration-runner' });
    this.#state = options.initialState;
    this.#conns = new MoveConnections({
      deviceUuid: options.deviceUuid,
      open: options.open,
      manager: options.manager,
      shadow: options.shadow,
      clock: options.clock,
      log: this.#log,
      closeTimeoutMs: options.closeTimeoutMs ?? 2000,
      verifyTimeoutMs: options.machine.config.verifyTimeoutMs + 1000,
      dispatch: (event) => this.dispatch(event),
      background: (p) => this.#background(p),
      stopped: () => this.#stopped,
      switchOver: (attemptId) => {
        if (this.#switching === attemptId) this.#switching = null;
      },
    });
    this.#reports = new ReportSender({
      clock: options.clock,
      log: this.#log,
      shadow: options.shadow,
      queue: options.queue,
      ...(options.migratingReportDelayMs !== undefined ? { migratingReportDelayMs: options.migratingReportDelayMs } : {}),
      // The `connected` report that ends a move (it names the broker left) completes the switch once acknowledged.
      sent: (effect) => {
        const switching = effect.status === 'connected' && effect.previousBrokerId !== undefined ? this.#switching : null;
        if (switching === null) return undefined;
        return () => {
          if (this.#switching === switching) this.dispatch({ type: 'switched', attemptId: switching });
        };
      },
      // Still moving to that target when a held `migrating` report's time comes: say so.
      stillMoving: (effect) => {
        const s = this.#state;
        return (s.name === 'connecting' || s.name === 'verifying') && s.assignmentVersion === effect.assignmentVersion;
      },
      documentReported: () => this.#documentReported,
    });
  }

  /** The machine's current state. */
  get state(): MigrationState {
    return this.#state;
  }

  /** Feeds a machine event (stamped with the clock's time); processed after those before it. */
  dispatch(event: RunnerEvent): void {
    if (this.#stopped && event.type !== 'abort') return;
    this.#enqueue({ kind: 'event', event: { ...event, at: this.#o.clock.now() } as MigrationEvent });
  }

  /**
   * Feeds a `device-state` `get` answer: its assignment (if any) goes to the machine; then, when no move is in
   * progress and neither that step nor the document says the device is connected where it is, the runner
   * reports `connected` for the current broker ("on every connect … report what it runs"; a missing shadow
   * is created this way).
   */
  shadowDocument(info: ShadowDocumentInfo): void {
    if (this.#stopped) return;
    this.#enqueue({ kind: 'document', info, at: this.#o.clock.now() });
  }

  /** Resolves once every event fed so far has been processed. */
  async idle(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  /**
   * Aborts any move (a move past its switch completes: persist, close the old connection), cancels every timer,
   * closes connections still opening and waits for background work. Idempotent.
   */
  async stop(): Promise<void> {
    if (!this.#stopped) {
      this.dispatch({ type: 'abort', reason: 'agent stopping' });
      this.#stopped = true;
    }
    await this.idle();
    this.#reports.stop();
    for (const name of [...this.#timers.keys()]) this.#cancelTimer(name);
    for (const attemptId of this.#conns.attempts()) this.#conns.closeNew(attemptId, 'agent stopping', false);
    while (this.#inBackground.size > 0) await Promise.allSettled([...this.#inBackground]);
  }

  #enqueue(work: Work): void {
    this.#work.push(work);
    if (!this.#draining) {
      this.#draining = this.#drain().finally(() => {
        this.#draining = null;
      });
    }
  }

  async #drain(): Promise<void> {
    for (let work = this.#work.shift(); work; work = this.#work.shift()) {
      if (work.kind === 'event') {
        await this.#step(work.event);
        continue;
      }
      const { info, at } = work;
      let reported = false;
      // A "stay here" answer may skip its `connected` report only when the document already shows one that
      // followed this assignment and no move had started since: otherwise the server may be waiting for it
      // (an assignment away and straight back, or two made while the device was offline).
      const settled = info.reportedAfterAssignment === true && this.#state.name === 'idle';
      this.#documentReported = settled ? info.reported : undefined;
      try {
        if (info.assignment) {
          reported = await this.#step({ type: 'assignment', ...info.assignment, source: 'shadow', at });
        }
        const s = this.#state;
        if (!reported && s.name === 'idle' && !reportsConnectedTo(info.reported, s.current)) {
          await this.#execute({ type: 'report', status: 'connected', broker: s.current, assignmentVersion: s.appliedVersion });
        }
      } finally {
        this.#documentReported = undefined;
      }
    }
  }

  /** One transition and its effects; returns true when the effects included a report. */
  async #step(event: MigrationEvent): Promise<boolean> {
    const from = this.#state;
    const { state, effects } = this.#o.machine.transition(from, event);
    this.#state = state;
    for (const effect of effects) {
      try {
        await this.#execute(effect);
      } catch (err) {
        // Effects catch their own expected failures; anything here is a bug or an I/O error worth a loud log.
        this.#log.error({ err, effect: effect.type, state: state.name }, 'migration effect failed; continuing with the next effect');
      }
    }
    return effects.some((e) => e.type === 'report');
  }

  async #execute(effect: MigrationEffect): Promise<void> {
    switch (effect.type) {
      case 'openConnection':
        this.#conns.open(effect.attemptId, effect.target);
        return;
      case 'closeConnection':
        if (effect.which === 'new') this.#conns.closeNew(effect.attemptId, effect.reason, true);
        else this.#conns.closeOld(effect.attemptId, effect.reason);
        return;
      case 'subscribe':
        this.#conns.subscribe(effect.attemptId);
        return;
      case 'sendShadowGet':
        this.#conns.verify(effect.attemptId);
        return;
      case 'startTimer': {
        this.#cancelTimer(effect.name);
        const { name, attemptId } = effect;
        const handle = this.#o.clock.setTimeout(() => {
          if (this.#timers.get(name) !== handle) return;
          this.#timers.delete(name);
          this.dispatch({ type: TIMER_EVENTS[name], attemptId });
        }, effect.ms);
        this.#timers.set(name, handle);
        return;
      }
      case 'cancelTimer':
        this.#cancelTimer(effect.name);
        return;
      case 'switchPublishing': {
        const adopted = this.#conns.adopt(effect.attemptId);
        if (!adopted) {
          this.#log.error({ attemptId: effect.attemptId }, 'switchPublishing without an open new connection; the switch timer will commit the move');
          return;
        }
        const { conn, previous } = adopted;
        this.#o.queue.switchTo(conn);
        this.#switching = effect.attemptId;
        this.#log.info({ attemptId: effect.attemptId, from: previous?.target.brokerId, to: conn.target.brokerId }, 'publishing switched to the new broker');
        return;
      }
      case 'report':
        this.#reports.report(effect);
        return;
      case 'persist': {
        const state = { deviceUuid: this.#o.deviceUuid, broker: effect.broker, appliedVersion: effect.appliedVersion, ...(effect.pending ? { pending: effect.pending } : {}) };
        // The store writes saves one after another, in call order (temp file + fsync + rename + dir fsync).
        const saved = this.#o.store.save(state).catch((err: unknown) => {
          this.#log.error({ err, path: this.#o.store.path, brokerId: effect.broker.brokerId }, 'could not persist the agent state; a restart may start from an older broker and converge through the shadow get');
        });
        if (effect.pending) {
          // A move in progress is recorded for the operator only: boot ignores `pending` (the shadow get after
          // connecting re-delivers the assignment), and `broker` is unchanged. Waiting for the fsyncs here would
          // hold the next effect — opening the new connection, or a `verified` queued behind this step — for a
          // few ms, more on a busy disk (bench/migration-latency). Written in the background, still in order:
          // a later save (the one naming the new broker, awaited) lands after it; `stop` waits for it.
          this.#background(saved);
          return;
        }
        await saved;
        return;
      }
      case 'emit':
        this.emit('migration:state', effect.event);
        this.#log.debug({ ...effect.event }, `migration ${effect.event.from} → ${effect.event.to} (${effect.event.cause})`);
        return;
      default: {
        const never: never = effect;
        throw new Error(`unknown effect ${JSON.stringify(never)}`);
      }
    }
  }

  #background(p: Promise<unknown>): void {
    this.#inBackground.add(p);
    void p.finally(() => this.#inBackground.delete(p));
  }

  #cancelTimer(name: TimerName): void {
    const handle = this.#timers.get(name);
    if (handle !== undefined) this.#o.clock.clearTimeout(handle);
    this.#timers.delete(name);
  }
}
