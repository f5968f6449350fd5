/**
 * The MQTT packets the server's broker connections use (`mqtt-link.ts`), client side, MQTT 3.1.1 (level 4) and
 * MQTT 5: encoding CONNECT, SUBSCRIBE, UNSUBSCRIBE, PUBLISH (QoS 0/1), PUBACK, PINGREQ, DISCONNECT, and reading
 * what a broker sends a client (CONNACK, PUBLISH, PUBACK, SUBACK, UNSUBACK, PINGRESP, DISCONNECT) from a byte stream.
 *
 * Why not mqtt.js: under shadow load mqtt.js and the stream plumbing around it took ≈ 20 % of the server's CPU
 * (bench/shadow-throughput profile: a packet object, a `nextTick` and several small socket writes per packet).
 * Each packet here is one `Buffer`, built in one allocation, and a read's packets are parsed in place.
 *
 * MQTT 5 properties are written empty (no topic aliases, no session expiry: a clean session) and skipped when read,
 * except CONNACK's Receive Maximum, Server Keep Alive and Maximum Packet Size, which the link honours.
 */

export type MqttVersion = 4 | 5;

/** A broker broke the protocol (a packet that cannot be read): the connection must be closed. */
export class MqttProtocolError extends Error {
  constructor(message: string) {
    super(`MQTT protocol error: ${message}`);
    this.name = 'MqttProtocolError';
  }
}

/** The largest Remaining Length MQTT can express (4 bytes of 7 bits). */
const MAX_REMAINING = 268_435_455;

function varIntLength(n: number): number {
  return n < 128 ? 1 : n < 16_384 ? 2 : n < 2_097_152 ? 3 : 4;
}

/** Writes `n` as an MQTT variable byte integer at `at`; returns the next offset. */
function writeVarInt(buf: Buffer, at: number, n: number): number {
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    buf[at++] = b;
  } while (n > 0);
  return at;
}

/** One packet: fixed header byte, Remaining Length, then `body` bytes written by `fill` from the returned offset. */
function packet(header: number, bodyLength: number, fill: (buf: Buffer, at: number) => void): Buffer {
  if (bodyLength > MAX_REMAINING) throw new RangeError(`MQTT packet too large (${bodyLength} bytes)`);
  const buf = Buffer.allocUnsafe(1 + varIntLength(bodyLength) + bodyLength);
  buf[0] = header;
  fill(buf, writeVarInt(buf, 1, bodyLength));
  return buf;
}

function writeString(buf: Buffer, at: number, s: Buffer): number {
  buf.writeUInt16BE(s.length, at);
  s.copy(buf, at + 2);
  return at + 2 + s.length;
}

function utf8(s: string, what: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  if (b.length > 0xffff) throw new RangeError(`MQTT ${what} longer than 65,535 bytes`);
  return b;
}

export interface ConnectOptions {
  version: MqttVersion;
  clientId: string;
  /** Seconds; 0 = off. */
  keepalive: number;
  username?: string;
  password?: string;
}

/** CONNECT with a clean session (3.1.1) / clean start and no session expiry (5). */
export function encodeConnect(o: ConnectOptions): Buffer {
  const id = utf8(o.clientId, 'client id');
  const user = o.username !== undefined ? utf8(o.username, 'username') : null;
  const pass = o.password !== undefined ? utf8(o.password, 'password') : null;
  const props = o.version === 5 ? 1 : 0; // properties length 0
  const length = 10 + props + 2 + id.length + (user ? 2 + user.length : 0) + (pass ? 2 + pass.length : 0);
  const flags = 0x02 | (user ? 0x80 : 0) | (pass ? 0x40 : 0);
  return packet(0x10, length, (buf, at) => {
    at = writeString(buf, at, Buffer.from('MQTT'));
    buf[at++] = o.version;
    buf[at++] = flags;
    buf.writeUInt16BE(o.keepalive, at);
    at += 2;
    if (props) buf[at++] = 0;
    at = writeString(buf, at, id);
    if (user) at = writeString(buf, at, user);
    if (pass) writeString(buf, at, pass);
  });
}

/** SUBSCRIBE `filters`, each at `qos` (MQTT 5 subscription options otherwise 0: local messages too, retained as sent). */
export function encodeSubscribe(version: MqttVersion, id: number, filters: readonly string[], qos: 0 | 1): Buffer {
  const encoded = filters.map((f) => utf8(f, 'topic filter'));
  const length = 2 + (version === 5 ? 1 : 0) + encoded.reduce((n, f) => n + 3 + f.length, 0);
  return packet(0x82, length, (buf, at) => {
    buf.writeUInt16BE(id, at);
    at += 2;
    if (version === 5) buf[at++] = 0;
    for (const f of encoded) {
      at = writeString(buf, at, f);
      buf[at++] = qos;
    }
  });
}

export function encodeUnsubscribe(version: MqttVersion, id: number, filters: readonly string[]): Buffer {
  const encoded = filters.map((f) => utf8(f, 'topic filter'));
  const length = 2 + (version === 5 ? 1 : 0) + encoded.reduce((n, f) => n + 2 + f.length, 0);
  return packet(0xa2, length, (buf, at) => {
    buf.writeUInt16BE(id, at);
    at += 2;
    if (version === 5) buf[at++] = 0;
    for (const f of encoded) at = writeString(buf, at, f);
  });
}

/** PUBLISH; `id` is used (and required) at QoS 1 only. */
export function encodePublish(version: MqttVersion, topic: string, payload: string | Buffer, qos: 0 | 1, retain: boolean, id = 0): Buffer {
  const t = utf8(topic, 'topic');
  const payloadLength = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  const length = 2 + t.length + (qos === 1 ? 2 : 0) + (version === 5 ? 1 : 0) + payloadLength;
  return packet(0x30 | (qos << 1) | (retain ? 1 : 0), length, (buf, at) => {
    at = writeString(buf, at, t);
    if (qos === 1) {
      buf.writeUInt16BE(id, at);
      at += 2;
    }
    if (version === 5) buf[at++] = 0;
    if (typeof payload === 'string') buf.write(payload, at, 'utf8');
    else payload.copy(buf, at);
  });
}

/** PUBACK, success (MQTT 5 allows the reason code and properties to be left out when the reason is 0). */
export function encodePuback(id: number): Buffer {
  return Buffer.from([0x40, 2, id >> 8, id & 0xff]);
}

export const PINGREQ: Buffer = Buffer.from([0xc0, 0]);
/** DISCONNECT, normal (an empty MQTT 5 DISCONNECT means reason 0 too). */
export const DISCONNECT: Buffer = Buffer.from([0xe0, 0]);

// --- reading -------------------------------------------------------------------------------------------------

export type IncomingPacket =
  | { type: 'connack'; sessionPresent: boolean; code: number; receiveMaximum?: number; serverKeepAlive?: number; maximumPacketSize?: number }
  | { type: 'publish'; topic: string; payload: Buffer; qos: 0 | 1 | 2; retain: boolean; id: number }
  | { type: 'puback'; id: number; code: number }
  | { type: 'suback'; id: number; codes: number[] }
  | { type: 'unsuback'; id: number; codes: number[] }
  | { type: 'pingresp' }
  | { type: 'disconnect'; code: number };

/** Bytes of each MQTT 5 property's value, by identifier: a count, or how to read it. */
const PROPERTY_SIZE: Record<number, number | 'varint' | 'string' | 'pair'> = {
  0x01: 1, 0x02: 4, 0x03: 'string', 0x08: 'string', 0x09: 'string', 0x0b: 'varint', 0x11: 4, 0x12: 'string',
  0x13: 2, 0x15: 'string', 0x16: 'string', 0x17: 1, 0x18: 4, 0x19: 1, 0x1a: 'string', 0x1c: 'string', 0x1f: 'string',
  0x21: 2, 0x22: 2, 0x23: 2, 0x24: 1, 0x25: 1, 0x26: 'pair', 0x27: 4, 0x28: 1, 0x29: 1, 0x2a: 1,
};

/** A variable byte integer at `at` (inside `end`): its value and the offset after it. */
function readVarInt(buf: Buffer, at: number, end: number): { value: number; next: number } | null {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 4; i++) {
    if (at >= end) return null;
    const b = buf[at++]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return { value, next: at };
    mul *= 128;
  }
  throw new MqttProtocolError('variable byte integer longer than 4 bytes');
}

/** Reads an MQTT 5 property block at `at`; returns the offset after it and the numeric properties seen. */
function readProperties(buf: Buffer, at: number, end: number): { next: number; values: Map<number, number> } {
  const len = readVarInt(buf, at, end);
  if (!len || len.next + len.value > end) throw new MqttProtocolError('properties run past the packet');
  const stop = len.next + len.value;
  const values = new Map<number, number>();
  let p = len.next;
  while (p < stop) {
    const id = buf[p++]!;
    const size = PROPERTY_SIZE[id];
    if (size === undefined) throw new MqttProtocolError(`unknown property 0x${id.toString(16)}`);
    if (typeof size === 'number') {
      if (p + size > stop) throw new MqttProtocolError('property runs past its block');
      values.set(id, size === 1 ? buf[p]! : size === 2 ? buf.readUInt16BE(p) : buf.readUInt32BE(p));
      p += size;
    } else if (size === 'varint') {
      const v = readVarInt(buf, p, stop);
      if (!v) throw new MqttProtocolError('property runs past its block');
      p = v.next;
    } else {
      for (let k = size === 'pair' ? 2 : 1; k > 0; k--) {
        if (p + 2 > stop) throw new MqttProtocolError('property runs past its block');
        p += 2 + buf.readUInt16BE(p);
      }
      if (p > stop) throw new MqttProtocolError('property runs past its block');
    }
  }
  return { next: stop, values };
}

function need(ok: boolean, what: string): void {
  if (!ok) throw new MqttProtocolError(what);
}

/** One packet from its fixed header byte and body (`buf[at, end)`). */
function decode(version: MqttVersion, header: number, buf: Buffer, at: number, end: number): IncomingPacket {
  const type = header >> 4;
  const len = end - at;
  switch (type) {
    case 2: {
      need(len >= 2, 'CONNACK too short');
      const out: IncomingPacket = { type: 'connack', sessionPresent: (buf[at]! & 1) === 1, code: buf[at + 1]! };
      if (version === 5 && len > 2) {
        const { values } = readProperties(buf, at + 2, end);
        if (values.has(0x21)) out.receiveMaximum = values.get(0x21)!;
        if (values.has(0x13)) out.serverKeepAlive = values.get(0x13)!;
        if (values.has(0x27)) out.maximumPacketSize = values.get(0x27)!;
      }
      return out;
    }
    case 3: {
      const bits = (header >> 1) & 3;
      need(bits !== 3, 'PUBLISH with QoS 3');
      const qos = bits as 0 | 1 | 2;
      need(len >= 2, 'PUBLISH too short');
      const tlen = buf.readUInt16BE(at);
      let p = at + 2 + tlen;
      need(p <= end, 'PUBLISH topic runs past the packet');
      const topic = buf.toString('utf8', at + 2, p);
      let id = 0;
      if (qos > 0) {
        need(p + 2 <= end, 'PUBLISH without packet id');
        id = buf.readUInt16BE(p);
        p += 2;
      }
      if (version === 5) p = readProperties(buf, p, end).next;
      return { type: 'publish', topic, payload: buf.subarray(p, end), qos, retain: (header & 1) === 1, id };
    }
    case 4: {
      need(len >= 2, 'PUBACK too short');
      return { type: 'puback', id: buf.readUInt16BE(at), code: len > 2 ? buf[at + 2]! : 0 };
    }
    case 9:
    case 11: {
      need(len >= 2, 'SUBACK/UNSUBACK too short');
      let p = at + 2;
      if (version === 5) p = readProperties(buf, p, end).next;
      const codes = [...buf.subarray(p, end)];
      return { type: type === 9 ? 'suback' : 'unsuback', id: buf.readUInt16BE(at), codes };
    }
    case 13:
      return { type: 'pingresp' };
    case 14:
      return { type: 'disconnect', code: len > 0 ? buf[at]! : 0 };
    default:
      throw new MqttProtocolError(`unexpected packet type ${type} from the broker`);
  }
}

/**
 * Splits a byte stream into packets. `push` each chunk as it arrives; complete packets go to `onPacket` in order and
 * a partial one is kept for the next chunk. Throws {@link MqttProtocolError} on bytes that are not MQTT.
 */
export class PacketReader {
  #rest: Buffer | null = null;

  constructor(
    private readonly version: MqttVersion,
    private readonly onPacket: (p: IncomingPacket) => void,
  ) {}

  push(chunk: Buffer): void {
    const buf = this.#rest === null ? chunk : Buffer.concat([this.#rest, chunk]);
    this.#rest = null;
    let at = 0;
    while (at < buf.length) {
      const len = readVarInt(buf, at + 1, buf.length);
      if (!len || len.next + len.value > buf.length) break;
      const header = buf[at]!;
      at = len.next + len.value;
      this.onPacket(decode(this.version, header, buf, len.next, at));
    }
    // Copied: a subarray would keep the whole chunk alive until the packet completes.
    if (at < buf.length) this.#rest = Buffer.from(buf.subarray(at));
  }
}

const V4_REFUSALS: Record<number, string> = {
  1: 'Unacceptable protocol version',
  2: 'Identifier rejected',
  3: 'Server unavailable',
  4: 'Bad username or password',
  5: 'Not authorized',
};

const V5_REASONS: Record<number, string> = {
  0x80: 'Unspecified error',
  0x81: 'Malformed Packet',
  0x82: 'Protocol Error',
  0x83: 'Implementation specific error',
  0x84: 'Unsupported Protocol Version',
  0x85: 'Client Identifier not valid',
  0x86: 'Bad User Name or Password',
  0x87: 'Not authorized',
  0x88: 'Server unavailable',
  0x89: 'Server busy',
  0x8a: 'Banned',
  0x8b: 'Server shutting down',
  0x8c: 'Bad authentication method',
  0x8d: 'Keep Alive timeout',
  0x8e: 'Session taken over',
  0x8f: 'Topic Filter invalid',
  0x90: 'Topic Name invalid',
  0x93: 'Receive Maximum exceeded',
  0x95: 'Packet too large',
  0x97: 'Quota exceeded',
  0x98: 'Administrative action',
  0x99: 'Payload format invalid',
  0x9a: 'Retain not supported',
  0x9b: 'QoS not supported',
  0x9c: 'Use another server',
  0x9d: 'Server moved',
  0x9f: 'Connection rate exceeded',
};

/** A broker's reason code in words: `Not authorized`, or `reason 0x..` for one we do not know. */
export function reasonText(version: MqttVersion, code: number, where: 'connack' | 'other' = 'other'): string {
  const known = version === 4 && where === 'connack' ? V4_REFUSALS[code] : V5_REASONS[code];
  return known ?? `reason 0x${code.toString(16).padStart(2, '0')}`;
}
