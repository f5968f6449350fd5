import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  SHADOW_LIMITS,
  SHADOW_MESSAGES,
  parseClientToken,
  parseUpdateRequest,
  shadowError,
  type ParseUpdateResult,
} from './shadow-request.ts';

function nest(levels: number): unknown {
  let v: unknown = 1;
  for (let i = 0; i < levels; i++) v = { k: v };
  return v;
}

function rejected(r: ParseUpdateResult): { code: number; message: string; clientToken?: string } {
  assert.equal(r.ok, false, 'expected a rejection');
  if (r.ok) throw new Error('unreachable');
  return r.clientToken === undefined ? { ...r.error } : { ...r.error, clientToken: r.clientToken };
}

describe('parseUpdateRequest', () => {
  const bad: Array<[string, string | Uint8Array, number, string]> = [
    ['rejects bad JSON', '{"state":', 400, 'Invalid JSON'],
    ['rejects an empty payload', '', 400, 'Invalid JSON'],
    ['rejects a JSON array', '[]', 400, 'Invalid JSON'],
    ['rejects a JSON scalar', '"state"', 400, 'Invalid JSON'],
    ['rejects JSON null', 'null', 400, 'Invalid JSON'],
    ['rejects a missing state', '{"desired":{}}', 400, 'Missing required node: state'],
    ['rejects a non-object state', '{"state":[]}', 400, 'State node must be an object'],
    ['rejects a null state', '{"state":null}', 400, 'State node must be an object'],
    ['rejects a delta node', '{"state":{"delta":{"a":1}}}', 400, "State contains an invalid node: 'delta'"],
    ['rejects a non-object desired', '{"state":{"desired":1}}', 400, 'Desired node must be an object'],
    ['rejects an array desired', '{"state":{"desired":[1]}}', 400, 'Desired node must be an object'],
    ['rejects a non-object reported', '{"state":{"reported":"x"}}', 400, 'Reported node must be an object'],
    ['rejects a negative version', '{"state":{},"version":-1}', 400, 'Invalid version'],
    ['rejects a fractional version', '{"state":{},"version":1.5}', 400, 'Invalid version'],
    ['rejects a string version', '{"state":{},"version":"3"}', 400, 'Invalid version'],
    ['rejects a null version', '{"state":{},"version":null}', 400, 'Invalid version'],
    ['rejects an unsafe integer version', '{"state":{},"version":9007199254740993}', 400, 'Invalid version'],
    ['rejects a non-string clientToken', '{"state":{},"clientToken":5}', 400, 'Invalid clientToken'],
    ['rejects a 65-byte clientToken', JSON.stringify({ state: {}, clientToken: 'x'.repeat(65) }), 400, 'Invalid clientToken'],
    ['counts clientToken length in UTF-8 bytes', JSON.stringify({ state: {}, clientToken: 'é'.repeat(33) }), 400, 'Invalid clientToken'],
    ['rejects 7 levels of nesting in desired', JSON.stringify({ state: { desired: nest(7) } }), 400, 'JSON contains too many levels of nesting; maximum is 6'],
    ['rejects 7 levels of nesting in reported', JSON.stringify({ state: { reported: nest(7) } }), 400, 'JSON contains too many levels of nesting; maximum is 6'],
    ['counts arrays as nesting levels', JSON.stringify({ state: { desired: { a: [[[[[[1]]]]]] } } }), 400, 'JSON contains too many levels of nesting; maximum is 6'],
    ['counts an empty object at level 7', JSON.stringify({ state: { desired: nest(6) } }).replace('1', '{}'), 400, 'JSON contains too many levels of nesting; maximum is 6'],
    ['rejects an array holding null', '{"state":{"desired":{"a":[1,null]}}}', 400, SHADOW_MESSAGES.arrayContainsNull],
    ['rejects null inside an object inside an array', '{"state":{"reported":{"a":[{"b":null}]}}}', 400, SHADOW_MESSAGES.arrayContainsNull],
    ['rejects null inside a nested array', '{"state":{"desired":{"a":[[null]]}}}', 400, SHADOW_MESSAGES.arrayContainsNull],
    ['rejects an escaped U+0000 in a string (jsonb cannot store it)', '{"state":{"reported":{"a":"x\\u0000y"}}}', 400, SHADOW_MESSAGES.unstorableText],
    ['rejects an escaped U+0000 in a key', '{"state":{"desired":{"b":{"k\\u0000":1}}}}', 400, SHADOW_MESSAGES.unstorableText],
    ['rejects an unpaired high surrogate', '{"state":{"reported":{"a":"\\ud800"}}}', 400, SHADOW_MESSAGES.unstorableText],
    ['rejects an unpaired low surrogate inside an array', '{"state":{"reported":{"a":["ok","x\\udc00"]}}}', 400, SHADOW_MESSAGES.unstorableText],
    ['rejects a number beyond the double range', '{"state":{"reported":{"a":{"b":1e400}}}}', 400, SHADOW_MESSAGES.numberOutOfRange],
    ['rejects a payload over 128 KB with 413', JSON.stringify({ state: { desired: { a: 'x'.repeat(131072) } } }), 413, 'The payload exceeds the maximum size allowed'],
    ['rejects non-UTF-8 bytes with 415', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), 415, 'Unsupported documented encoding; supported encoding is UTF-8'],
    ['rejects a truncated UTF-8 sequence with 415', new Uint8Array([...new TextEncoder().encode('{"state":{"reported":{"a":"'), 0xe2, 0x82]), 415, 'Unsupported documented encoding; supported encoding is UTF-8'],
    ['rejects an overlong UTF-8 encoding with 415', new Uint8Array([0x22, 0xc0, 0xaf, 0x22]), 415, 'Unsupported documented encoding; supported encoding is UTF-8'],
  ];
  for (const [name, payload, code, message] of bad) {
    it(`${name} (${code})`, () => {
      const e = rejected(parseUpdateRequest(payload));
      assert.equal(e.code, code);
      assert.equal(e.message, message);
    });
  }

  it('accepts exactly 6 levels of nesting, counting desired itself as level 1', () => {
    assert.equal(parseUpdateRequest(JSON.stringify({ state: { desired: nest(6) } })).ok, true);
    assert.equal(parseUpdateRequest(JSON.stringify({ state: { reported: { a: [[[[1]]]], b: {} } } })).ok, true);
  });

  it('accepts surrogate pairs (emoji) and a paired escape, which PostgreSQL stores', () => {
    const r = parseUpdateRequest('{"state":{"reported":{"a":"🙂","\\ud83d\\ude00":"\\ud83d\\ude00","n":1.7e308}}}');
    assert.ok(r.ok);
  });

  it('accepts a 64-byte clientToken', () => {
    const r = parseUpdateRequest(JSON.stringify({ state: {}, clientToken: 't'.repeat(64) }));
    assert.ok(r.ok);
    assert.equal(r.request.clientToken, 't'.repeat(64));
  });

  it('echoes a valid clientToken beside a rejection', () => {
    assert.deepEqual(rejected(parseUpdateRequest('{"clientToken":"c1","state":5}')), {
      code: 400, message: 'State node must be an object', clientToken: 'c1',
    });
  });

  it('does not echo an invalid clientToken', () => {
    assert.equal(rejected(parseUpdateRequest(JSON.stringify({ state: {}, clientToken: 'x'.repeat(65) }))).clientToken, undefined);
  });

  it('accepts UTF-8 bytes and strings alike', () => {
    const text = '{"state":{"reported":{"name":"café ☕"}},"version":3,"clientToken":"t"}';
    const expected = { state: { reported: { name: 'café ☕' } }, version: 3, clientToken: 't' };
    assert.deepStrictEqual(parseUpdateRequest(new TextEncoder().encode(text)), { ok: true, request: expected });
    assert.deepStrictEqual(parseUpdateRequest(text), { ok: true, request: expected });
  });

  it('keeps null sections and null leaves, and drops unknown keys', () => {
    const r = parseUpdateRequest('{"state":{"desired":null,"reported":{"a":null},"other":1},"metadata":{},"extra":true}');
    assert.deepStrictEqual(r, { ok: true, request: { state: { desired: null, reported: { a: null } } } });
  });

  it('accepts version 0', () => {
    const r = parseUpdateRequest('{"state":{},"version":0}');
    assert.ok(r.ok);
    assert.equal(r.request.version, 0);
  });

  it('survives hostile nesting without overflowing the stack', () => {
    const deep = `{"state":{"desired":{"a":${'['.repeat(60000)}${']'.repeat(60000)}}}}`;
    assert.equal(rejected(parseUpdateRequest(deep)).code, 400);
  });

  it('honours custom limits', () => {
    const r = parseUpdateRequest('{"state":{"desired":{"a":{"b":1}}}}', { ...SHADOW_LIMITS, maxDepth: 1 });
    assert.equal(rejected(r).message, 'JSON contains too many levels of nesting; maximum is 1');
  });
});

describe('parseClientToken', () => {
  const table: Array<[string, string | Uint8Array | undefined, string | undefined]> = [
    ['returns the token of a JSON body', '{"clientToken":"abc"}', 'abc'],
    ['returns the token of a byte body', new TextEncoder().encode('{"clientToken":"abc"}'), 'abc'],
    ['returns undefined for an empty payload', '', undefined],
    ['returns undefined for an empty byte payload', new Uint8Array(0), undefined],
    ['returns undefined for no payload', undefined, undefined],
    ['ignores invalid JSON', '{oops', undefined],
    ['ignores non-UTF-8 bytes', new Uint8Array([0xff]), undefined],
    ['ignores a token over 64 bytes', JSON.stringify({ clientToken: 'x'.repeat(65) }), undefined],
    ['ignores a non-string token', '{"clientToken":1}', undefined],
  ];
  for (const [name, payload, expected] of table) {
    it(name, () => assert.equal(parseClientToken(payload), expected));
  }
});

describe('shadowError', () => {
  it('builds an error body with the clientToken only when given', () => {
    assert.deepStrictEqual(shadowError(409, SHADOW_MESSAGES.versionConflict, 100), { code: 409, message: 'Version conflict', timestamp: 100 });
    assert.deepStrictEqual(shadowError(404, SHADOW_MESSAGES.notFound('x'), 100, 't'), {
      code: 404, message: "No shadow exists with name: 'x'", timestamp: 100, clientToken: 't',
    });
  });

  it('names the thing for a missing classic shadow, as AWS does', () => {
    assert.equal(SHADOW_MESSAGES.notFound('', 'd1'), "No shadow exists with name: 'd1'");
    assert.equal(SHADOW_MESSAGES.notFound(''), "No shadow exists with name: ''");
  });

  it('carries the AWS messages verbatim', () => {
    assert.equal(SHADOW_MESSAGES.thingNotFound, 'Thing not found');
    assert.equal(SHADOW_MESSAGES.forbidden, 'Forbidden');
    assert.equal(SHADOW_MESSAGES.tooManyRequests, 'Too many requests');
    assert.equal(SHADOW_MESSAGES.internal, 'Internal service failure');
  });
});
