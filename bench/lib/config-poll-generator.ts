/**
 * Load generator for `bench/config-poll.ts`, run as a child process (`fork`, IPC): `connections` keep-alive
 * HTTP/1.1 connections, each with one request in flight at a time (no pipelining), each request
 * `GET /api/v1/devices/:uuid/config` with that device's token and its current ETag in `If-None-Match` — the
 * devices taken round robin. A minimal client on `net.Socket` (requests pre-encoded, responses delimited by their
 * head and `content-length`) so that the generator costs as little CPU as possible on the machine it shares with
 * the server; node:http's client costs several times more per request.
 *
 * Messages: `start {host, port, devices: [{uuid, token, etag}], connections, warmupMs, durationMs}` → after the run
 * `done {requests, statuses, histogram, overflow, errors, windowMs}`: counts of the measured window, and the
 * latency histogram (0.01 ms bins up to 100 ms, `overflow` the samples beyond) of requests sent in it.
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';

export interface GeneratorStart {
  type: 'start';
  host: string;
  port: number;
  devices: Array<{ uuid: string; token: string; etag: string }>;
  connections: number;
  warmupMs: number;
  durationMs: number;
}

export interface GeneratorDone {
  type: 'done';
  requests: number;
  statuses: Record<string, number>;
  /** Latency histogram: `histogram[i]` = samples in [i × BIN_MS, (i + 1) × BIN_MS). */
  histogram: number[];
  overflow: number[];
  errors: string[];
  windowMs: number;
}

export const BIN_MS = 0.01;
export const BINS = 10_000;

function run(o: GeneratorStart): Promise<GeneratorDone> {
  const requests = o.devices.map((d) =>
    Buffer.from(
      `GET /api/v1/devices/${encodeURIComponent(d.uuid)}/config HTTP/1.1\r\nhost: ${o.host}:${o.port}\r\nauthorization: Bearer ${d.token}\r\n` +
        `if-none-match: ${d.etag}\r\naccept: application/json\r\nconnection: keep-alive\r\n\r\n`,
      'latin1',
    ),
  );
  const histogram = new Array<number>(BINS).fill(0);
  const overflow: number[] = [];
  const statuses: Record<string, number> = {};
  const errors: string[] = [];
  let count = 0;
  let next = 0;
  const t0 = performance.now();
  const measureFrom = t0 + o.warmupMs;
  const measureTo = measureFrom + o.durationMs;

  return new Promise((resolve) => {
    let open = 0;
    const finish = (): void => {
      if (--open > 0) return;
      resolve({ type: 'done', requests: count, statuses, histogram, overflow, errors: errors.slice(0, 20), windowMs: o.durationMs });
    };
    const connection = (): void => {
      open++;
      const socket = net.connect({ host: o.host, port: o.port });
      socket.setNoDelay(true);
      let buf: Buffer = Buffer.alloc(0);
      let sentAt = 0;
      let need = -1; // body bytes still expected for the current response; -1 = reading the head
      let status = '';
      const send = (): void => {
        const now = performance.now();
        if (now >= measureTo) {
          socket.end();
          return;
        }
        sentAt = now;
        socket.write(requests[next]!);
        next = (next + 1) % requests.length;
      };
      const done = (): void => {
        const at = performance.now();
        if (sentAt >= measureFrom && sentAt < measureTo) {
          count++;
          statuses[status] = (statuses[status] ?? 0) + 1;
          const ms = at - sentAt;
          const bin = Math.floor(ms / BIN_MS);
          if (bin < BINS) histogram[bin]!++;
          else overflow.push(ms);
        }
        send();
      };
      socket.on('connect', send);
      socket.on('data', (chunk: Buffer) => {
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
        for (;;) {
          if (need < 0) {
            const end = buf.indexOf('\r\n\r\n');
            if (end < 0) return;
            const head = buf.subarray(0, end).toString('latin1');
            buf = buf.subarray(end + 4);
            status = head.slice(9, 12);
            const m = /\r\ncontent-length: *(\d+)/i.exec(head);
            need = status === '304' || status === '204' ? 0 : m ? Number(m[1]) : 0;
          }
          if (buf.length < need) return;
          buf = buf.subarray(need);
          need = -1;
          done();
          if (buf.length === 0) return;
        }
      });
      socket.on('error', (err) => {
        if (errors.length < 100) errors.push(err.message);
      });
      socket.on('close', finish);
    };
    for (let i = 0; i < o.connections; i++) connection();
  });
}

process.on('message', (raw) => {
  const msg = raw as GeneratorStart | { type: 'stop' };
  if (msg.type === 'start') {
    void run(msg).then((r) => {
      process.send?.(r);
    });
  } else if (msg.type === 'stop') process.exit(0);
});
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => undefined);
