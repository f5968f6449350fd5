/**
 * Validation of shadow request payloads (reference §1.3, §1.6, §1.7), the error catalogue with AWS's own
 * messages, and the error body builder.
 */
import { isJsonObject, utf8ByteLength, type Json, type JsonObject } from './shadow-merge.ts';

/** Shadow limits (reference §1.7). */
export interface ShadowLimits {
  /** Max bytes of the merged `{desired, reported}` state as JSON (metadata excluded). Default 8192. */
  maxStateBytes: number;
  /**
   * Max levels of nesting inside `desired` or `reported`, counting the section object itself as level 1 and
   * every object or array inside it as one more level. Default 6 (AWS: "maximum is 6"), so
   * `{"desired":{"a":{"b":{"c":{"d":{"e":1}}}}}}` (6 levels) passes and one more level is rejected.
   */
  maxDepth: number;
  /** Max UTF-8 bytes of a `clientToken`. Default 64. */
  maxClientTokenBytes: number;
  /** Max bytes of a request payload. Default 131072 (128 KB, the MQTT broker limit). */
  maxPayloadBytes: number;
}

/** Default {@link ShadowLimits}: 8 KB state, depth 6, 64-byte clientToken, 128 KB payload. */
export const SHADOW_LIMITS: Readonly<ShadowLimits> = Object.freeze({
  maxStateBytes: 8192,
  maxDepth: 6,
  maxClientTokenBytes: 64,
  maxPayloadBytes: 131072,
});

/** HTTP-style status codes carried by shadow error bodies. */
export type ShadowErrorCode = 400 | 401 | 403 | 404 | 409 | 413 | 415 | 429 | 500;

/** Body published on `…/rejected` (and returned over HTTP). `timestamp` in epoch seconds. */
export interface ShadowErrorBody {
  code: ShadowErrorCode;
  message: string;
  timestamp: number;
  clientToken?: string;
}

/** A validated `/update` request. Sections set to `null` delete the whole section. */
export interface UpdateShadowRequest {
  state: { desired?: JsonObject | null; reported?: JsonObject | null };
  /** Optimistic lock: the update applies only when it equals the current version. */
  version?: number;
  /** Echoed in every reply; at most 64 UTF-8 bytes. */
  clientToken?: string;
}

/** AWS's error messages (reference §1.6), verbatim where AWS documents one. */
export const SHADOW_MESSAGES = Object.freeze({
  invalidJson: 'Invalid JSON',
  missingState: 'Missing required node: state',
  stateNotObject: 'State node must be an object',
  desiredNotObject: 'Desired node must be an object',
  reportedNotObject: 'Reported node must be an object',
  invalidDeltaNode: "State contains an invalid node: 'delta'",
  invalidVersion: 'Invalid version',
  invalidClientToken: 'Invalid clientToken',
  /** AWS documents that arrays with null are rejected but not the wording; ours names the rule. */
  arrayContainsNull: 'Invalid JSON: arrays must not contain null',
  /** Valid JSON text, but not a value a shadow can hold (PostgreSQL's jsonb refuses both; see `unstorable`). */
  unstorableText: 'Invalid JSON: strings and keys must not contain U+0000 or an unpaired surrogate',
  numberOutOfRange: 'Invalid JSON: number out of range',
  tooDeep: (max: number): string => `JSON contains too many levels of nesting; maximum is ${max}`,
  payloadTooLarge: 'The payload exceeds the maximum size allowed',
  unsupportedEncoding: 'Unsupported documented encoding; supported encoding is UTF-8',
  unauthorized: 'Unauthorized',
  forbidden: 'Forbidden',
  thingNotFound: 'Thing not found',
  /**
   * 404 for a missing shadow, AWS wording with quotes: `No shadow exists with name: 'x'`. For the classic
   * shadow (`''`) AWS names the thing instead, so pass `deviceUuid` to get the same.
   */
  notFound: (shadowName: string, deviceUuid?: string): string =>
    `No shadow exists with name: '${shadowName === '' && deviceUuid !== undefined ? deviceUuid : shadowName}'`,
  versionConflict: 'Version conflict',
  tooManyRequests: 'Too many requests',
  internal: 'Internal service failure',
});

/**
 * Error body for `…/rejected`.
 * @param nowSeconds epoch seconds
 * @param clientToken echoed when given
 */
export function shadowError(
  code: ShadowErrorCode,
  message: string,
  nowSeconds: number,
  clientToken?: string,
): ShadowErrorBody {
  const body: ShadowErrorBody = { code, message, timestamp: nowSeconds };
  if (clientToken !== undefined) body.clientToken = clientToken;
  return body;
}

/** Result of {@link parseUpdateRequest}. `clientToken` beside an error is set when the token was valid. */
export type ParseUpdateResult =
  | { ok: true; request: UpdateShadowRequest }
  | { ok: false; error: { code: 400 | 413 | 415; message: string }; clientToken?: string };

type Decoded = { ok: true; text: string } | { ok: false; code: 413 | 415 };

function decode(payload: Uint8Array | string, maxBytes: number): Decoded {
  if (typeof payload === 'string') {
    return utf8ByteLength(payload) > maxBytes ? { ok: false, code: 413 } : { ok: true, text: payload };
  }
  // Size first: no point decoding megabytes only to reject them for size.
  if (payload.byteLength > maxBytes) return { ok: false, code: 413 };
  try {
    return { ok: true, text: new TextDecoder('utf-8', { fatal: true }).decode(payload) };
  } catch {
    // TextDecoder with fatal:true throws TypeError exactly when the bytes are not UTF-8: that is a 415.
    return { ok: false, code: 415 };
  }
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false } {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch {
    // JSON.parse throws SyntaxError only; the caller turns this into 400 "Invalid JSON".
    return { ok: false };
  }
}

function validClientToken(v: unknown, maxBytes: number): v is string {
  return typeof v === 'string' && utf8ByteLength(v) <= maxBytes;
}

/** True when `value` nests deeper than `remaining` levels (containers count; bounded walk, safe on hostile input). */
function tooDeep(value: Json, remaining: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (remaining < 1) return true;
  const children: Json[] = Array.isArray(value) ? value : Object.values(value);
  return children.some((e) => tooDeep(e, remaining - 1));
}

/** True when some array anywhere in `value` holds `null` at any depth (call after the depth check). */
function hasNullInArray(value: Json, inArray: boolean): boolean {
  if (value === null) return inArray;
  if (Array.isArray(value)) return value.some((e) => hasNullInArray(e, true));
  if (isJsonObject(value)) return Object.values(value).some((e) => hasNullInArray(e, inArray));
  return false;
}

/** A UTF-16 surrogate without its partner (`"\\ud800"` is valid JSON text). */
const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const unstorableText = (s: string): boolean => s.includes('\u0000') || UNPAIRED_SURROGATE.test(s);

/**
 * Why `value` cannot be stored, or null (call after the depth check, which bounds the recursion).
 * Trap: both are valid JSON that `JSON.parse` accepts, but PostgreSQL's jsonb rejects `\u0000` and unpaired
 * surrogates (the whole batch's transaction would fail with 500), and a number beyond ±1.8e308 parses to
 * `Infinity`, which `JSON.stringify` silently writes as `null`.
 */
function unstorable(value: Json): string | null {
  if (typeof value === 'string') return unstorableText(value) ? SHADOW_MESSAGES.unstorableText : null;
  if (typeof value === 'number') return Number.isFinite(value) ? null : SHADOW_MESSAGES.numberOutOfRange;
  if (Array.isArray(value)) {
    for (const e of value) {
      const why = unstorable(e);
      if (why !== null) return why;
    }
    return null;
  }
  if (isJsonObject(value)) {
    for (const [k, e] of Object.entries(value)) {
      if (unstorableText(k)) return SHADOW_MESSAGES.unstorableText;
      const why = unstorable(e);
      if (why !== null) return why;
    }
  }
  return null;
}

/**
 * Parses and validates an `/update` payload (bytes from MQTT, or a string from HTTP). Checks, in order:
 * payload size (413), UTF-8 (415), JSON (400), a top-level object, `clientToken`, `version`, `state`,
 * `state.delta`, `desired`/`reported` types, nesting depth, arrays holding `null`, strings, keys and numbers that
 * cannot be stored (U+0000, unpaired surrogates, numbers beyond the double range). Unknown top-level keys and
 * unknown keys of `state` are dropped. The merged-state 8 KB limit is checked later by `applyUpdate`.
 * @param limits defaults to {@link SHADOW_LIMITS}
 */
export function parseUpdateRequest(
  payload: Uint8Array | string,
  limits: Readonly<ShadowLimits> = SHADOW_LIMITS,
): ParseUpdateResult {
  const decoded = decode(payload, limits.maxPayloadBytes);
  if (!decoded.ok) {
    const message = decoded.code === 413 ? SHADOW_MESSAGES.payloadTooLarge : SHADOW_MESSAGES.unsupportedEncoding;
    return { ok: false, error: { code: decoded.code, message } };
  }
  const parsed = parseJson(decoded.text);
  if (!parsed.ok || !isJsonObject(parsed.value)) {
    return { ok: false, error: { code: 400, message: SHADOW_MESSAGES.invalidJson } };
  }
  const body = parsed.value;
  const rawToken = body['clientToken'];
  const tokenOk = validClientToken(rawToken, limits.maxClientTokenBytes);
  const fail = (message: string): ParseUpdateResult =>
    tokenOk ? { ok: false, error: { code: 400, message }, clientToken: rawToken } : { ok: false, error: { code: 400, message } };

  if (Object.hasOwn(body, 'clientToken') && !tokenOk) return fail(SHADOW_MESSAGES.invalidClientToken);
  const version = body['version'];
  if (Object.hasOwn(body, 'version') && !(Number.isSafeInteger(version) && (version as number) >= 0)) {
    return fail(SHADOW_MESSAGES.invalidVersion);
  }
  if (!Object.hasOwn(body, 'state')) return fail(SHADOW_MESSAGES.missingState);
  const state = body['state'];
  if (!isJsonObject(state)) return fail(SHADOW_MESSAGES.stateNotObject);
  if (Object.hasOwn(state, 'delta')) return fail(SHADOW_MESSAGES.invalidDeltaNode);

  const out: UpdateShadowRequest = { state: {} };
  for (const section of ['desired', 'reported'] as const) {
    if (!Object.hasOwn(state, section)) continue;
    const v = state[section] as Json;
    if (v !== null && !isJsonObject(v)) {
      return fail(section === 'desired' ? SHADOW_MESSAGES.desiredNotObject : SHADOW_MESSAGES.reportedNotObject);
    }
    if (v !== null && tooDeep(v, limits.maxDepth)) return fail(SHADOW_MESSAGES.tooDeep(limits.maxDepth));
    out.state[section] = v;
  }
  for (const section of ['desired', 'reported'] as const) {
    const v = out.state[section];
    if (v !== undefined && v !== null && hasNullInArray(v, false)) return fail(SHADOW_MESSAGES.arrayContainsNull);
    const why = v === undefined || v === null ? null : unstorable(v);
    if (why !== null) return fail(why);
  }
  if (typeof version === 'number') out.version = version;
  if (tokenOk) out.clientToken = rawToken;
  return { ok: true, request: out };
}

/**
 * Best-effort `clientToken` of a `get` or `delete` payload, whose body AWS otherwise ignores: returns the
 * token when the payload is UTF-8 JSON holding a valid one (≤ 64 bytes), else `undefined`. Never throws.
 */
export function parseClientToken(
  payload: Uint8Array | string | undefined | null,
  limits: Readonly<ShadowLimits> = SHADOW_LIMITS,
): string | undefined {
  if (payload === undefined || payload === null) return undefined;
  const decoded = decode(payload, limits.maxPayloadBytes);
  if (!decoded.ok || decoded.text.trim() === '') return undefined;
  const parsed = parseJson(decoded.text);
  if (!parsed.ok || !isJsonObject(parsed.value)) return undefined;
  const token = parsed.value['clientToken'];
  return validClientToken(token, limits.maxClientTokenBytes) ? token : undefined;
}
