/**
 * Hostile values shared by the fuzz suites (HTTP and MQTT): identifiers, JSON values and whole bodies that a
 * careless server would mis-handle — path traversal, MQTT wildcards, `$` prefixes, NUL, lone surrogates, overlong
 * and non-UTF-8 strings, prototype keys, numbers JSON cannot carry, deep nesting. Deterministic arbitraries:
 * callers sample them with a seed.
 */
import fc from 'fast-check';

/** Identifiers (uuids, names, job ids) that no route or topic may take for a valid one of someone else's. */
export const HOSTILE_IDS: readonly string[] = [
  '', ' ', '.', '..', '../', '../..', '../../etc/passwd', './x', 'a/../b', '..\\..\\x', 'a/b', '/',
  '+', '#', '$', '$next', '$aws', '$SYS', 'a+b', 'a#b', '+/#', '$share/g/x',
  '\u0000', 'a\u0000b', 'x\u0000', '\t', '\n', 'a\r\nSet-Cookie: x=1', '\u007f', '\u001b[31m',
  'é', 'naïve', '名前', '🙂', '\ufeffbom', '\uffff', 'a\u200bb', 'Ａ', 'İ',
  "'; DROP TABLE devices; --", '" OR 1=1 --', '%', '%%', '%00', '%zz', '%2e%2e%2f', '${jndi:ldap://127.0.0.1/x}', '{{7*7}}', '<script>',
  '__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'null', 'undefined', 'NaN', 'Infinity', 'true',
  '-1', '0', '1e309', '0x10', ' 7', '7 ', '00', '1.5', '-0', '9007199254740993', '2147483648',
  'x'.repeat(65), 'x'.repeat(129), 'x'.repeat(1000), 'x'.repeat(5000),
  'CON', 'nul', 'a:b:c', ':', '-', '_',
];

/** Strings that are not valid UTF-8 once encoded (lone surrogates; `Buffer.from` would replace them). */
export const LONE_SURROGATES: readonly string[] = ['\ud800', 'a\udfffb', '\udc00\ud800', 'x\udbff'];

/** Byte sequences that are not UTF-8: over-long forms, surrogates, truncated sequences, bytes never valid. */
export const NON_UTF8_BYTES: readonly number[][] = [[0xff], [0xfe], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xc3], [0xe2, 0x82], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80]];

/** A random identifier: mostly hostile, sometimes random text (any Unicode, incl. control characters). */
export const hostileId: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: fc.constantFrom(...HOSTILE_IDS), weight: 6 },
  { arbitrary: fc.constantFrom(...LONE_SURROGATES), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary', minLength: 1, maxLength: 40 }), weight: 2 },
  { arbitrary: fc.string({ minLength: 1, maxLength: 20 }).map((s) => `${s}/${s}`), weight: 1 },
);

/** JSON texts of values of the wrong type for any field (as text: some cannot be built with JSON.stringify). */
export const WRONG_TYPE_JSON: readonly string[] = [
  'null', 'true', 'false', '0', '-1', '1.5', '-0', '1e400', '-1e400', '9007199254740993', '1e-400', '"1"', '""', '"x"',
  '[]', '[1]', '[null]', '{}', '{"a":1}', '"\\u0000"', '"a\\u0000b"', '"\\ud800"', '"\\udfff\\ud800"', `"${'y'.repeat(5000)}"`,
  '"\\n"', '"🙂"', '[[[[[[[[[[[[]]]]]]]]]]]]', '{"__proto__":{"polluted":1}}', '{"constructor":{"prototype":{"polluted":1}}}',
];

/** Keys a body must not be able to smuggle in. */
export const HOSTILE_KEYS: readonly string[] = ['__proto__', 'constructor', 'prototype', '$where', '$gt', 'a.b', '', ' ', '\u0000', 'toString', 'id', 'token', 'tokenHash', 'isAdmin', 'scope', 'x'.repeat(300)];

/** `[` or `{"k":` nested `levels` deep around `1`, built iteratively. */
export function nestedJson(levels: number, objects: boolean): string {
  const open = objects ? '{"k":' : '[';
  const close = objects ? '}' : ']';
  return `${open.repeat(levels)}1${close.repeat(levels)}`;
}

/** Whole-body texts that are not JSON, or JSON of the wrong shape. */
export const BAD_BODY_TEXT: readonly string[] = [
  '', ' ', 'null', '[]', '"x"', '1', 'true', '{', '}', '{"a":1,}', '{"a":1}{"b":2}', "{'a':1}", '{a:1}', '{"a":1}//', '/*x*/{}', '\ufeff{}',
  '{"a":NaN}', '{"a":Infinity}', '{"a":undefined}', '{"a":0x10}', '{"a":01}', '{"a":"\\x41"}', '{"a":"\t"}', '{"a":1e400}',
  '{"__proto__":{"isAdmin":true}}', '{"constructor":{"prototype":{"isAdmin":true}}}', '{"a":1,"a":2}', 'a=1&b=2', '<xml/>',
];

/** Arbitrary bytes of a body: mostly small, sometimes with non-UTF-8 sequences spliced into JSON. */
export const rawBodyBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.tuple(fc.nat(), fc.constantFrom(...NON_UTF8_BYTES)).map(([n, bad]) => {
    const s = Buffer.from('{"name":"abc","state":{"reported":{"a":"xyz"}}}', 'utf8');
    const at = n % s.length;
    return Buffer.concat([s.subarray(0, at), Buffer.from(bad), s.subarray(at)]);
  }),
);

/** Percent-encodes every byte of the UTF-8 (or, for lone surrogates, WTF-8-like raw) form of `s`. */
export function percentAll(s: string): string {
  return [...toBytes(s)].map((b) => `%${b.toString(16).toUpperCase().padStart(2, '0')}`).join('');
}

/** Bytes of `s` with lone surrogates kept as their 3-byte (invalid in UTF-8) encodings instead of U+FFFD. */
export function toBytes(s: string): Buffer {
  const out: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    const next = s.charCodeAt(i + 1);
    if (c >= 0xd800 && c <= 0xdbff && next >= 0xdc00 && next <= 0xdfff) {
      out.push(...Buffer.from(s.slice(i, i + 2), 'utf8'));
      i++;
    } else if (c >= 0xd800 && c <= 0xdfff) {
      out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f));
    } else {
      out.push(...Buffer.from(s[i]!, 'utf8'));
    }
  }
  return Buffer.from(out);
}
