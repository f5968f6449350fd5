import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { computeDelta, jsonEqual, mergeState, metadataFor, utf8ByteLength, utf8ByteLengthPortable, type Json, type JsonObject } from './shadow-merge.ts';

const key = fc.constantFrom('a', 'b', 'c', 'color', 'mqtt', 'timestamp', '__proto__', 'toString');
const leaf: fc.Arbitrary<Json> = fc.oneof(fc.boolean(), fc.integer({ min: -5, max: 5 }), fc.constantFrom('x', 'y', '5'));
const { doc: _doc } = fc.letrec<{ value: Json; doc: JsonObject }>((tie) => ({
  value: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.array(leaf, { maxLength: 3 }), tie('doc')),
  doc: fc.dictionary(key, tie('value'), { maxKeys: 4 }) as fc.Arbitrary<JsonObject>,
}));
/** A patch may also hold nulls (deletes). */
const { patch } = fc.letrec<{ pvalue: Json; patch: JsonObject }>((tie) => ({
  pvalue: fc.oneof({ depthSize: 'small', withCrossShrink: true }, leaf, fc.constant(null), fc.array(leaf, { maxLength: 3 }), tie('patch')),
  patch: fc.dictionary(key, tie('pvalue'), { maxKeys: 4 }) as fc.Arbitrary<JsonObject>,
}));
/** A stored section: what mergeState produces (no nulls, no empty objects). */
const stored = patch.map((p) => mergeState(undefined, p));

function keyPaths(o: JsonObject, prefix = ''): string[] {
  return Object.keys(o).flatMap((k) => {
    const v = o[k];
    const path = `${prefix}/${k}`;
    return v !== null && typeof v === 'object' && !Array.isArray(v) ? [path, ...keyPaths(v, path)] : [path];
  });
}

function hasPath(o: JsonObject | undefined, path: string): boolean {
  let cur: Json | undefined = o;
  for (const k of path.split('/').slice(1)) {
    if (cur === null || typeof cur !== 'object' || Array.isArray(cur) || !Object.hasOwn(cur, k)) return false;
    cur = cur[k];
  }
  return true;
}

describe('mergeState', () => {
  const table: Array<[string, JsonObject | undefined, JsonObject, JsonObject | undefined]> = [
    ['adds keys to an empty section', undefined, { a: 1 }, { a: 1 }],
    ['merges nested objects key by key', { l: { c: { r: 1, g: 2 } } }, { l: { c: { g: 255 } } }, { l: { c: { r: 1, g: 255 } } }],
    ['deletes a key set to null', { a: 1, b: 2 }, { a: null }, { b: 2 }],
    ['deletes a nested key set to null', { l: { on: true, c: 1 } }, { l: { c: null } }, { l: { on: true } }],
    ['removes an object left empty', { l: { c: 1 }, x: 1 }, { l: { c: null } }, { x: 1 }],
    ['returns undefined when nothing is left', { a: 1 }, { a: null }, undefined],
    ['ignores null for a missing key', { a: 1 }, { b: null }, { a: 1 }],
    ['replaces arrays whole', { a: [1, 2, 3] }, { a: [9] }, { a: [9] }],
    ['replaces an object with a scalar', { a: { b: 1 } }, { a: 2 }, { a: 2 }],
    ['replaces a scalar with an object, dropping nulls inside it', { a: 2 }, { a: { b: 1, c: null } }, { a: { b: 1 } }],
    ['stores a __proto__ key as data', {}, JSON.parse('{"__proto__":{"x":1}}') as JsonObject, JSON.parse('{"__proto__":{"x":1}}') as JsonObject],
    ['does not read inherited properties such as toString', { a: 1 }, { toString: { x: 1 } }, { a: 1, toString: { x: 1 } }],
  ];
  for (const [name, base, p, expected] of table) {
    it(name, () => {
      const before = structuredClone(base);
      assert.deepStrictEqual(mergeState(base, p), expected);
      assert.deepStrictEqual(base, before, 'base is not mutated');
    });
  }

  it('leaves Object.prototype untouched when merging __proto__', () => {
    mergeState({}, JSON.parse('{"__proto__":{"polluted":true}}') as JsonObject);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  it('changes nothing when a document is merged with itself', () => {
    fc.assert(fc.property(stored, (d) => {
      if (d === undefined) return;
      assert.deepStrictEqual(mergeState(d, d), d);
    }), { numRuns: 500 });
  });

  it('is idempotent: applying the same patch twice equals applying it once', () => {
    fc.assert(fc.property(stored, patch, (d, p) => {
      const once = mergeState(d, p);
      assert.deepStrictEqual(mergeState(once, p), once);
    }), { numRuns: 500 });
  });
});

describe('computeDelta', () => {
  const table: Array<[string, JsonObject | undefined, JsonObject | undefined, JsonObject | undefined]> = [
    ['includes a desired key missing from reported', { a: 1 }, {}, { a: 1 }],
    ['includes a desired key when reported is absent', { a: 1 }, undefined, { a: 1 }],
    ['never includes a report-only key', { a: 1 }, { a: 1, b: 2 }, undefined],
    ['omits equal values and is undefined when nothing differs', { a: 1, b: 'x' }, { a: 1, b: 'x' }, undefined],
    ['keeps only differing nested leaves with their full path', { l: { c: { r: 0, g: 255 }, on: true } }, { l: { c: { r: 0, g: 0 }, on: true } }, { l: { c: { g: 255 } } }],
    ['puts the whole desired array in on any difference', { a: [1, 2, 3] }, { a: [1, 2] }, { a: [1, 2, 3] }],
    ['omits an array equal element by element', { a: [1, { b: 2 }] }, { a: [1, { b: 2 }] }, undefined],
    ['treats "5" and 5 as different', { a: '5' }, { a: 5 }, { a: '5' }],
    ['treats false and 0 as different', { a: false }, { a: 0 }, { a: false }],
    ['includes a desired object whose reported counterpart is a scalar', { a: { b: 1 } }, { a: 1 }, { a: { b: 1 } }],
    ['includes a desired scalar whose reported counterpart is an object', { a: 1 }, { a: { b: 1 } }, { a: 1 }],
    ['compares objects regardless of key order', { a: [{ x: 1, y: 2 }] }, { a: [{ y: 2, x: 1 }] }, undefined],
    ['is undefined when desired is absent', undefined, { a: 1 }, undefined],
  ];
  for (const [name, d, r, expected] of table) {
    it(name, () => assert.deepStrictEqual(computeDelta(d, r), expected));
  }

  it('is empty after reported := desired', () => {
    fc.assert(fc.property(stored, stored, patch, (d, r, p) => {
      const desired = mergeState(d, p);
      const reported = desired === undefined ? r : mergeState(r, desired);
      assert.equal(computeDelta(desired, reported), undefined);
    }), { numRuns: 500 });
  });

  it('never holds a key path absent from desired', () => {
    fc.assert(fc.property(stored, stored, (d, r) => {
      const delta = computeDelta(d, r);
      if (delta === undefined) return;
      for (const path of keyPaths(delta)) assert.ok(hasPath(d, path), path);
    }), { numRuns: 500 });
  });

  it('holds every desired leaf that differs from reported', () => {
    fc.assert(fc.property(stored, stored, (d, r) => {
      const delta = computeDelta(d, r);
      // Merging the delta into reported makes reported agree with desired on every desired leaf.
      const caught = delta === undefined ? r : mergeState(r, delta);
      assert.equal(computeDelta(d, caught), undefined);
    }), { numRuns: 500 });
  });
});

describe('jsonEqual', () => {
  it('distinguishes types and compares deeply', () => {
    assert.equal(jsonEqual(null, null), true);
    assert.equal(jsonEqual([], {}), false);
    assert.equal(jsonEqual({ a: [1] }, { a: [1] }), true);
    assert.equal(jsonEqual({ a: 1 }, { b: 1 }), false);
    assert.equal(jsonEqual({ a: undefined as unknown as Json }, { b: 1 }), false);
  });
});

describe('metadataFor', () => {
  it('gives every leaf a timestamp and arrays an array of per-element timestamps', () => {
    assert.deepStrictEqual(metadataFor({ a: 1, b: [1, { c: 2 }], d: null }, 7), {
      a: { timestamp: 7 },
      b: [{ timestamp: 7 }, { c: { timestamp: 7 } }],
      d: { timestamp: 7 },
    });
  });
});

describe('utf8ByteLength', () => {
  for (const [name, count] of [['native', utf8ByteLength], ['portable', utf8ByteLengthPortable]] as const) {
    it(`counts UTF-8 bytes like TextEncoder (${name})`, () => {
      for (const s of ['', 'abc', 'é', '€', '😀', 'a\u0000', '\ud800x', 'x\udc00', '\udbff\udfff', '\ud83d']) {
        assert.equal(count(s), new TextEncoder().encode(s).length, JSON.stringify(s));
      }
      fc.assert(fc.property(fc.string({ unit: 'binary' }), (s) => count(s) === new TextEncoder().encode(s).length));
    });
  }
});
