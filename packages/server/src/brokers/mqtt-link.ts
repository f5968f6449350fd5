/**
 * One MQTT connection from the server to a broker — what the broker pool needs and no more: a clean session over
 * TCP, TLS, WebSocket or secure WebSocket, MQTT 3.1.1 or 5, keepalive, SUBSCRIBE/UNSUBSCRIBE, PUBLISH at QoS 0/1 in
 * both directions (QoS 1 deliveries are PUBACKed after the handler ran). No reconnect: the pool owns that policy.
 *
 * Writes: every packet of an event-loop turn leaves in ONE socket write at the turn's end (`setImmediate`), so a
 * read's PUBACKs and a batch's replies cost the broker one wake-up, not one each. QoS 1 publishes beyond the broker's
 * Receive Maximum (MQTT 5 CONNACK) wait in order for a free slot.
 *
 * Life: `connect` once the broker accepted (CONNACK 0); `error` for anything that went wrong (refused, TLS, timeout,
 * protocol violation, socket error) — possibly several; `close` exactly once, after which every pending publish,
 * subscribe and unsubscribe has been rejected.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { WebSocket } from 'ws';
import {
  DISCONNECT,
  PINGREQ,
  PacketReader,
  encodeConnect,
  encodePuback,
  encodePublish,
  encodeSubscribe,
  encodeUnsubscribe,
  reasonText,
  type IncomingPacket,
  type MqttVersion,
} from './mqtt-codec.ts';
import type { BrokerTlsOptions } from './broker-tls.ts';

export interface MqttLinkOptions {
  protocol: 'mqtt' | 'mqtts' | 'ws' | 'wss';
  host: string;
  port: number;
  version: MqttVersion;
  clientId: string;
  /** Seconds between keepalive pings (0 = off); the broker's Server Keep Alive (MQTT 5) wins. */
  keepalive: number;
  connectTimeoutMs: number;
  username?: string;
  password?: string;
  tls?: BrokerTlsOptions;
}

export interface MqttLinkHandlers {
  connect(): void;
  message(topic: string, payload: Buffer): void;
  error(err: Error): void;
  close(): void;
}

/** The byte transport under a link: a socket, or a WebSocket carrying binary frames. */
interface Transport {
  write(data: Buffer): void;
  end(): void;
  destroy(): void;
}

const noop = (): void => undefined;

export class MqttLinkClosedError extends Error {
  constructor() {
    super('MQTT connection closed');
    this.name = 'MqttLinkClosedError';
  }
}

interface Waiter {
  resolve(): void;
  reject(err: Error): void;
}

export class MqttLink {
  #o: MqttLinkOptions;
  #h: MqttLinkHandlers;
  #transport!: Transport;
  #reader: PacketReader;
  #out: Buffer[] = [];
  #flushing = false;
  #connected = false;
  #closed = false;
  #nextId = 1;
  /** QoS 1 publishes, subscribes and unsubscribes waiting for their ack, by packet id. */
  #acks = new Map<number, Waiter & { kind: 'puback' | 'suback' | 'unsuback' }>();
  #inflight = 0;
  #receiveMaximum = 65_535;
  /** The broker's Maximum Packet Size (MQTT 5): a larger publish is refused here, not sent to get us disconnected. */
  #maxPacket = Infinity;
  /** QoS 1 publishes waiting for a slot under the broker's Receive Maximum. */
  #queued: Array<{ topic: string; payload: string | Buffer; retain: boolean; waiter: Waiter }> = [];
  #connectTimer: NodeJS.Timeout | null;
  #pingTimer: NodeJS.Timeout | null = null;
  #awaitingPong = false;
  #endWaiters: Array<() => void> = [];

  constructor(o: MqttLinkOptions, h: MqttLinkHandlers) {
    this.#o = o;
    this.#h = h;
    this.#reader = new PacketReader(o.version, (p) => this.#onPacket(p));
    this.#connectTimer = setTimeout(() => this.#fail(new Error('connack timeout')), o.connectTimeoutMs);
    const hello = encodeConnect({
      version: o.version,
      clientId: o.clientId,
      keepalive: o.keepalive,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: o.password } : {}),
    });
    try {
      this.#transport = o.protocol === 'ws' || o.protocol === 'wss' ? this.#openWebSocket(hello) : this.#openSocket(hello);
    } catch (err) {
      // Options the transport refuses outright (a malformed URL, unusable TLS material): reported like any failure.
      this.#transport = { write: () => undefined, end: () => undefined, destroy: () => undefined };
      setImmediate(() => this.#fail(err as Error));
    }
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** QoS 0: handed to the transport this turn. QoS 1: resolves on the broker's PUBACK. */
  publish(topic: string, payload: string | Buffer, qos: 0 | 1, retain = false): Promise<void> {
    return new Promise<void>((resolve, reject) => this.#publishWith(topic, payload, qos, retain, { resolve, reject }));
  }

  /**
   * {@link publish} without a promise, for fire-and-forget replies (every shadow reply): `onError` is called if it
   * fails — not connected, too large, refused by the broker, or the connection lost before the PUBACK.
   */
  post(topic: string, payload: string | Buffer, qos: 0 | 1, onError: (err: Error) => void): void {
    this.#publishWith(topic, payload, qos, false, { resolve: noop, reject: onError });
  }

  #publishWith(topic: string, payload: string | Buffer, qos: 0 | 1, retain: boolean, waiter: Waiter): void {
    if (!this.#connected) {
      waiter.reject(new MqttLinkClosedError());
      return;
    }
    if (qos === 1) {
      if (this.#inflight >= this.#receiveMaximum) this.#queued.push({ topic, payload, retain, waiter });
      else this.#publishNow(topic, payload, retain, waiter);
      return;
    }
    const packet = this.#encode(topic, payload, 0, retain, 0, waiter);
    if (packet === null) return;
    this.#send(packet);
    waiter.resolve();
  }

  /** The PUBLISH packet, or null after rejecting `waiter`: a topic or payload MQTT cannot carry, or over the broker's limit. */
  #encode(topic: string, payload: string | Buffer, qos: 0 | 1, retain: boolean, id: number, waiter: Waiter): Buffer | null {
    let packet: Buffer;
    try {
      packet = encodePublish(this.#o.version, topic, payload, qos, retain, id);
    } catch (err) {
      waiter.reject(err as Error);
      return null;
    }
    if (packet.length > this.#maxPacket) {
      waiter.reject(this.#tooLarge(packet.length));
      return null;
    }
    return packet;
  }

  /** One SUBSCRIBE for all `filters`; rejects naming the first filter the broker refused. */
  subscribe(filters: readonly string[], qos: 0 | 1): Promise<void> {
    return this.#request('suback', (id) => encodeSubscribe(this.#o.version, id, filters, qos), filters);
  }

  unsubscribe(filters: readonly string[]): Promise<void> {
    return this.#request('unsuback', (id) => encodeUnsubscribe(this.#o.version, id, filters), filters);
  }

  /** Sends DISCONNECT (when connected) and closes; resolves once closed. */
  end(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    const done = new Promise<void>((resolve) => this.#endWaiters.push(resolve));
    if (this.#connected) {
      this.#send(DISCONNECT);
      this.#flush();
      this.#transport.end();
      // A broker that never closes its side: do not wait for it forever.
      setTimeout(() => this.#close(), 1000).unref();
    } else {
      this.#close();
    }
    return done;
  }

  /** Closes at once, without DISCONNECT. */
  destroy(): void {
    this.#close();
  }

  // --- transport ---------------------------------------------------------------------------------------------

  #openSocket(hello: Buffer): Transport {
    const { host, port } = this.#o;
    const socket: Socket =
      this.#o.protocol === 'mqtts'
        ? tlsConnect({ host, port, ...this.#o.tls }, () => socket.write(hello))
        : netConnect({ host, port }, () => socket.write(hello));
    // Replies are small and latency matters: no Nagle delay (with the peer's delayed ACK it adds ~40 ms).
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#h.error(err));
    socket.on('close', () => this.#close());
    return {
      write: (data) => void socket.write(data),
      end: () => void socket.end(),
      destroy: () => socket.destroy(),
    };
  }

  #openWebSocket(hello: Buffer): Transport {
    const { protocol, host, port } = this.#o;
    const url = `${protocol}://${host.includes(':') ? `[${host}]` : host}:${port}/`;
    const ws = new WebSocket(url, ['mqtt'], { ...this.#o.tls, perMessageDeflate: false });
    ws.binaryType = 'nodebuffer';
    ws.on('open', () => ws.send(hello));
    ws.on('message', (data: Buffer) => this.#onData(data));
    ws.on('error', (err) => this.#h.error(err));
    ws.on('close', () => this.#close());
    return {
      write: (data) => ws.send(data),
      end: () => ws.close(),
      destroy: () => ws.terminate(),
    };
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    this.#awaitingPong = false; // anything from the broker shows it is alive
    try {
      this.#reader.push(chunk);
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  // --- packets -------------------------------------------------------------------------------------------------

  #onPacket(p: IncomingPacket): void {
    if (this.#closed) return;
    if (!this.#connected && p.type !== 'connack') throw new Error(`MQTT protocol error: ${p.type.toUpperCase()} before CONNACK`);
    switch (p.type) {
      case 'connack':
        if (this.#connected) throw new Error('MQTT protocol error: a second CONNACK');
        if (p.code !== 0) {
          this.#fail(new Error(`Connection refused: ${reasonText(this.#o.version, p.code, 'connack')}`));
          return;
        }
        if (this.#connectTimer) clearTimeout(this.#connectTimer);
        this.#connectTimer = null;
        this.#connected = true;
        if (p.receiveMaximum !== undefined && p.receiveMaximum > 0) this.#receiveMaximum = p.receiveMaximum;
        if (p.maximumPacketSize !== undefined && p.maximumPacketSize > 0) this.#maxPacket = p.maximumPacketSize;
        this.#startPing(p.serverKeepAlive ?? this.#o.keepalive);
        this.#h.connect();
        return;
      case 'publish':
        if (p.qos === 2) throw new Error('MQTT protocol error: a QoS 2 delivery on QoS 0/1 subscriptions');
        try {
          this.#h.message(p.topic, p.payload);
        } catch (err) {
          this.#h.error(err as Error); // the handler's fault, not the connection's: it stays up
        }
        if (p.qos === 1) this.#send(encodePuback(p.id));
        return;
      case 'puback':
      case 'suback':
      case 'unsuback':
        this.#settle(p);
        return;
      case 'pingresp':
        return;
      case 'disconnect':
        this.#fail(new Error(`disconnected by the broker: ${reasonText(this.#o.version, p.code)}`));
        return;
    }
  }

  #settle(p: Extract<IncomingPacket, { type: 'puback' | 'suback' | 'unsuback' }>): void {
    const waiter = this.#acks.get(p.id);
    if (!waiter || waiter.kind !== p.type) return; // not ours (late, after a failed request): nothing waits for it
    this.#acks.delete(p.id);
    if (p.type === 'puback') {
      this.#inflight -= 1;
      if (p.code >= 0x80) waiter.reject(new Error(`publish refused: ${reasonText(this.#o.version, p.code)}`));
      else waiter.resolve();
      while (this.#inflight < this.#receiveMaximum && this.#queued.length > 0) {
        const next = this.#queued.shift()!;
        this.#publishNow(next.topic, next.payload, next.retain, next.waiter);
      }
      return;
    }
    const refused = p.codes.findIndex((c) => c >= 0x80);
    if (refused >= 0) waiter.reject(new Error(`${p.type === 'suback' ? 'subscription' : 'unsubscription'} refused: ${reasonText(this.#o.version, p.codes[refused]!)}`));
    else waiter.resolve();
  }

  #publishNow(topic: string, payload: string | Buffer, retain: boolean, waiter: Waiter): void {
    const id = this.#allocateId();
    const packet = this.#encode(topic, payload, 1, retain, id, waiter);
    if (packet === null) return;
    this.#inflight += 1;
    this.#acks.set(id, { ...waiter, kind: 'puback' });
    this.#send(packet);
  }

  #tooLarge(bytes: number): Error {
    return new Error(`publish refused: ${bytes} bytes exceed the broker's Maximum Packet Size of ${this.#maxPacket}`);
  }

  #request(kind: 'suback' | 'unsuback', encode: (id: number) => Buffer, filters: readonly string[]): Promise<void> {
    if (!this.#connected) return Promise.reject(new MqttLinkClosedError());
    if (filters.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const id = this.#allocateId();
      this.#acks.set(id, { resolve, reject, kind });
      this.#send(encode(id));
    });
  }

  #allocateId(): number {
    if (this.#acks.size >= 65_535) throw new Error('no free MQTT packet id: 65,535 requests await their ack');
    for (;;) {
      const id = this.#nextId;
      this.#nextId = id === 0xffff ? 1 : id + 1;
      if (!this.#acks.has(id)) return id;
    }
  }

  #startPing(seconds: number): void {
    if (seconds <= 0) return;
    this.#pingTimer = setInterval(() => {
      if (this.#awaitingPong) {
        this.#fail(new Error('keepalive timeout: the broker did not answer a ping'));
        return;
      }
      this.#awaitingPong = true;
      this.#send(PINGREQ);
    }, seconds * 1000);
    this.#pingTimer.unref();
  }

  // --- writing and closing -------------------------------------------------------------------------------------

  #send(packet: Buffer): void {
    if (this.#closed) return;
    this.#out.push(packet);
    if (this.#flushing) return;
    this.#flushing = true;
    setImmediate(() => this.#flush());
  }

  #flush(): void {
    this.#flushing = false;
    const out = this.#out;
    if (out.length === 0 || this.#closed) return;
    this.#out = [];
    this.#transport.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  #fail(err: Error): void {
    if (this.#closed) return;
    this.#h.error(err);
    this.#close();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#connected = false;
    if (this.#connectTimer) clearTimeout(this.#connectTimer);
    if (this.#pingTimer) clearInterval(this.#pingTimer);
    this.#out = [];
    this.#transport.destroy();
    const gone = new MqttLinkClosedError();
    const waiting = [...this.#acks.values(), ...this.#queued.map((q) => q.waiter)];
    this.#acks.clear();
    this.#queued = [];
    this.#inflight = 0;
    for (const w of waiting) w.reject(gone);
    this.#h.close();
    for (const fn of this.#endWaiters.splice(0)) fn();
  }
}
