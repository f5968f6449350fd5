/**
 * A minimal MQTT 3.1.1 client for load generation: CONNECT, SUBSCRIBE, PUBLISH (QoS 0/1) and receiving
 * PUBLISH (answering PUBACK). No reconnect, no keepalive (0), no QoS 2, no persistence, no retries.
 *
 * Why: mqtt.js costs several times the broker's CPU per message (stack-notes); a generator built on it eats the
 * cores the server under test needs. This client writes each event-loop turn's packets in one `write` and parses
 * frames straight from the socket buffer — a fraction of the cost. It is for benchmarks only.
 */
import { connect, type Socket } from 'node:net';

export type MessageHandler = (topic: string, payload: Buffer) => void;

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

function remainingLength(n: number): Buffer {
  const bytes: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    bytes.push(b);
  } while (n > 0);
  return Buffer.from(bytes);
}

function str(s: string): Buffer {
  const b = utf8(s);
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

export class MiniMqttClient {
  #socket: Socket;
  #buf: Buffer = Buffer.alloc(0);
  #out: Buffer[] = [];
  #flushScheduled = false;
  #nextId = 1;
  #waiters = new Map<number, (packet: Buffer) => void>(); // by packet type (CONNACK, SUBACK)
  #onMessage: MessageHandler = () => undefined;
  #closed = false;
  onError: (err: Error) => void = () => undefined;
  onClose: () => void = () => undefined;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.onError(err));
    socket.on('close', () => {
      this.#closed = true;
      this.onClose();
    });
  }

  static async connect(host: string, port: number, clientId: string): Promise<MiniMqttClient> {
    const socket = connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new MiniMqttClient(socket);
    const id = str(clientId);
    // Variable header: "MQTT", level 4, flags clean session, keepalive 0 (off).
    const variable = Buffer.concat([str('MQTT'), Buffer.from([4, 0x02, 0, 0])]);
    const connack = client.#expect(2);
    client.#send(Buffer.concat([Buffer.from([0x10]), remainingLength(variable.length + id.length), variable, id]));
    const ack = await connack;
    if (ack[1] !== 0) throw new Error(`CONNECT refused, return code ${ack[1]}`);
    return client;
  }

  onMessage(handler: MessageHandler): void {
    this.#onMessage = handler;
  }

  /** One SUBSCRIBE for all filters at `qos`; rejects if any is refused (0x80). */
  async subscribe(filters: string[], qos: 0 | 1): Promise<void> {
    const id = this.#packetId();
    const body = Buffer.concat([Buffer.from([id >> 8, id & 0xff]), ...filters.flatMap((f) => [str(f), Buffer.from([qos])])]);
    const suback = this.#expect(9);
    this.#send(Buffer.concat([Buffer.from([0x82]), remainingLength(body.length), body]));
    const ack = await suback;
    if (ack.subarray(2).includes(0x80)) throw new Error('SUBSCRIBE refused');
  }

  publish(topic: string, payload: string, qos: 0 | 1): void {
    if (this.#closed) return;
    const t = utf8(topic);
    const p = utf8(payload);
    const varLen = 2 + t.length + (qos === 1 ? 2 : 0);
    const rl = remainingLength(varLen + p.length);
    const packet = Buffer.allocUnsafe(1 + rl.length + varLen + p.length);
    let at = 0;
    packet[at++] = 0x30 | (qos << 1);
    rl.copy(packet, at);
    at += rl.length;
    packet.writeUInt16BE(t.length, at);
    at += 2;
    t.copy(packet, at);
    at += t.length;
    if (qos === 1) {
      packet.writeUInt16BE(this.#packetId(), at);
      at += 2;
    }
    p.copy(packet, at);
    this.#send(packet);
  }

  async end(): Promise<void> {
    if (this.#closed) return;
    this.#send(Buffer.from([0xe0, 0])); // DISCONNECT
    await new Promise<void>((resolve) => {
      this.#socket.end(resolve);
      setTimeout(resolve, 1000).unref();
    });
    this.#socket.destroy();
  }

  #packetId(): number {
    const id = this.#nextId;
    this.#nextId = id === 0xffff ? 1 : id + 1;
    return id;
  }

  #expect(type: number): Promise<Buffer> {
    return new Promise((resolve) => this.#waiters.set(type, resolve));
  }

  /** Queues a packet; everything queued in one event-loop turn goes out in one write. */
  #send(packet: Buffer): void {
    this.#out.push(packet);
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    setImmediate(() => {
      this.#flushScheduled = false;
      const out = this.#out;
      this.#out = [];
      if (!this.#closed) this.#socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
    });
  }

  #onData(chunk: Buffer): void {
    const buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    let at = 0;
    const acks: number[] = [];
    for (;;) {
      if (buf.length - at < 2) break;
      // Remaining length: up to 4 bytes of 7-bit groups.
      let len = 0;
      let mul = 1;
      let i = at + 1;
      let complete = false;
      for (; i < buf.length && i < at + 5; i++) {
        const b = buf[i]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          i++;
          break;
        }
      }
      if (!complete || buf.length - i < len) break;
      const header = buf[at]!;
      const body = buf.subarray(i, i + len);
      at = i + len;
      const type = header >> 4;
      if (type === 3) {
        const qos = (header >> 1) & 3;
        const tlen = body.readUInt16BE(0);
        const topic = body.toString('utf8', 2, 2 + tlen);
        let p = 2 + tlen;
        if (qos > 0) {
          acks.push(body.readUInt16BE(p));
          p += 2;
        }
        this.#onMessage(topic, body.subarray(p));
      } else if (type === 4) {
        // PUBACK for our QoS 1 publish: nothing to do (the reply on the accepted topic is what we measure).
      } else {
        const w = this.#waiters.get(type);
        if (w) {
          this.#waiters.delete(type);
          w(Buffer.from(body));
        }
      }
    }
    this.#buf = at >= buf.length ? Buffer.alloc(0) : Buffer.from(buf.subarray(at));
    if (acks.length > 0) {
      const out = Buffer.allocUnsafe(4 * acks.length);
      acks.forEach((id, k) => {
        out[4 * k] = 0x40;
        out[4 * k + 1] = 2;
        out.writeUInt16BE(id, 4 * k + 2);
      });
      this.#send(out);
    }
  }
}
