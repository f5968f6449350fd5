/**
 * Shadow state algebra (AWS IoT Device Shadow semantics, reference §1.3–1.4): deep merge with `null` deletes,
 * delta, JSON equality and per-leaf metadata. Pure functions; inputs are never mutated.
 *
 * Trap: state keys come from device payloads, so a key may be `__proto__`, `constructor` or `toString`.
 * Reads go through `Object.hasOwn` and writes through {@link setOwn}, never `obj[key] = v` on a fresh `{}`
 * (which would change the prototype instead of storing the key).
 */

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

/** A JSON object. */
export type JsonObject = { [k: string]: Json };

/** True for a JSON object (not null, not an array). */
export function isJsonObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Own property read that ignores the prototype chain (`hasOwn(o,'toString')` is false for `{}`). */
export function getOwn(obj: JsonObject | undefined, key: string): Json | undefined {
  return obj !== undefined && Object.hasOwn(obj, key) ? obj[key] : undefined;
}

/** Stores `key` as an own enumerable property, safe for `__proto__`. */
export function setOwn(obj: JsonObject, key: string, value: Json): void {
  if (key === '__proto__') {
    Object.defineProperty(obj, key, { value, enumerable: true, writable: true, configurable: true });
  } else {
    obj[key] = value;
  }
}

/** Deep copy of a JSON value. */
export function cloneJson<T extends Json>(v: T): T {
  if (Array.isArray(v)) return v.map((e) => cloneJson(e)) as T;
  if (isJsonObject(v)) {
    const out: JsonObject = {};
    for (const k of Object.keys(v)) setOwn(out, k, cloneJson(v[k] as Json));
    return out as T;
  }
  return v;
}

/**
 * Strict JSON equality: same type, numbers by `===` (so `5` ≠ `"5"`), arrays element-wise in order,
 * objects by key set regardless of key order.
 */
export function jsonEqual(a: Json | undefined, b: Json | undefined): boolean {
  if (a === b) return true;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    return a.every((e, i) => jsonEqual(e, b[i]));
  }
  if (isJsonObject(a)) {
    if (!isJsonObject(b)) return false;
    const ka = Object.keys(a);
    if (ka.length !== Object.keys(b).length) return false;
    return ka.every((k) => Object.hasOwn(b, k) && jsonEqual(a[k], b[k]));
  }
  return false;
}

/**
 * Deep merge of a shadow section (`desired` or `reported`), AWS semantics:
 * - a key set to `null` in `patch` is removed;
 * - objects merge key by key; any other value (arrays included) replaces the old one whole;
 * - objects left empty are removed (AWS does not keep empty objects);
 * - returns `undefined` when nothing is left.
 * `base` and `patch` are not mutated; the result shares no structure with either.
 */
export function mergeState(base: JsonObject | undefined, patch: JsonObject): JsonObject | undefined {
  const out: JsonObject = {};
  if (base !== undefined) for (const k of Object.keys(base)) setOwn(out, k, cloneJson(base[k] as Json));
  for (const k of Object.keys(patch)) {
    const p = patch[k] as Json;
    if (p === null) {
      delete out[k];
      continue;
    }
    if (isJsonObject(p)) {
      const old = getOwn(base, k);
      const merged = mergeState(isJsonObject(old) ? old : undefined, p);
      if (merged === undefined) delete out[k];
      else setOwn(out, k, merged);
      continue;
    }
    setOwn(out, k, cloneJson(p));
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

/**
 * Delta between `desired` and `reported`, AWS semantics: every desired leaf whose value differs from the
 * reported one (or is missing there), each kept under its full path; arrays are compared whole (any
 * difference puts the whole desired array in); values of different JSON types always differ; keys only in
 * `reported` never appear. Returns `undefined` when nothing differs.
 */
export function computeDelta(desired?: JsonObject, reported?: JsonObject): JsonObject | undefined {
  if (desired === undefined) return undefined;
  const out: JsonObject = {};
  for (const k of Object.keys(desired)) {
    const d = desired[k] as Json;
    const r = getOwn(reported, k);
    if (isJsonObject(d)) {
      const sub = computeDelta(d, isJsonObject(r) ? r : undefined);
      if (sub !== undefined) setOwn(out, k, sub);
    } else if (r === undefined || !jsonEqual(d, r)) {
      setOwn(out, k, cloneJson(d));
    }
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

/**
 * Metadata of a value written at `timestamp` (epoch seconds): a scalar or `null` → `{timestamp}`;
 * an array → an array of per-element metadata; an object → the same keys with their metadata.
 */
export function metadataFor(value: Json, timestamp: number): Json {
  if (Array.isArray(value)) return value.map((e) => metadataFor(e, timestamp));
  if (isJsonObject(value)) {
    const out: JsonObject = {};
    for (const k of Object.keys(value)) setOwn(out, k, metadataFor(value[k] as Json, timestamp));
    return out;
  }
  return { timestamp };
}

/**
 * New metadata of a section after `patch` was merged into `oldState` giving `newState`: every leaf the patch
 * wrote gets `timestamp`, untouched leaves keep their old metadata, deleted leaves lose theirs. Metadata is
 * walked alongside the *state* (never on its own) because a metadata leaf `{timestamp}` is indistinguishable
 * from a state object that has a key named `timestamp`.
 */
export function mergeMetadata(
  oldState: JsonObject | undefined,
  oldMeta: JsonObject | undefined,
  patch: JsonObject,
  newState: JsonObject | undefined,
  timestamp: number,
): JsonObject | undefined {
  if (newState === undefined) return undefined;
  const out: JsonObject = {};
  for (const k of Object.keys(newState)) {
    const v = newState[k] as Json;
    const p = getOwn(patch, k);
    const m = getOwn(oldMeta, k);
    if (p === undefined) {
      if (m !== undefined) setOwn(out, k, cloneJson(m));
      continue;
    }
    const old = getOwn(oldState, k);
    if (isJsonObject(p) && isJsonObject(v) && isJsonObject(old) && isJsonObject(m)) {
      const sub = mergeMetadata(old, m, p, v, timestamp);
      if (sub !== undefined) setOwn(out, k, sub);
    } else {
      setOwn(out, k, metadataFor(v, timestamp));
    }
  }
  return Object.keys(out).length === 0 ? undefined : out;
}

/** The part of `meta` (metadata of `desired`) that describes the leaves present in `delta`. */
export function projectMetadata(delta: JsonObject, meta: JsonObject | undefined): JsonObject {
  const out: JsonObject = {};
  for (const k of Object.keys(delta)) {
    const d = delta[k] as Json;
    const m = getOwn(meta, k);
    if (m === undefined) continue;
    setOwn(out, k, isJsonObject(d) && isJsonObject(m) ? projectMetadata(d, m) : cloneJson(m));
  }
  return out;
}

/** Node's native count where there is one (the same rule; a loop per character was measurable per shadow update). */
const nativeByteLength: ((s: string, encoding: 'utf8') => number) | undefined = (
  globalThis as { Buffer?: { byteLength(s: string, encoding: 'utf8'): number } }
).Buffer?.byteLength;

/** Number of bytes of `s` encoded as UTF-8 (a lone surrogate counts 3, as U+FFFD). */
export function utf8ByteLength(s: string): number {
  return nativeByteLength === undefined ? utf8ByteLengthPortable(s) : nativeByteLength(s, 'utf8');
}

/** {@link utf8ByteLength} without Node's `Buffer` (exported for its tests). */
export function utf8ByteLengthPortable(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}
