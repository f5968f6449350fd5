/**
 * The device's outgoing queue, behind `agent.publish(topic, payload, { qos })`.
 *
 * A QoS 1 message stays in the queue until a PUBACK arrives for it (its `send` resolves) on some connection;
 * while unacknowledged it belongs to whichever connection is current. When the current connection changes —
 * a broker move (`switchPublishing`) or a reconnect — every message not yet acknowledged is sent again, in
 * order, on the new one. Messages that arrive while no connection is current wait for the next one.
 * QoS 0 messages are sent once on the first connection available and never again (at most once).
 *
 * Delivery is therefore at least once: a message whose PUBACK was lost with the old connection, or that both
 * brokers delivered, reaches subscribers twice. Why that is acceptable: the server subscribes on every broker,
 * so a move cannot be lossless without a resend, and receivers deduplicate — telemetry (the heartbeat stream)
 * by the sequence number in its payload, shadow updates by `clientToken`/`version`, command acks by
 * `commandId`, job updates by `expectedVersion`. The queue's own `seq` is local to this process, for ordering
 * and logs; a payload that needs deduplication across restarts carries its own sequence number.
 *
 * Under MQTT 3.1.1 a PUBACK does not prove the broker authorised the publish (DESIGN §2); it only ends the
 * queue's responsibility for the message.
 *
 * The queue is bounded: beyond `maxMessages` pending messages `publish` rejects with
 * {@link PublishQueueFullError} rather than growing without limit while the device is offline.
 */
import type { Logger } from 'pino';

/** A message as handed to a connection. */
export interface QueuedMessage {
  /** Position in this queue: increases by one per `publish`, from 1. Local to the process. */
  readonly seq: number;
  /** MQTT topic (no wildcards). */
  readonly topic: string;
  /** Payload bytes or UTF-8 text. */
  readonly payload: string | Uint8Array;
  /** 0 = at most once; 1 = at least once (kept until PUBACK). */
  readonly qos: 0 | 1;
  /** MQTT retain flag. */
  readonly retain: boolean;
}

/** A connection the queue can send through. */
export interface PublishConnection {
  /** Identifies the connection (e.g. `broker-2#3`); a new connection object must have a new id. */
  readonly id: string;
  /**
   * Publishes one message. Resolves on PUBACK for QoS 1 (on write for QoS 0); rejects when the message did not
   * make it (connection closed, publish refused). A rejection carrying `permanent: true` (e.g. an MQTT 5 reason
   * code ≥ 0x80) fails the message; any other rejection keeps it for the next connection.
   */
  send(message: QueuedMessage): Promise<void>;
}

/** Options of {@link PublishQueue}. */
export interface PublishQueueOptions {
  /** Most messages pending at once (queued or awaiting PUBACK); default 1000. */
  maxMessages?: number;
  /** Logs a resend after a switch, and sends that failed. */
  log?: Logger;
}

/** Options of one publish. */
export interface PublishOptions {
  /** Quality of service; default 1. QoS 2 is not supported. */
  qos?: 0 | 1;
  /** Retain flag; default false. */
  retain?: boolean;
}

/** The queue holds `maxMessages` already: the device publishes faster than the broker acknowledges, or is offline. */
export class PublishQueueFullError extends Error {
  override readonly name = 'PublishQueueFullError';
  readonly code = 'PUBLISH_QUEUE_FULL';
  constructor(readonly maxMessages: number, topic: string) {
    super(`publish queue full (${maxMessages} messages pending): not accepting a message for ${topic}`);
  }
}

/** The queue was closed; pending and later messages are refused. */
export class PublishQueueClosedError extends Error {
  override readonly name = 'PublishQueueClosedError';
  readonly code = 'PUBLISH_QUEUE_CLOSED';
  constructor(reason: string) {
    super(`publish queue closed: ${reason}`);
  }
}

interface Entry {
  message: QueuedMessage;
  resolve: () => void;
  reject: (err: Error) => void;
  /** Id of the connection this entry was last handed to, if any. */
  sentOn?: string;
}

/** See the module comment. */
export class PublishQueue {
  readonly #max: number;
  readonly #log: Logger | undefined;
  /** Pending entries in `seq` order. */
  readonly #pending = new Map<number, Entry>();
  #seq = 0;
  #connection: PublishConnection | null = null;
  #closed: PublishQueueClosedError | null = null;
  #waiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(options: PublishQueueOptions = {}) {
    const max = options.maxMessages ?? 1000;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`maxMessages must be a positive integer, got ${max}`);
    this.#max = max;
    this.#log = options.log;
  }

  /** Messages pending (queued or awaiting PUBACK). */
  get size(): number {
    return this.#pending.size;
  }

  /** Id of the current connection, or undefined when there is none. */
  get connectionId(): string | undefined {
    return this.#connection?.id;
  }

  /**
   * Queues a message and sends it when a connection is current.
   * @returns settles when the message is acknowledged (QoS 1) or written (QoS 0)
   * @throws (rejects) PublishQueueFullError, PublishQueueClosedError, TypeError on a bad topic/qos
   */
  publish(topic: string, payload: string | Uint8Array, options: PublishOptions = {}): Promise<void> {
    const qos = options.qos ?? 1;
    if (typeof topic !== 'string' || topic.length === 0 || /[+#\0]/.test(topic)) {
      return Promise.reject(new TypeError(`invalid publish topic ${JSON.stringify(topic)}: must be non-empty, without + # or NUL`));
    }
    if (qos !== 0 && qos !== 1) return Promise.reject(new TypeError(`unsupported qos ${String(qos)}: use 0 or 1`));
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#pending.size >= this.#max) return Promise.reject(new PublishQueueFullError(this.#max, topic));
    const message: QueuedMessage = { seq: ++this.#seq, topic, payload, qos, retain: options.retain ?? false };
    return new Promise<void>((resolve, reject) => {
      const entry: Entry = { message, resolve, reject };
      this.#pending.set(message.seq, entry);
      if (this.#connection) this.#transmit(entry, this.#connection);
    });
  }

  /**
   * Makes `connection` the current one (null: none, e.g. while reconnecting). Every QoS 1 message not yet
   * acknowledged, and every QoS 0 message never sent, goes out on it now, in `seq` order. Call it on each
   * (re)connect and when a broker move switches publishing.
   */
  switchTo(connection: PublishConnection | null): void {
    const previous = this.#connection;
    this.#connection = connection;
    if (!connection || this.#closed) return;
    let resent = 0;
    for (const entry of this.#pending.values()) {
      if (entry.sentOn === connection.id) continue;
      if (entry.message.qos === 0 && entry.sentOn !== undefined) continue; // at most once
      if (entry.sentOn !== undefined) resent++;
      this.#transmit(entry, connection);
    }
    if (resent > 0) {
      this.#log?.info(
        { from: previous?.id, to: connection.id, resent },
        're-sending messages not acknowledged on the previous connection (receivers dedup by sequence number)',
      );
    }
  }

  /**
   * Resolves once nothing is pending (immediately if nothing is). Rejects if the queue is closed first.
   * Callers bound the wait themselves (a timer), as a dead connection never acknowledges.
   */
  flushed(): Promise<void> {
    if (this.#closed) return Promise.reject(this.#closed);
    if (this.#pending.size === 0) return Promise.resolve();
    return new Promise((resolve, reject) => this.#waiters.push({ resolve, reject }));
  }

  /** Refuses further publishes and rejects every pending one (and `flushed` waiters) with PublishQueueClosedError. */
  close(reason = 'agent stopping'): void {
    if (this.#closed) return;
    const err = new PublishQueueClosedError(reason);
    this.#closed = err;
    this.#connection = null;
    const entries = [...this.#pending.values()];
    this.#pending.clear();
    for (const e of entries) e.reject(err);
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const w of waiters) w.reject(err);
  }

  #transmit(entry: Entry, connection: PublishConnection): void {
    entry.sentOn = connection.id;
    let sending: Promise<void>;
    try {
      sending = connection.send(entry.message);
    } catch (err) {
      sending = Promise.reject(err);
    }
    sending.then(
      () => this.#settle(entry, null),
      (err: unknown) => this.#onSendError(entry, connection, err),
    );
  }

  #onSendError(entry: Entry, connection: PublishConnection, err: unknown): void {
    if (this.#pending.get(entry.message.seq) !== entry) return; // already acknowledged elsewhere, or closed
    const error = err instanceof Error ? err : new Error(String(err));
    const { seq, topic, qos } = entry.message;
    if (qos === 0 || (err as { permanent?: unknown } | null)?.permanent === true) {
      this.#log?.warn({ err: error, seq, topic, qos, connection: connection.id }, 'publish failed; giving up on this message');
      this.#settle(entry, error);
      return;
    }
    if (this.#connection === connection) {
      // Keep it; the next switchTo (reconnect or move) sends it again.
      entry.sentOn = undefined;
      this.#log?.warn({ err: error, seq, topic, connection: connection.id }, 'publish not acknowledged; kept for the next connection');
    }
    // Otherwise a newer connection already has it (switchTo re-sent it), or will.
  }

  #settle(entry: Entry, err: Error | null): void {
    if (this.#pending.get(entry.message.seq) !== entry) return; // the first PUBACK, from either connection, wins
    this.#pending.delete(entry.message.seq);
    if (err) entry.reject(err);
    else entry.resolve();
    if (this.#pending.size === 0 && this.#waiters.length > 0) {
      const waiters = this.#waiters;
      this.#waiters = [];
      for (const w of waiters) w.resolve();
    }
  }
}
