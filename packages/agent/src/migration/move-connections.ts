/**
 * The connections of a move's attempts, for the migration runner (`migration-runner.ts`): the new connection of
 * each attempt (opened, presence published, verified by a shadow `get` through it, given up on failure), and, once
 * the manager adopted it, the old one (offline presence, clean DISCONNECT). What happens on them comes back to the
 * machine as events through `dispatch` (`connected`, `connectFailed`, `verified`, `verifyFailed`,
 * `newConnectionLost`).
 */
import type { Logger } from 'pino';
import { statusTopic } from '@switchyard/protocol';
import type { BrokerTarget } from '../broker-target.ts';
import type { Clock } from '../clock.ts';
import type { ConnectionManager } from '../connection/connection-manager.ts';
import type { MqttConnection } from '../connection/mqtt-connection.ts';
import type { ShadowClient } from '../shadow/shadow-client.ts';
import type { RunnerEvent } from './migration-runner.ts';
import { withTimeout } from './with-timeout.ts';

export interface MoveConnectionsOptions {
  deviceUuid: string;
  open(target: BrokerTarget): Promise<MqttConnection>;
  manager: ConnectionManager;
  shadow: ShadowClient;
  clock: Clock;
  log: Logger;
  /** Bound of a presence publish before a close, ms. */
  closeTimeoutMs: number;
  /** Bound of the verification `get` (the machine's verify timer is the real bound; this one is a backstop). */
  verifyTimeoutMs: number;
  dispatch(event: RunnerEvent): void;
  /** Background work (closing connections) for the runner to await on stop. */
  background(p: Promise<unknown>): void;
  stopped(): boolean;
  /** The switch of this attempt is over (its old connection is being closed). */
  switchOver(attemptId: string): void;
}

export class MoveConnections {
  readonly #o: MoveConnectionsOptions;
  readonly #log: Logger;
  /** New connections by attempt (open, or being opened: `null`). */
  readonly #newConns = new Map<string, MqttConnection | null>();
  /** Close listeners of new connections, by attempt. */
  readonly #closeListeners = new Map<string, () => void>();
  /** Old connections handed back by `adopt`, by attempt, until `closeOld`. */
  readonly #retiring = new Map<string, MqttConnection | null>();
  /** Subscribe-then-get chain of the verification, by attempt. */
  readonly #verifyChains = new Map<string, Promise<void>>();

  constructor(o: MoveConnectionsOptions) {
    this.#o = o;
    this.#log = o.log;
  }

  /** Attempts whose new connection is open or opening. */
  attempts(): string[] {
    return [...this.#newConns.keys()];
  }

  /** `subscribe`: the shadow reply topics on the attempt's new connection (the verification awaits it). */
  subscribe(attemptId: string): void {
    const conn = this.#newConns.get(attemptId);
    if (!conn) {
      this.#o.dispatch({ type: 'verifyFailed', attemptId, reason: 'the new connection is gone' });
      return;
    }
    const chain = conn.subscribe(this.#o.shadow.replyTopics());
    this.#verifyChains.set(attemptId, chain);
    chain.catch((err: unknown) => this.#o.dispatch({ type: 'verifyFailed', attemptId, reason: `subscribe through ${conn.target.url} failed: ${message(err)}` }));
  }

  /** `switchPublishing`: the manager adopts the new connection; returns it with the one it replaced, or null. */
  adopt(attemptId: string): { conn: MqttConnection; previous: MqttConnection | null } | null {
    const conn = this.#newConns.get(attemptId);
    if (!conn) return null;
    const previous = this.#o.manager.adopt(conn);
    this.#retiring.set(attemptId, previous);
    return { conn, previous };
  }

  /** `openConnection`: opens the attempt's connection; `connected` or `connectFailed` follows. */
  open(attemptId: string, target: BrokerTarget): void {
    this.#newConns.set(attemptId, null);
    this.#o.open(target).then(
      (conn) => {
        if (!this.#newConns.has(attemptId) || this.#newConns.get(attemptId) !== null) {
          // The attempt was given up while connecting (timeout, preemption, stop).
          this.#track(conn.end({ reason: `attempt ${attemptId} abandoned` }));
          return;
        }
        this.#newConns.set(attemptId, conn);
        const onClose = (): void => this.#o.dispatch({ type: 'newConnectionLost', attemptId, reason: `connection to ${target.url} lost: ${conn.closeReason ?? 'closed'}` });
        this.#closeListeners.set(attemptId, onClose);
        conn.once('close', onClose);
        // Presence on every connect, to any broker (contract).
        this.publishStatus(conn, 'online');
        this.#o.dispatch({ type: 'connected', attemptId });
      },
      (err: unknown) => {
        if (this.#newConns.get(attemptId) !== null) return;
        this.#newConns.delete(attemptId);
        this.#o.dispatch({ type: 'connectFailed', attemptId, reason: message(err) });
      },
    );
  }

  /** Subscribe (already started) and the `get` through the new connection; its answer proves the round trip. */
  verify(attemptId: string): void {
    const conn = this.#newConns.get(attemptId);
    const chain = this.#verifyChains.get(attemptId);
    if (!conn || !chain) {
      this.#o.dispatch({ type: 'verifyFailed', attemptId, reason: 'the new connection is gone' });
      return;
    }
    // The get goes out right behind the SUBSCRIBE, without waiting for the SUBACK: a broker handles one client's
    // packets in order, so the subscription exists before the request is even routed, let alone answered.
    // Both must succeed: a refused subscription fails the verification as before.
    const answer = this.#o.shadow.get((topic, payload) => conn.publish(topic, payload, { qos: 1 }), {
      via: conn.id,
      clientToken: this.#o.shadow.nextToken(`mv-${attemptId}`),
      timeoutMs: this.#o.verifyTimeoutMs + 1000,
    });
    answer.catch(() => undefined); // observed below, after the chain
    chain
      .then(() => answer)
      .then(
        (answer) => {
          // An answer through the new broker — accepted or rejected (404: no shadow yet) — is the proof.
          this.#log.debug({ attemptId, ok: answer.ok }, 'shadow get answered through the new broker');
          this.#o.dispatch({ type: 'verified', attemptId });
        },
        (err: unknown) => {
          if (this.#verifyChains.get(attemptId) !== chain) return;
          this.#o.dispatch({ type: 'verifyFailed', attemptId, reason: `shadow get through ${conn.target.url} failed: ${message(err)}` });
        },
      )
      .finally(() => {
        if (this.#verifyChains.get(attemptId) === chain) this.#verifyChains.delete(attemptId);
      });
  }

  /** Gives up the new connection of an attempt that failed or was preempted (before any switch). */
  closeNew(attemptId: string, reason: string, restorePresence: boolean): void {
    if (!this.#newConns.has(attemptId)) return;
    const conn = this.#newConns.get(attemptId);
    this.#newConns.delete(attemptId);
    this.#verifyChains.delete(attemptId);
    if (!conn) return; // still opening: ended when the open completes
    const listener = this.#closeListeners.get(attemptId);
    if (listener) conn.off('close', listener);
    this.#closeListeners.delete(attemptId);
    this.#track(
      (async () => {
        // It announced itself online on the target: take that back, then say again where the device is.
        if (conn.isOpen) await this.publishStatus(conn, 'offline');
        await conn.end({ reason });
        const current = this.#o.manager.current;
        if (restorePresence && current && !this.#o.stopped()) await this.publishStatus(current, 'online');
      })(),
    );
  }

  /** After the switch: offline on the old broker, then a clean DISCONNECT. */
  closeOld(attemptId: string, reason: string): void {
    const old = this.#retiring.get(attemptId);
    this.#retiring.delete(attemptId);
    // The new connection belongs to the manager now.
    const listener = this.#closeListeners.get(attemptId);
    const adopted = this.#newConns.get(attemptId);
    if (listener && adopted) adopted.off('close', listener);
    this.#closeListeners.delete(attemptId);
    this.#newConns.delete(attemptId);
    this.#o.switchOver(attemptId);
    if (!old) return;
    this.#log.info({ brokerId: old.target.brokerId, reason }, 'closing the connection to the old broker');
    this.#track(
      (async () => {
        if (old.isOpen) await this.publishStatus(old, 'offline');
        await old.end({ reason });
      })(),
    );
  }

  /** Publishes presence on one connection, bounded; never throws. */
  async publishStatus(conn: MqttConnection, state: 'online' | 'offline'): Promise<void> {
    const body: Record<string, unknown> = { state, brokerId: conn.target.brokerId, at: new Date(this.#o.clock.now()).toISOString() };
    try {
      await withTimeout(this.#o.clock, conn.publish(statusTopic(this.#o.deviceUuid), JSON.stringify(body), { qos: 1 }), this.#o.closeTimeoutMs ?? 2000);
    } catch (err) {
      this.#log.debug({ err: message(err), connection: conn.id, state }, 'presence not acknowledged');
    }
  }

  #track(p: Promise<unknown>): void {
    this.#o.background(p.catch((err: unknown) => this.#log.warn({ err: message(err) }, 'closing a connection failed')));
  }
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
