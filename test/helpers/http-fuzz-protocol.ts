/**
 * Protocol-level cases of the HTTP fuzz suite (test/integration/http-fuzz.test.ts): requests malformed below the
 * routes — request line, headers, framing — written byte for byte on a socket of their own.
 */
import fc from 'fast-check';
import { hostileId, toBytes } from './fuzz-values.ts';
import { pick, type FuzzCase, type FuzzContext, type Who } from './http-fuzz-cases.ts';
import { rawRequestBytes } from './raw-http.ts';

/**
 * Requests malformed below the routes — the request line, the headers, the framing — written byte for byte. Each
 * is complete (no declared byte is missing), so every one must get an answer.
 */
export function protocolFuzzCases(ctx: FuzzContext, count: number, seed: number): FuzzCase[] {
  const own = `/api/v1/devices/${ctx.device.uuid}/shadow`;
  const auth = `Bearer ${ctx.tokens.device}`;
  const admin = `Bearer ${ctx.tokens.admin}`;
  const shapes = fc.record({ kind: fc.nat(11), n: fc.nat(), at: fc.nat(), hostile: hostileId });
  return fc.sample(shapes, { numRuns: count, seed }).map(({ kind, n, at, hostile }) => {
    const base = { method: 'GET', path: own, headers: { authorization: auth } as Record<string, string> };
    const insert = (path: string, bytes: string): string => path.slice(0, (at % (path.length - 1)) + 1) + bytes + path.slice((at % (path.length - 1)) + 1);
    const reject: string[] = [];
    let raw: Buffer;
    let family: string;
    switch (kind) {
      case 0: // control, space, NUL and raw non-ASCII bytes inside the target
        family = 'raw/target-bytes';
        raw = rawRequestBytes({ ...base, path: insert(own, pick([' ', '\u0000', '\t', '\u0001', '\u007f', '\r', '#', '\\', '\u00ff', Buffer.from('名', 'utf8').toString('latin1'), '%00', '\u0000\u0000'], n)) });
        break;
      case 1: // a hostile identifier written raw (UTF-8 bytes, unescaped) as the device uuid
        family = 'raw/hostile-uuid';
        raw = rawRequestBytes({ ...base, path: `/api/v1/devices/${toBytes(hostile).toString('latin1')}/shadow` });
        if (!hostile.includes(ctx.device.uuid)) reject.push('a device token on another uuid');
        break;
      case 2:
        family = 'raw/method';
        raw = rawRequestBytes({ ...base, method: pick(['FOO', 'get', 'G\u0000ET', 'PROPFIND', 'TRACE', 'M-SEARCH', 'PURGE', 'LINK', 'SEARCH', 'ACL', 'x'.repeat(100)], n) });
        break;
      case 3:
        family = 'raw/version';
        raw = rawRequestBytes({ ...base, version: pick(['HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', 'HTTX/1.1', 'HTTP/9.9', 'HTTP/1', 'http/1.1'], n) });
        break;
      case 4:
        family = 'raw/header-syntax';
        raw = rawRequestBytes({ ...base, extraHeaderLines: [pick(['X-Bad\u0000: 1', 'X Bad: 1', 'NoColonHere', ' folded: continuation', 'X-Ctl: a\u0001b', 'X-Utf: ' + Buffer.from('é名', 'utf8').toString('latin1'), ': empty-name', 'X-Nul: \u0000'], n)] });
        break;
      case 5: {
        family = 'raw/content-length';
        const body = Buffer.from('{"state":{"reported":{"a":1}}}');
        const lines = pick([['Content-Length: -1'], ['Content-Length: abc'], ['Content-Length: 5', 'Content-Length: 6'], ['Content-Length: 1e2'], ['Content-Length: 99999999999999999999']], n);
        raw = rawRequestBytes({ method: 'POST', path: own, headers: { authorization: auth, 'content-type': 'application/json', ...Object.fromEntries(lines.map((l, i) => [i === 0 ? 'Content-Length' : 'content-length', l.split(': ')[1]!])) }, body });
        reject.push('a malformed Content-Length');
        break;
      }
      case 6: {
        family = 'raw/chunked';
        const chunks = pick(['zz\r\nabc\r\n0\r\n\r\n', '5\r\nab\r\n0\r\n\r\n', '-1\r\n\r\n', 'ffffffffffffffffff\r\n', '0x5\r\nabcde\r\n0\r\n\r\n'], n);
        raw = rawRequestBytes({ method: 'POST', path: own, headers: { authorization: auth, 'content-type': 'application/json', 'transfer-encoding': 'chunked' }, body: Buffer.from(chunks, 'latin1') });
        reject.push('a malformed chunked body');
        break;
      }
      case 7: {
        family = 'raw/te-and-cl';
        raw = rawRequestBytes({ method: 'POST', path: own, headers: { authorization: auth, 'content-type': 'application/json', 'transfer-encoding': 'chunked', 'content-length': '4' }, body: Buffer.from('2\r\n{}\r\n0\r\n\r\n', 'latin1') });
        reject.push('Transfer-Encoding and Content-Length together');
        break;
      }
      case 8: {
        family = 'raw/target-form';
        const target = pick(['*', `http://127.0.0.1${own}`, `//127.0.0.1${own}`, 'api/v1/devices', `${own}?${'q=1&'.repeat(3000)}`, `${own}#frag`, `/api/v1/devices/${ctx.sentinel.uuid}/shadow/../../${ctx.device.uuid}/shadow`], n);
        raw = rawRequestBytes({ ...base, path: target });
        if (target.includes(ctx.sentinel.uuid)) reject.push('the fuzz device reaching for the sentinel');
        break;
      }
      case 9:
        family = 'raw/overlong';
        raw = rawRequestBytes({ ...base, path: `/api/v1/devices/${'x'.repeat(pick([17_000, 40_000, 70_000], n))}/shadow` });
        reject.push('an overlong request line');
        break;
      case 10:
        family = 'raw/header-values';
        raw = rawRequestBytes({ ...base, headers: { authorization: pick([`${admin}\u0000`, `Bearer ${'é'.repeat(10)}`, `${auth} ${auth}`, 'Bearer \u00ff\u00fe'], n) } });
        if (n % 4 !== 2) reject.push('a malformed authorization header');
        break;
      default:
        family = 'raw/many-headers';
        raw = rawRequestBytes({ ...base, extraHeaderLines: Array.from({ length: pick([100, 1000, 3000], n) }, (_, i) => `X-H${i}: ${'v'.repeat(10)}`) });
        break;
    }
    return { family, route: 'protocol', who: 'device' as Who, call: base, raw, reject };
  });
}
