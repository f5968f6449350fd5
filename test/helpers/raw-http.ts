/**
 * HTTP clients for hostile-input tests, on loopback only.
 *
 * - `sendHttp`: node's `http.request` over a keep-alive agent (fast) for requests node can send as given: a path of
 *   bytes 0x21–0xff (latin1, so raw non-UTF-8 bytes reach the server unchanged), header values without CR/LF/NUL.
 *   No URL normalisation (`../` reaches the server as sent, unlike `fetch`).
 * - `sendRaw`: the request written byte for byte on a fresh socket (`Connection: close`), for what node refuses
 *   to send: spaces, NUL and control bytes in the request line, broken headers, bad chunking, odd methods.
 *
 * Both resolve with what came back — never reject on a server's behaviour: `status` 0 means the connection ended
 * without an answer, -1 that none came in time. An event stream (`text/event-stream`) resolves at its head.
 */
import http from 'node:http';
import net from 'node:net';

export interface HttpAnswer {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  /** Set when no (complete) answer came: why. */
  failure?: string;
}

export interface HttpCall {
  method: string;
  /** Request target as a latin1 string (each char one byte). */
  path: string;
  headers: Record<string, string>;
  body?: Buffer | undefined;
}

/** True when `http.request` can send `call` exactly as given. */
export function nodeCanSend(call: HttpCall): boolean {
  if (!/^[A-Z]+$/.test(call.method) || !http.METHODS.includes(call.method) || call.method === 'CONNECT') return false;
  if (!/^[\u0021-\u00ff]*$/.test(call.path) || !call.path.startsWith('/')) return false;
  for (const [k, v] of Object.entries(call.headers)) {
    // eslint-disable-next-line no-control-regex
    if (!/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(k) || /[\u0000\r\n]/.test(v) || /[^\u0000-\u00ff]/.test(v)) return false;
  }
  return true;
}

export function createHttpClient(port: number, { maxSockets = 16, timeoutMs = 10_000 } = {}) {
  const agent = new http.Agent({ keepAlive: true, maxSockets });

  function sendHttp(call: HttpCall): Promise<HttpAnswer> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (a: HttpAnswer): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(a);
      };
      const headers = { ...call.headers, ...(call.body !== undefined ? { 'content-length': String(call.body.length) } : {}) };
      const req = http.request({ host: '127.0.0.1', port, method: call.method, path: call.path, headers, agent, insecureHTTPParser: false });
      const timer = setTimeout(() => {
        finish({ status: -1, headers: {}, body: Buffer.alloc(0), failure: `no answer within ${timeoutMs} ms` });
        req.destroy();
      }, timeoutMs);
      req.on('error', (err) => finish({ status: 0, headers: {}, body: Buffer.alloc(0), failure: err.message }));
      req.on('response', (res) => {
        const h = flatten(res.headers);
        if ((h['content-type'] ?? '').startsWith('text/event-stream')) {
          finish({ status: res.statusCode ?? 0, headers: h, body: Buffer.alloc(0) });
          req.destroy();
          return;
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => finish({ status: res.statusCode ?? 0, headers: h, body: Buffer.concat(chunks) }));
        res.on('error', (err) => finish({ status: 0, headers: {}, body: Buffer.alloc(0), failure: err.message }));
      });
      req.end(call.body);
    });
  }

  function sendRaw(bytes: Buffer): Promise<HttpAnswer> {
    return new Promise((resolve) => {
      const socket = net.connect({ host: '127.0.0.1', port });
      const chunks: Buffer[] = [];
      let done = false;
      const finish = (failure?: string): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        socket.destroy();
        resolve(parseRaw(Buffer.concat(chunks), failure));
      };
      const timer = setTimeout(() => finish(`no complete answer within ${timeoutMs} ms`), timeoutMs);
      socket.on('connect', () => socket.write(bytes));
      socket.on('data', (c: Buffer) => {
        chunks.push(c);
        const head = Buffer.concat(chunks).toString('latin1');
        // An event stream never ends: its head is the answer.
        if (/\r\ncontent-type: text\/event-stream/i.test(head.split('\r\n\r\n')[0] ?? '') && head.includes('\r\n\r\n')) finish();
      });
      socket.on('end', () => finish());
      socket.on('close', () => finish());
      socket.on('error', (err) => finish(err.message));
    });
  }

  return { sendHttp, sendRaw, close: () => agent.destroy() };
}

/** Builds the bytes of a request (the target and header values as latin1 strings; `Connection: close` added). */
export function rawRequestBytes(call: HttpCall & { version?: string; extraHeaderLines?: string[] }): Buffer {
  const lines = [`${call.method} ${call.path} ${call.version ?? 'HTTP/1.1'}`, 'Host: 127.0.0.1', 'Connection: close'];
  for (const [k, v] of Object.entries(call.headers)) lines.push(`${k}: ${v}`);
  if (call.body !== undefined && !Object.keys(call.headers).some((k) => /^(content-length|transfer-encoding)$/i.test(k))) lines.push(`Content-Length: ${call.body.length}`);
  lines.push(...(call.extraHeaderLines ?? []));
  return Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), call.body ?? Buffer.alloc(0)]);
}

function parseRaw(data: Buffer, failure?: string): HttpAnswer {
  const split = data.indexOf('\r\n\r\n');
  if (split < 0) return { status: data.length === 0 ? 0 : -1, headers: {}, body: Buffer.alloc(0), failure: failure ?? `incomplete answer: ${JSON.stringify(data.toString('latin1').slice(0, 80))}` };
  const [statusLine, ...headerLines] = data.subarray(0, split).toString('latin1').split('\r\n');
  const m = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine ?? '');
  const headers: Record<string, string> = {};
  for (const line of headerLines) {
    const i = line.indexOf(':');
    if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  let body = data.subarray(split + 4);
  if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  else if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status: m ? Number(m[1]) : -1, headers, body, ...(m ? {} : { failure: `not an HTTP answer: ${JSON.stringify(statusLine)}` }) };
}

function dechunk(b: Buffer): Buffer {
  const out: Buffer[] = [];
  let at = 0;
  while (at < b.length) {
    const eol = b.indexOf('\r\n', at);
    if (eol < 0) break;
    const size = parseInt(b.subarray(at, eol).toString('latin1'), 16);
    if (!Number.isFinite(size) || size === 0) break;
    out.push(b.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
  return Buffer.concat(out);
}

function flatten(h: http.IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined) out[k] = Array.isArray(v) ? v.join(', ') : v;
  return out;
}
