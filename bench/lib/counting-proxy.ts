/**
 * A TCP proxy that counts what goes through it, for `bench/channels.ts`: bytes (TCP payload: what the
 * application writes, without TCP/IP headers and without TLS) and messages in each direction.
 *
 * - `mqtt`: every connection is parsed as MQTT 3.1.1 (fixed header + remaining length), each packet counted by
 *   type, and the connection attributed to the client id of its CONNECT. A broker registered at the proxy's
 *   address is reached through it by every client — the device and the server alike — so counters are kept per
 *   client id: `stats(clientId)` is what that client exchanged, over all its connections, live and closed.
 * - `http`: HTTP/1.1 messages are delimited (head, then `content-length` or `chunked`; none for 304/204/1xx) and
 *   counted: `up` = requests, `down` = responses. One proxy per device (its own API address), so `stats()` with
 *   no argument is that device's traffic.
 *
 * Up = client → server (the device sends), down = server → client (the device receives).
 */
import net from 'node:net';

export interface DirectionStats {
  bytes: number;
  messages: number;
  /** MQTT: packets per type name; HTTP: `request`/`response <status>`. */
  byType: Record<string, number>;
}

export interface TrafficStats {
  up: DirectionStats;
  down: DirectionStats;
  /** TCP connections opened. */
  connections: number;
}

export const emptyStats = (): TrafficStats => ({
  up: { bytes: 0, messages: 0, byType: {} },
  down: { bytes: 0, messages: 0, byType: {} },
  connections: 0,
});

/** a − b, field by field. */
export function diffStats(a: TrafficStats, b: TrafficStats): TrafficStats {
  const d = (x: DirectionStats, y: DirectionStats): DirectionStats => {
    const byType: Record<string, number> = {};
    for (const k of new Set([...Object.keys(x.byType), ...Object.keys(y.byType)])) {
      const v = (x.byType[k] ?? 0) - (y.byType[k] ?? 0);
      if (v !== 0) byType[k] = v;
    }
    return { bytes: x.bytes - y.bytes, messages: x.messages - y.messages, byType };
  };
  return { up: d(a.up, b.up), down: d(a.down, b.down), connections: a.connections - b.connections };
}

function addInto(into: TrafficStats, s: TrafficStats): void {
  for (const dir of ['up', 'down'] as const) {
    into[dir].bytes += s[dir].bytes;
    into[dir].messages += s[dir].messages;
    for (const [k, v] of Object.entries(s[dir].byType)) into[dir].byType[k] = (into[dir].byType[k] ?? 0) + v;
  }
  into.connections += s.connections;
}

const MQTT_TYPES = ['reserved', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP', 'SUBSCRIBE', 'SUBACK', 'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'AUTH'];

/** Splits a byte stream into MQTT packets; calls `onPacket(type, packet)` for each whole one. */
function mqttSplitter(onPacket: (type: number, packet: Buffer) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  return (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length < 2) return;
      let len = 0;
      let mult = 1;
      let i = 1;
      for (;;) {
        if (i >= buf.length) return; // remaining length incomplete
        const b = buf[i]!;
        len += (b & 0x7f) * mult;
        mult *= 128;
        i++;
        if ((b & 0x80) === 0) break;
        if (i > 4) throw new Error('malformed MQTT remaining length');
      }
      const total = i + len;
      if (buf.length < total) return;
      onPacket(buf[0]! >> 4, buf.subarray(0, total));
      buf = buf.subarray(total);
    }
  };
}

/** The client id of a CONNECT packet (MQTT 3.1/3.1.1/5). */
function connectClientId(packet: Buffer): string | null {
  try {
    let i = 1;
    while (packet[i]! & 0x80) i++;
    i++; // past remaining length
    const nameLen = packet.readUInt16BE(i);
    i += 2 + nameLen;
    const level = packet[i]!;
    i += 1 + 1 + 2; // level, flags, keepalive
    if (level === 5) {
      // properties: varint length + bytes
      let plen = 0;
      let mult = 1;
      for (;;) {
        const b = packet[i++]!;
        plen += (b & 0x7f) * mult;
        mult *= 128;
        if ((b & 0x80) === 0) break;
      }
      i += plen;
    }
    const idLen = packet.readUInt16BE(i);
    return packet.subarray(i + 2, i + 2 + idLen).toString('utf8');
  } catch {
    return null;
  }
}

/** Splits an HTTP/1.1 byte stream into messages; calls `onMessage(kind)` for each whole one. */
function httpSplitter(side: 'request' | 'response', onMessage: (kind: string) => void): (chunk: Buffer) => void {
  let buf: Buffer = Buffer.alloc(0);
  let state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'trailer' = 'head';
  let remaining = 0;
  let kind = '';
  return (chunk) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    for (;;) {
      if (state === 'head') {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        const [start, ...lines] = head.split('\r\n');
        const headers = new Map(lines.map((l) => [l.slice(0, l.indexOf(':')).trim().toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]));
        let status = 0;
        if (side === 'response') {
          status = Number(start!.split(' ')[1]);
          kind = `response ${status}`;
        } else {
          kind = 'request';
        }
        const noBody = side === 'response' && (status === 304 || status === 204 || (status >= 100 && status < 200));
        if (noBody) {
          onMessage(kind);
          continue;
        }
        if (/chunked/i.test(headers.get('transfer-encoding') ?? '')) {
          state = 'chunk-size';
          continue;
        }
        remaining = Number(headers.get('content-length') ?? 0);
        state = 'body';
      }
      if (state === 'body') {
        const take = Math.min(remaining, buf.length);
        remaining -= take;
        buf = buf.subarray(take);
        if (remaining > 0) return;
        onMessage(kind);
        state = 'head';
        continue;
      }
      if (state === 'chunk-size') {
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const size = parseInt(buf.subarray(0, eol).toString('latin1').split(';')[0]!, 16);
        buf = buf.subarray(eol + 2);
        if (size === 0) {
          state = 'trailer';
        } else {
          remaining = size + 2;
          state = 'chunk-data';
        }
        continue;
      }
      if (state === 'chunk-data') {
        const take = Math.min(remaining, buf.length);
        remaining -= take;
        buf = buf.subarray(take);
        if (remaining > 0) return;
        state = 'chunk-size';
        continue;
      }
      // trailer: lines until an empty one
      const eol = buf.indexOf('\r\n');
      if (eol < 0) return;
      const empty = eol === 0;
      buf = buf.subarray(eol + 2);
      if (empty) {
        onMessage(kind);
        state = 'head';
      }
    }
  };
}

export interface CountingProxy {
  host: '127.0.0.1';
  port: number;
  /** MQTT: traffic of that client id (all its connections); HTTP: everything (the id is ignored). */
  stats(clientId?: string): TrafficStats;
  /** Client ids seen (MQTT). */
  clients(): string[];
  close(): Promise<void>;
}

/** Starts a counting proxy on 127.0.0.1 (a free port) in front of `target`. */
export async function startCountingProxy(o: { protocol: 'mqtt' | 'http'; targetHost: string; targetPort: number }): Promise<CountingProxy> {
  const closed = new Map<string, TrafficStats>(); // per client id, connections already closed
  const live = new Set<{ id: () => string; stats: TrafficStats; sockets: net.Socket[] }>();
  const server = net.createServer((client) => {
    client.setNoDelay(true);
    const upstream = net.connect({ host: o.targetHost, port: o.targetPort });
    upstream.setNoDelay(true);
    const stats = emptyStats();
    stats.connections = 1;
    let clientId = o.protocol === 'http' ? '*' : '?';
    const entry = { id: () => clientId, stats, sockets: [client, upstream] };
    live.add(entry);
    const count = (dir: 'up' | 'down') => (type: string) => {
      stats[dir].messages++;
      stats[dir].byType[type] = (stats[dir].byType[type] ?? 0) + 1;
    };
    let parseUp: (c: Buffer) => void;
    let parseDown: (c: Buffer) => void;
    if (o.protocol === 'mqtt') {
      parseUp = mqttSplitter((type, packet) => {
        if (type === 1 && clientId === '?') clientId = connectClientId(packet) ?? '?';
        count('up')(MQTT_TYPES[type]!);
      });
      parseDown = mqttSplitter((type) => count('down')(MQTT_TYPES[type]!));
    } else {
      parseUp = httpSplitter('request', count('up'));
      parseDown = httpSplitter('response', count('down'));
    }
    let failed = false;
    const safe = (f: (c: Buffer) => void) => (c: Buffer) => {
      if (failed) return;
      try {
        f(c);
      } catch {
        failed = true; // a stream we cannot parse: bytes are still counted
      }
    };
    const up = safe(parseUp);
    const down = safe(parseDown);
    client.on('data', (c: Buffer) => {
      stats.up.bytes += c.length;
      up(c);
      if (!upstream.write(c)) client.pause();
    });
    upstream.on('drain', () => client.resume());
    upstream.on('data', (c: Buffer) => {
      stats.down.bytes += c.length;
      down(c);
      if (!client.write(c)) upstream.pause();
    });
    client.on('drain', () => upstream.resume());
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      live.delete(entry);
      const into = closed.get(clientId) ?? emptyStats();
      addInto(into, stats);
      closed.set(clientId, into);
    };
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => {
      upstream.destroy();
      finish();
    });
    upstream.on('close', () => {
      client.destroy();
      finish();
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    host: '127.0.0.1',
    port,
    stats(clientId) {
      const id = o.protocol === 'http' ? '*' : clientId;
      const out = emptyStats();
      for (const [k, s] of closed) if (id === undefined || k === id) addInto(out, s);
      for (const e of live) if (id === undefined || e.id() === id) addInto(out, e.stats);
      return out;
    },
    clients: () => [...new Set([...closed.keys(), ...[...live].map((e) => e.id())])],
    async close() {
      for (const e of live) for (const s of e.sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
