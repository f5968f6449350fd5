/**
 * One MQTT connection to one broker, opened once and never reconnected by itself (mqtt.js `reconnectPeriod: 0`:
 * its own reconnect is a fixed 1 s without jitter and retries a refused CONNECT forever — stack notes). Who
 * reconnects is decided above: the {@link ConnectionManager} for the current broker, the migration machine for
 * a move's new connection.
 *
 * Contract (notes/assignment-contract.md, "Connection"): client id = username = device uuid, password = device
 * token, MQTT 3.1.1, clean session, the will `{state: "offline", brokerId}` on `iot/device/{uuid}/status`.
 *
 * Every operation settles: `publish` resolves on PUBACK (QoS 1) and rejects when the connection closes first;
 * `subscribe` resolves on SUBACK and rejects when any granted code is ≥ 0x80; after `close` everything rejects
 * at once. (mqtt.js would otherwise park a publish made while disconnected in its offline store forever.)
 *
 * TLS (`mqtts`, `wss`): the broker's certificate is always verified, host name included (SNI and the check use
 * the target's host; an IP literal is matched against the certificate's IP SANs), against `trust` when given
 * (see `ca-bundle.ts`) or Node's default store. Verification cannot be turned off. A failure rejects the open
 * with a sentence naming the TLS problem (`tls-failure.ts`), which a move reports as its failure reason.
 */
import { EventEmitter } from 'node:events';
import { isIP } from 'node:net';
import type { SecureContext } from 'node:tls';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { statusTopic } from '@switchyard/protocol';
import type { BrokerTarget } from '../broker-target.ts';
import type { PublishConnection, QueuedMessage } from '../publish-queue.ts';
import { systemClock, type Clock } from '../clock.ts';
import { describeTlsFailure } from './tls-failure.ts';

/** Credentials and broker of one connection. */
export interface MqttConnectionOptions {
  /** The broker. */
  target: BrokerTarget;
  /** Device uuid: client id and username. */
  deviceUuid: string;
  /** Device token: the password. Never logged. */
  deviceToken: string;
  /** Identifies this connection in logs and in the publish queue; must be unique within the process. */
  id: string;
  /** Give up on CONNACK after this many ms (mqtt.js `connectTimeout`); default 10000. */
  connectTimeoutMs?: number;
  /** MQTT keepalive in seconds; default 30. */
  keepaliveS?: number;
  /**
   * The CAs trusted for `mqtts`/`wss` (`trustContext(bundle)` from `ca-bundle.ts`); default Node's store. The
   * certificate and the host name are always verified.
   */
  trust?: SecureContext;
  /** Logger (a child with `connection`, `brokerId` is made). */
  log?: Logger;
  /** Bounds a clean `end` (default: the system clock). */
  clock?: Clock;
}

/** Events of a {@link MqttConnection}. */
export interface MqttConnectionEvents {
  /** An application message arrived. */
  message: [topic: string, payload: Buffer];
  /** The connection is gone (once): lost, refused later, or closed by `end`. */
  close: [reason: string];
  /** A protocol or socket error; a `close` follows when it ends the connection. */
  error: [err: Error];
}

/** A publish or subscribe refused by the broker (SUBACK ≥ 0x80, MQTT 5 reason code ≥ 0x80). */
export class MqttRefusedError extends Error {
  override readonly name = 'MqttRefusedError';
  /** The queue gives up on a message refused like this rather than resending it forever. */
  readonly permanent = true;
  constructor(message: string, readonly reasonCode: number) {
    super(message);
  }
}

/** The connection closed before the operation completed. */
export class MqttConnectionClosedError extends Error {
  override readonly name = 'MqttConnectionClosedError';
  constructor(id: string, reason: string) {
    super(`connection ${id} closed: ${reason}`);
  }
}

/** Opens a connection; resolves on CONNACK, rejects with the broker's or the socket's reason. */
export async function openMqttConnection(options: MqttConnectionOptions): Promise<MqttConnection> {
  const { target, deviceUuid, deviceToken } = options;
  const clientOptions: IClientOptions = {
    clientId: deviceUuid,
    username: deviceUuid,
    password: deviceToken,
    protocolVersion: 4,
    clean: true,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? 10_000,
    keepalive: options.keepaliveS ?? 30,
    // Nothing may wait in mqtt.js's offline store: the publish queue above owns retries.
    queueQoSZero: false,
    will: {
      topic: statusTopic(deviceUuid),
      payload: Buffer.from(JSON.stringify({ state: 'offline', brokerId: target.brokerId })),
      qos: 1,
      retain: false,
    },
  };
  if (target.protocol === 'mqtts' || target.protocol === 'wss') {
    // SNI and host name verification name the host, unless it is an IP literal (verified against IP SANs).
    const servername = isIP(target.host) === 0 ? target.host : undefined;
    const tls = { rejectUnauthorized: true, ...(servername !== undefined ? { servername } : {}), ...(options.trust !== undefined ? { secureContext: options.trust } : {}) };
    // mqtt.js hands its own options to tls.connect (mqtts) but only a few named ones to the WebSocket (wss):
    // give both the same, so neither can fall back to a laxer default.
    Object.assign(clientOptions, tls);
    if (target.protocol === 'wss') clientOptions.wsOptions = { ...tls };
  }
  const client = mqtt.connect(target.url, clientOptions);
  // No Nagle delay: MQTT packets are small and answered. With Nagle, a PUBLISH written right after a PUBACK
  // (e.g. the `connected` report after acknowledging the verification `get` answer) waits for the broker's
  // delayed ACK of that PUBACK — ~40 ms on Linux, on every move (bench/migration-latency). The TCP socket
  // (mqtt/mqtts) keeps the setting until it connects; WebSocket streams have no `setNoDelay` and are skipped.
  setNoDelay(client);
  return new Promise<MqttConnection>((resolve, reject) => {
    let lastError: Error | undefined;
    const cleanup = (): void => {
      client.off('connect', onConnect);
      client.off('error', onError);
      client.off('close', onClose);
    };
    // After a failed open, mqtt.js may still emit an error (a second TLS error from the socket, "connack
    // timeout"): with no listener left that would crash the process.
    const ignoreLateErrors = (): void => {
      client.on('error', () => undefined);
    };
    const onConnect = (): void => {
      cleanup();
      setNoDelay(client); // again on the connected stream, in case the builder replaced it
      resolve(new MqttConnection(client, options));
    };
    const onError = (err: Error): void => {
      lastError = err;
      // A refused CONNACK (bad credentials, client id) is final; so is a socket error with reconnectPeriod 0.
      cleanup();
      ignoreLateErrors();
      client.end(true);
      reject(new Error(`cannot connect to ${target.url}: ${describeMqttError(err)}`, { cause: err }));
    };
    const onClose = (): void => {
      cleanup();
      ignoreLateErrors();
      client.end(true);
      const why = lastError ? describeMqttError(lastError) : 'connection closed before CONNACK';
      reject(new Error(`cannot connect to ${target.url}: ${why}`));
    };
    client.on('connect', onConnect);
    client.on('error', onError);
    client.on('close', onClose);
  });
}

/** See the module comment. Made by {@link openMqttConnection}. */
export class MqttConnection extends EventEmitter<MqttConnectionEvents> implements PublishConnection {
  readonly id: string;
  readonly target: BrokerTarget;
  readonly #client: MqttClient;
  readonly #log: Logger | undefined;
  readonly #clock: Clock;
  readonly #pending = new Set<(err: Error) => void>();
  #closed: string | null = null;
  /** `end` was called: the agent closes the client itself. */
  #ending = false;

  /** @internal use {@link openMqttConnection} */
  constructor(client: MqttClient, options: MqttConnectionOptions) {
    super();
    this.id = options.id;
    this.target = options.target;
    this.#client = client;
    this.#clock = options.clock ?? systemClock;
    this.#log = options.log?.child({ connection: options.id, brokerId: options.target.brokerId });
    client.on('message', (topic, payload) => this.emit('message', topic, payload));
    client.on('error', (err) => {
      // Listened to on purpose (an unhandled 'error' would crash the process); the close that follows is acted on.
      this.#log?.debug({ err: err.message }, 'mqtt error');
      if (this.listenerCount('error') > 0) this.emit('error', err);
    });
    client.on('close', () => this.#onClosed('connection lost'));
    client.on('disconnect', (packet) => this.#onClosed(`broker sent DISCONNECT${packet.reasonCode ? ` (reason ${packet.reasonCode})` : ''}`));
  }

  /** True until the connection closes. */
  get isOpen(): boolean {
    return this.#closed === null;
  }

  /** Why it closed, or null while open. */
  get closeReason(): string | null {
    return this.#closed;
  }

  /**
   * Subscribes at QoS 1; resolves on SUBACK.
   * @throws (rejects) MqttRefusedError when any granted code is ≥ 0x80 (the broker denied a filter)
   */
  subscribe(filters: readonly string[]): Promise<void> {
    return this.#track((resolve, reject) => {
      this.#client.subscribe([...filters], { qos: 1 }, (err, granted) => {
        if (err) {
          const code = (err as { code?: unknown }).code;
          const denied = (granted ?? []).filter((g) => (g.qos & 0x80) !== 0).map((g) => g.topic);
          if (typeof code === 'number') {
            reject(new MqttRefusedError(`subscribe refused by ${this.target.url}${denied.length ? ` for ${denied.join(', ')}` : ''}: ${err.message}`, code));
          } else reject(err);
          return;
        }
        resolve();
      });
    });
  }

  /** Publishes; resolves on PUBACK (QoS 1) or once written (QoS 0). */
  publish(topic: string, payload: string | Uint8Array, options: { qos: 0 | 1; retain?: boolean }): Promise<void> {
    return this.#track((resolve, reject) => {
      const body = typeof payload === 'string' ? payload : Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength);
      this.#client.publish(topic, body, { qos: options.qos, retain: options.retain ?? false }, (err, packet) => {
        if (err) {
          reject(err);
          return;
        }
        const rc = (packet as { reasonCode?: number } | undefined)?.reasonCode;
        if (typeof rc === 'number' && rc >= 0x80) {
          reject(new MqttRefusedError(`publish on ${topic} refused by ${this.target.url} (reason ${rc})`, rc));
          return;
        }
        resolve();
      });
    });
  }

  /** {@link PublishConnection.send}: the publish queue's way out. */
  send(message: QueuedMessage): Promise<void> {
    return this.publish(message.topic, message.payload, { qos: message.qos, retain: message.retain });
  }

  /**
   * Closes the connection. `clean` (default): DISCONNECT after in-flight packets, so the broker does not send
   * the will; otherwise the socket is dropped at once. Resolves when closed, at most `timeoutMs` (default 2000)
   * after the call.
   */
  async end(options: { clean?: boolean; reason?: string; timeoutMs?: number } = {}): Promise<void> {
    const reason = options.reason ?? 'closed by the agent';
    this.#ending = true;
    if (this.#closed === null) this.#onClosed(reason);
    await new Promise<void>((resolve) => {
      // A clean end waits for the socket; a dead peer must not hold the agent: force it after timeoutMs.
      const timer = this.#clock.setTimeout(() => {
        // mqtt.js's clean end waits for every in-flight PUBACK, and a second `end(true)` is then a no-op.
        this.#log?.debug('clean DISCONNECT did not complete in time; dropping the socket');
        this.#client.stream?.destroy();
        resolve();
      }, options.timeoutMs ?? 2000);
      this.#client.end(options.clean === false, {}, () => {
        this.#clock.clearTimeout(timer);
        resolve();
      });
    });
  }

  #track(executor: (resolve: () => void, reject: (err: Error) => void) => void): Promise<void> {
    if (this.#closed !== null) return Promise.reject(new MqttConnectionClosedError(this.id, this.#closed));
    return new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => {
        this.#pending.delete(fail);
        reject(err);
      };
      this.#pending.add(fail);
      try {
        executor(
          () => {
            this.#pending.delete(fail);
            resolve();
          },
          fail,
        );
      } catch (err) {
        fail(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  #onClosed(reason: string): void {
    if (this.#closed !== null) return;
    this.#closed = reason;
    const err = new MqttConnectionClosedError(this.id, reason);
    for (const fail of [...this.#pending]) fail(err);
    this.#log?.debug({ reason }, 'mqtt connection closed');
    this.emit('close', reason);
    // Release the socket and mqtt.js's timers when the broker went away on its own.
    if (!this.#ending && !this.#client.disconnecting) this.#client.end(true);
  }
}

/** Turns Nagle's algorithm off on the client's socket, when it is a TCP (or TLS) socket. */
function setNoDelay(client: MqttClient): void {
  const stream = client.stream as { setNoDelay?: (on: boolean) => unknown } | undefined;
  if (typeof stream?.setNoDelay === 'function') stream.setNoDelay(true);
}

/**
 * A short reason for a connect failure, e.g. `ECONNREFUSED connect ECONNREFUSED 127.0.0.1:1883`,
 * `Connection refused: Bad username or password`, or a TLS sentence (`tls-failure.ts`).
 */
export function describeMqttError(err: Error): string {
  const tls = describeTlsFailure(err);
  if (tls !== null) return tls;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && !err.message.includes(code)) return `${code} ${err.message}`;
  return err.message;
}
