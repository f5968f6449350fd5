/**
 * Generated HTTP requests for the fuzz suite (test/integration/http-fuzz.test.ts), built from the served OpenAPI
 * document so that no route is forgotten: each operation gets requests with fuzzed path parameters (hostile
 * identifiers, several encodings incl. invalid percent-escapes and raw non-UTF-8 bytes), query strings, headers,
 * tokens and bodies (wrong types, unknown and prototype keys, missing fields, invalid JSON, non-UTF-8, NUL, lone
 * surrogates, huge and deeply nested documents).
 *
 * Each case says whether it must be refused (`mustReject` with the reasons): no or a bogus token on `/api/v1`, a
 * viewer mutating, the fuzz device reaching for the sentinel device's resources or an admin route, a body of the
 * wrong type, shape or encoding. Other cases may succeed or be refused; none may get a 5xx. Admin and operator
 * requests never name the sentinel (they may change anything they name), and broker hosts stay on loopback.
 */
import fc from 'fast-check';
import { isHost } from '../../packages/server/src/http/validation.ts';
import { BAD_BODY_TEXT, HOSTILE_KEYS, NON_UTF8_BYTES, hostileId, nestedJson, percentAll, toBytes } from './fuzz-values.ts';
import type { HttpCall } from './raw-http.ts';

export type Who = 'admin' | 'operator' | 'viewer' | 'device' | 'none' | 'bogus';

export interface FuzzContext {
  tokens: Partial<Record<'admin' | 'operator' | 'viewer' | 'device', string>>;
  /** Never named by admin/operator requests; the fuzz device's requests for it must all be refused. */
  sentinel: { uuid: string; jobIds: string[] };
  /** The device whose token is fuzzed; it may change its own resources. */
  device: { uuid: string; jobIds: string[] };
  /** What admin and operator requests may change. */
  victims: { uuids: string[]; jobIds: string[]; brokerIds: number[]; tokenIds: number[]; /** Devices `DELETE /devices/:uuid` may remove (the others stay for the rest of the run). */ doomed: string[] };
  /** Ids that may be read by anyone but never be the target of a mutating admin request. */
  readOnly: { migrationIds: number[]; brokerIds: number[]; tokenIds: number[] };
}

export interface FuzzCase {
  family: string;
  route: string;
  who: Who;
  call: HttpCall;
  /** Bytes written as they are on a fresh socket instead of `call` (protocol-level cases). */
  raw?: Buffer;
  /** Why the request must be refused (empty: it may succeed). */
  reject: string[];
}

interface Operation {
  method: string;
  template: string;
  params: Array<{ name: string; in: string; schema: Schema; required?: boolean }>;
  body: Schema | undefined;
}

type Schema = Record<string, any>;

const LOOPBACK = ['127.0.0.1', '::1', 'localhost', '127.0.0.2'];
const BAD_HOSTS = ['a b', 'http://x', '[::1]', '127.0.0.1:1883', 'a/b', '-x-', 'x'.repeat(300), '\u0000', 'ünï', ''];
const WRONG_BY_TYPE: Record<string, string[]> = {
  string: ['true', '0', '1.5', '[]', '{}', '["x"]'],
  integer: ['"1"', '1.5', 'true', '[]', '{}', '1e400', '"x"'],
  number: ['"1"', 'true', '[]', '{}'],
  boolean: ['"true"', '1', '0', '[]', '{}'],
  object: ['[]', '"x"', '1', 'true'],
};
const STATUSES = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED', 'QUEUED', 'CANCELED', 'in_progress', ''];

export function operationsOf(doc: Schema): Operation[] {
  const ops: Operation[] = [];
  for (const [template, item] of Object.entries<Schema>(doc.paths ?? {})) {
    for (const [method, op] of Object.entries<Schema>(item)) {
      if (!['get', 'post', 'put', 'patch', 'delete'].includes(method)) continue;
      ops.push({
        method: method.toUpperCase(),
        template,
        params: [...(item.parameters ?? []), ...(op.parameters ?? [])],
        body: op.requestBody?.content?.['application/json']?.schema,
      });
    }
  }
  return ops;
}

/** A plausible (often valid) value for `schema`; `key` and `route` refine generic ones. */
function valid(schema: Schema | undefined, ctx: FuzzContext, route: string, key = ''): fc.Arbitrary<unknown> {
  if (!schema) return fc.constant({});
  if (schema.enum) return fc.constantFrom(...schema.enum);
  if (key === 'brokerId') return fc.constantFrom(...ctx.victims.brokerIds, ...ctx.readOnly.brokerIds, 999_999);
  if (key === 'host') return fc.constantFrom(...LOOPBACK);
  if (key === 'caCert') return fc.constantFrom(null, '-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----');
  if (key === 'port') return fc.constantFrom(1, 9, 65535);
  switch (schema.type) {
    case 'integer':
      return fc.integer({ min: schema.minimum ?? 0, max: Math.min(schema.maximum ?? 1e6, 1e6) });
    case 'boolean':
      return fc.boolean();
    case 'string': {
      const min = schema.minLength ?? 0;
      const max = Math.min(schema.maxLength ?? 40, 40);
      const s = schema.pattern ? fc.stringMatching(new RegExp(schema.pattern)) : fc.string({ minLength: min, maxLength: max });
      return s.filter((x) => x.length >= min && x.length <= (schema.maxLength ?? 1e9));
    }
    case 'object': {
      const props = Object.entries<Schema>(schema.properties ?? {});
      if (props.length === 0) return generic(route);
      const required = new Set<string>(schema.required ?? []);
      const rec: Record<string, fc.Arbitrary<unknown>> = {};
      for (const [k, s] of props) rec[k] = valid(s, ctx, route, k);
      return fc.record(rec, { requiredKeys: props.map(([k]) => k).filter((k) => required.has(k)) });
    }
    default:
      return fc.constant(null);
  }
}

/** Bodies of the routes whose schema is an open object (validated by the service). */
function generic(route: string): fc.Arbitrary<unknown> {
  const small = fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9_]{0,7}$/), fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.boolean()), { maxKeys: 3 });
  if (route.includes('/shadow')) {
    return fc.record({ state: fc.record({ reported: small, desired: small }, { requiredKeys: [] }), version: fc.nat(5), clientToken: fc.string({ maxLength: 8 }) }, { requiredKeys: ['state'] });
  }
  if (route.endsWith('/jobs/{jobId}')) {
    return fc.record(
      { status: fc.constantFrom(...STATUSES), statusDetails: fc.dictionary(fc.stringMatching(/^[a-z]{1,5}$/), fc.string({ minLength: 1, maxLength: 8 }), { maxKeys: 2 }), expectedVersion: fc.nat(4), includeJobExecutionState: fc.boolean() },
      { requiredKeys: ['status'] },
    );
  }
  if (route.endsWith('/jobs/$next')) return fc.record({ statusDetails: fc.dictionary(fc.stringMatching(/^[a-z]{1,5}$/), fc.string({ minLength: 1, maxLength: 8 }), { maxKeys: 2 }), stepTimeoutInMinutes: fc.integer({ min: -2, max: 20_000 }) }, { requiredKeys: [] });
  return small;
}

const choice = fc.record({
  who: fc.constantFrom<Who>('admin', 'admin', 'admin', 'device', 'device', 'device', 'operator', 'viewer', 'none', 'bogus', 'bogus'),
  idKind: fc.constantFrom('good', 'good', 'good', 'ghost', 'hostile', 'hostile'),
  hostile: hostileId,
  encode: fc.constantFrom('enc', 'enc', 'enc', 'pct', 'raw', 'badpct'),
  query: fc.array(fc.tuple(fc.nat(), fc.constantFrom('valid', 'valid', 'valid', 'invalid', 'hostile', 'unknown', 'dup')), { maxLength: 3 }),
  body: fc.oneof(
    { arbitrary: fc.constant('valid'), weight: 10 },
    { arbitrary: fc.constantFrom('wrongType', 'wrongType', 'unknownField', 'missingRequired', 'notObject', 'badText', 'nonUtf8', 'huge', 'deep', 'nul', 'surrogate', 'bigNumber', 'none'), weight: 13 },
  ),
  ctype: fc.oneof(
    { arbitrary: fc.constant('application/json'), weight: 12 },
    { arbitrary: fc.constantFrom('application/json; charset=utf-8', 'APPLICATION/JSON', 'text/plain', 'application/x-www-form-urlencoded', 'none', 'application/jsonp', 'multipart/form-data; boundary=x'), weight: 4 },
  ),
  header: fc.constantFrom('', '', '', '', '', '', 'reqid', 'ifnonematch', 'bigheader', 'accept'),
  otherMethod: fc.oneof({ arbitrary: fc.constant(undefined), weight: 6 }, { arbitrary: fc.constantFrom('GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'), weight: 1 }),
  n: fc.nat(),
  depth: fc.oneof(fc.integer({ min: 8, max: 64 }), fc.integer({ min: 1000, max: 30_000 })),
  bogus: fc.constantFrom('Bearer wrong-token', 'Basic YWRtaW46YWRtaW4=', 'Bearer', 'Bearer ', `Bearer ${'x'.repeat(9000)}`, 'sya_nope', 'Bearer syd_0000', 'Bearer sya_%00', 'Token abc'),
});

const pick = <T>(list: readonly T[], n: number): T => list[n % list.length]!;

/** `perOperation` cases for every operation of the document. */
export function httpFuzzCases(doc: Schema, ctx: FuzzContext, perOperation: number, seed: number): FuzzCase[] {
  const cases: FuzzCase[] = [];
  for (const [i, op] of operationsOf(doc).entries()) {
    const bodies = fc.sample(valid(op.body, ctx, op.template), { numRuns: perOperation, seed: seed + 1000 * i });
    const choices = fc.sample(choice, { numRuns: perOperation, seed: seed + 1000 * i + 1 });
    choices.forEach((c, k) => {
      const built = build(op, c, bodies[k], ctx);
      if (built) cases.push(built);
    });
  }
  return cases;
}

function build(op: Operation, c: typeof choice extends fc.Arbitrary<infer T> ? T : never, base: unknown, ctx: FuzzContext): FuzzCase | null {
  const reject: string[] = [];
  const isPublic = !op.template.startsWith('/api/');
  let who = c.who;
  if (who !== 'none' && who !== 'bogus' && ctx.tokens[who] === undefined) who = 'admin';
  const method = c.otherMethod ?? op.method;
  const mutating = !['GET', 'HEAD', 'OPTIONS'].includes(method);
  const trusted = who === 'admin' || who === 'operator';

  // ── path ──
  let path = '';
  for (const seg of op.template.split('/').slice(1)) {
    const m = /^\{(.+)\}$/.exec(seg);
    if (!m) {
      path += `/${seg}`;
      continue;
    }
    const value = paramValue(m[1]!, op.template, c, who, ctx, method);
    if (value === null) return null;
    path += `/${encodeSegment(value, c.encode, c.n)}`;
  }
  if (trusted && mentionsSentinel(path, ctx)) return null;

  // ── query ──
  const query: string[] = [];
  const qparams = op.params.filter((p) => p.in === 'query');
  for (const [n, mode] of c.query) {
    const p = qparams.length > 0 ? pick(qparams, n) : undefined;
    const name = p?.name ?? 'q';
    if (mode === 'unknown' || !p) query.push(`${encodeURIComponent(pick(['x', 'limit ', '__proto__', 'a[b]', 'constructor[prototype][x]', ''], n))}=1`);
    else if (mode === 'valid') query.push(`${name}=${encodeURIComponent(String(fc.sample(valid(p.schema, ctx, op.template, name === 'wait' ? 'wait' : ''), { numRuns: 1, seed: n })[0] ?? ''))}`.replace(/wait=\d+/, `wait=${n % 2}`));
    else if (mode === 'dup') query.push(`${name}=1`, `${name}=2`);
    else if (mode === 'hostile') query.push(`${name}=${encodeSegment(c.hostile, pick(['enc', 'pct', 'badpct'], n), n)}`);
    else {
      const bad = p.schema.type === 'integer' ? pick(['abc', '1.5', '-5', '1e309', '', '0x1g'], n) : p.schema.enum ? 'NOPE' : p.schema.type === 'boolean' ? 'maybe' : '';
      query.push(`${name}=${bad}`);
      if (p.schema.type === 'integer' && bad !== '' && bad !== '-5') reject.push(`query ${name}=${bad} is not an integer`);
      if (p.schema.enum) reject.push(`query ${name}=NOPE is not one of the enum`);
    }
  }
  if (query.length > 0) path += `?${query.join('&')}`;

  // ── headers ──
  const headers: Record<string, string> = {};
  if (who === 'none') {
    // nothing
  } else if (who === 'bogus') headers.authorization = c.bogus;
  else headers.authorization = `Bearer ${ctx.tokens[who]}`;
  if (c.header === 'reqid') headers['x-request-id'] = pick(['../../x', 'a'.repeat(300), 'ok-id-1', '\u00ff\u00fe', '%00'], c.n);
  if (c.header === 'ifnonematch') headers['if-none-match'] = pick(['*', '"x"', 'W/"1"', '"' + 'x'.repeat(2000) + '"', ''], c.n);
  if (c.header === 'bigheader') headers['x-padding'] = 'p'.repeat(pick([100, 8000, 20_000], c.n));
  if (c.header === 'accept') headers.accept = pick(['text/html', 'application/xml', '*/*', 'application/json;q=0'], c.n);

  // ── body ──
  let body: Buffer | undefined;
  const hasBody = op.body !== undefined && op.method === method;
  const sendsBody = (hasBody && c.body !== 'none') || (!hasBody && c.body === 'badText' && c.n % 3 === 0);
  if (sendsBody) {
    const shaped = bodyText(op, c, base, reject);
    body = shaped;
    if (c.ctype !== 'none') headers['content-type'] = c.ctype;
    if (hasBody && ['text/plain', 'application/x-www-form-urlencoded', 'none', 'application/jsonp', 'multipart/form-data; boundary=x'].includes(c.ctype)) reject.push(`content type ${c.ctype}`);
  }
  if (!hasBody) reject.splice(0, reject.length, ...reject.filter((r) => r.startsWith('query')));

  // ── who may do this ──
  if (!isPublic && (who === 'none' || who === 'bogus')) reject.push(`${who} token on /api/v1`);
  if (!isPublic && who === 'viewer' && mutating) reject.push('a viewer mutating');
  if (!isPublic && who === 'device' && mentionsSentinel(path, ctx)) reject.push('the fuzz device reaching for the sentinel');
  if (!isPublic && who === 'device' && !deviceMayUse(op.template, method)) reject.push('a device token on an admin route');
  return { family: `${who} ${c.idKind}/${c.encode} body:${sendsBody ? c.body : '-'}`, route: `${op.method} ${op.template}`, who, call: { method, path, headers, body }, reject };
}

/** The routes a device token may use (its own `:uuid` only): its device (read), config, its jobs (not creating one) and shadows. */
const DEVICE_ROUTES = new Set(['config', 'jobs', 'jobs/$next', 'jobs/{jobId}', 'shadow', 'shadows', 'shadows/{name}'].map((r) => `/api/v1/devices/{uuid}/${r}`));

function deviceMayUse(template: string, method: string): boolean {
  if (template === '/api/v1/devices/{uuid}') return method === 'GET' || method === 'HEAD';
  if (!DEVICE_ROUTES.has(template)) return false;
  return template !== '/api/v1/devices/{uuid}/jobs' || method === 'GET' || method === 'HEAD';
}

function paramValue(name: string, template: string, c: { idKind: string; hostile: string; n: number }, who: Who, ctx: FuzzContext, method: string): string | null {
  const trusted = who === 'admin' || who === 'operator';
  if (trusted && name === 'uuid' && template === '/api/v1/devices/{uuid}' && method === 'DELETE' && c.idKind === 'good') return pick(ctx.victims.doomed, c.n);
  if (c.idKind === 'hostile') {
    if (trusted && /^(id)$/.test(name) && resolvesToProtected(c.hostile, template, ctx)) return null;
    return c.hostile;
  }
  if (c.idKind === 'ghost') return name === 'id' ? pick(['999999', '2147483647', '2147483648', '9007199254740993'], c.n) : `ghost-${c.n % 97}`;
  switch (name) {
    case 'uuid': {
      if (trusted) return pick(ctx.victims.uuids, c.n);
      if (who === 'device') return pick([ctx.device.uuid, ctx.device.uuid, ctx.sentinel.uuid, ...ctx.victims.uuids], c.n);
      return pick([ctx.sentinel.uuid, ctx.device.uuid, ...ctx.victims.uuids], c.n);
    }
    case 'name':
      return pick(['config', 'device-state', 'x', 'new-one', 'a:b_c-d'], c.n);
    case 'jobId': {
      if (trusted) return pick([...ctx.victims.jobIds, '$next', 'job-nope'], c.n);
      return pick([...ctx.device.jobIds, ...ctx.device.jobIds, ...ctx.sentinel.jobIds, '$next', 'job-nope'], c.n);
    }
    case 'id': {
      if (template.includes('/brokers/')) return String(trusted ? pick(ctx.victims.brokerIds, c.n) : pick([...ctx.victims.brokerIds, ...ctx.readOnly.brokerIds], c.n));
      if (template.includes('/tokens/')) return String(trusted ? pick(ctx.victims.tokenIds, c.n) : pick([...ctx.victims.tokenIds, ...ctx.readOnly.tokenIds], c.n));
      return String(pick(ctx.readOnly.migrationIds, c.n));
    }
    default:
      return c.hostile;
  }
}

/** True when an id in a brokers/tokens path would be read by the server as one of the protected ids. */
function resolvesToProtected(raw: string, template: string, ctx: FuzzContext): boolean {
  const protectedIds = template.includes('/tokens/') ? ctx.readOnly.tokenIds : template.includes('/brokers/') ? ctx.readOnly.brokerIds : [];
  const n = Number(raw.trim());
  return protectedIds.some((id) => n === id || Number.parseInt(raw, 10) === id || Number.parseFloat(raw) === id);
}

function mentionsSentinel(path: string, ctx: FuzzContext): boolean {
  let decoded = path;
  try {
    decoded = decodeURIComponent(path);
  } catch {
    // undecodable: compare as sent
  }
  return [ctx.sentinel.uuid, ...ctx.sentinel.jobIds].some((id) => path.includes(id) || decoded.includes(id));
}

/** One path segment for `value` as a latin1 string (each char one byte on the wire). */
function encodeSegment(value: string, mode: string, n: number): string {
  switch (mode) {
    case 'pct':
      return percentAll(value);
    case 'raw':
      return toBytes(value).toString('latin1');
    case 'badpct': {
      const bad = pick(['%', '%Z', '%ZZ', '%F', '%FF', '%C0%AF', '%ED%A0%80', '%E2%82', '%00', '%2', '%%41'], n);
      const s = safeEncode(value);
      const at = n % (s.length + 1);
      return s.slice(0, at) + bad + s.slice(at);
    }
    default:
      return safeEncode(value);
  }
}

function safeEncode(value: string): string {
  try {
    return encodeURIComponent(value);
  } catch {
    return percentAll(value); // lone surrogates
  }
}

function bodyText(op: Operation, c: { body: string; n: number; depth: number; hostile: string }, base: unknown, reject: string[]): Buffer {
  const schema = op.body ?? {};
  const props = Object.entries<Schema>(schema.properties ?? {});
  const closed = schema.additionalProperties === false;
  const obj = (typeof base === 'object' && base !== null && !Array.isArray(base) ? { ...(base as object) } : {}) as Record<string, unknown>;
  const withRaw = (key: string, rawJson: string): string => {
    const marker = `@@RAW${c.n}@@`;
    return JSON.stringify({ ...obj, [key]: marker }).replace(`"${marker}"`, rawJson);
  };
  const stringField = props.find(([, s]) => s.type === 'string')?.[0] ?? (op.template.includes('/shadow') ? 'clientToken' : 'name');
  switch (c.body) {
    case 'wrongType': {
      if (props.length === 0) return Buffer.from(withRaw(pick(['state', 'status', 'statusDetails', 'version', 'expectedVersion'], c.n), pick(['1', '"x"', '[]', 'true', '{"a":[null]}'], c.n)));
      const [key, s] = pick(props, c.n);
      const wrong = pick(WRONG_BY_TYPE[s.enum ? 'string' : s.type] ?? ['[]'], c.n);
      if (!(wrong === 'null' && s.nullable)) reject.push(`body.${key} of the wrong type (${wrong.slice(0, 20)})`);
      return Buffer.from(withRaw(key, wrong));
    }
    case 'unknownField': {
      const key = pick(HOSTILE_KEYS, c.n);
      if (closed && key !== 'constructor') reject.push(`unknown body field ${JSON.stringify(key.slice(0, 20))}`);
      return Buffer.from(withRaw(key, pick(['1', '{"polluted":true}', '"x"', '{"prototype":{"polluted":true}}'], c.n)));
    }
    case 'missingRequired': {
      const required: string[] = schema.required ?? [];
      if (required.length === 0) return Buffer.from(JSON.stringify(obj));
      const key = pick(required, c.n);
      delete obj[key];
      reject.push(`required body.${key} missing`);
      return Buffer.from(JSON.stringify(obj));
    }
    case 'notObject':
      reject.push('a body that is not an object');
      return Buffer.from(pick(['[]', '[{}]', '"x"', '1', 'true', 'null', '[' + JSON.stringify(obj) + ']'], c.n));
    case 'badText': {
      const text = pick(BAD_BODY_TEXT, c.n);
      if (!isJson(text) && !text.startsWith('\ufeff')) reject.push('a body that is not JSON');
      return Buffer.from(text);
    }
    case 'nonUtf8': {
      const s = Buffer.from(JSON.stringify({ ...obj, [stringField]: 'abcdef' }));
      const at = s.indexOf('abcdef') + 2;
      reject.push('a body that is not UTF-8');
      return Buffer.concat([s.subarray(0, at), Buffer.from(pick(NON_UTF8_BYTES, c.n)), s.subarray(at)]);
    }
    case 'huge': {
      reject.push('a body over 128 KiB');
      return Buffer.from(JSON.stringify({ ...obj, [stringField]: 'h'.repeat(131_072 + (c.n % 200_000)) }));
    }
    case 'deep': {
      const deep = nestedJson(c.depth, c.n % 2 === 0);
      const key = props.find(([, s]) => s.type === 'object')?.[0] ?? (op.template.includes('/shadow') ? 'state' : stringField);
      const inside = op.template.includes('/shadow') ? `{"reported":{"d":${deep}}}` : deep;
      if (Buffer.byteLength(inside) > 131_072) reject.push('a body over 128 KiB');
      else if (c.depth >= 1000) reject.push(`a body nested ${c.depth} levels deep`);
      return Buffer.from(withRaw(key, inside));
    }
    case 'nul':
    case 'surrogate': {
      const bad = c.body === 'nul' ? pick(['"a\\u0000b"', '"\\u0000"'], c.n) : pick(['"\\ud800"', '"a\\udfffb"', '"\\udc00\\ud800"'], c.n);
      if (props.length === 0) {
        const nest = op.template.includes('/shadow') ? `{"reported":{"s":${bad},${bad}:1}}` : `{"k":${bad}}`;
        return Buffer.from(withRaw(op.template.includes('/shadow') ? 'state' : pick(['statusDetails', 'status', 'clientToken'], c.n), nest));
      }
      const objKey = props.find(([, s]) => s.type === 'object')?.[0];
      if (objKey && c.n % 2 === 0) return Buffer.from(withRaw(objKey, `{"k":${bad},${bad}:{"deep":[${bad}]}}`));
      return Buffer.from(withRaw(stringField, bad));
    }
    case 'bigNumber': {
      const num = pick(['1e400', '-1e400', '9007199254740993', '1e-400', '-0', '123456789012345678901234567890'], c.n);
      const key = props.find(([, s]) => s.type === 'integer')?.[0] ?? (op.template.includes('/shadow') ? 'version' : 'expectedVersion');
      return Buffer.from(withRaw(key, num));
    }
    default:
      return Buffer.from(JSON.stringify(sanitize(obj)));
  }
}

/** Keeps generated broker hosts on loopback (a valid host would be resolved and connected to). */
function sanitize(obj: Record<string, unknown>): Record<string, unknown> {
  if (typeof obj.host === 'string' && !LOOPBACK.includes(obj.host) && isHost(obj.host)) obj.host = '127.0.0.1';
  return obj;
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Broker host values the suite may send: loopback, or values the server must refuse (never a resolvable name). */
export function hostIsSafe(host: unknown): boolean {
  return typeof host !== 'string' || LOOPBACK.includes(host) || !isHost(host) || BAD_HOSTS.includes(host);
}

export { LOOPBACK, BAD_HOSTS, pick };
