/**
 * Issue 2: the shadow service under hostile MQTT input.
 *
 * fast-check generates malformed update payloads (published on the real request topics of registered devices, so
 * they are rejected rather than ignored) and odd topics (published by an anonymous Mosquitto client, which may
 * publish anywhere). Afterwards the server must still answer, every well-formed shadow must be byte-for-byte
 * unchanged, no table may have gained a row, every malformed request must have got exactly one `rejected` with
 * the expected code, and nothing may have been `accepted`.
 *
 * Reproduce a failure with the seed it prints: `SWITCHYARD_FUZZ_SEED=<n> npm test -- test/integration/shadow-fuzz.test.ts`.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import mqtt, { type MqttClient } from 'mqtt';
import { isValidDeviceUuid, isValidShadowName, shadowTopic } from '@switchyard/protocol';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, uniqueId, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';
import { onceEvent, withTimeout } from '../helpers/wait.ts';

const SEED = Number(process.env.SWITCHYARD_FUZZ_SEED ?? 20_240_602);
const NO_DEVICE_LIMITS = { SWITCHYARD_DEVICE_RATE_LIMIT: '0', SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '0' };

// ---------------------------------------------------------------------------------------------------------------
// Generated payloads. Each is malformed by construction and carries the codes it may be rejected with.
// ---------------------------------------------------------------------------------------------------------------

interface BadPayload {
  family: string;
  body: Buffer;
  codes: readonly number[];
  /** The clientToken the rejection must echo (set when the payload carries a valid one the parser can read). */
  token?: string;
}

const key = fc.stringMatching(/^[a-z][a-z0-9_]{0,11}$/).filter((k) => k !== 'mqtt');
const leaf = fc.oneof(fc.integer(), fc.boolean(), fc.string({ maxLength: 16 }), fc.double({ noNaN: true, noDefaultInfinity: true }));
const smallObject = fc.dictionary(key, leaf, { minKeys: 1, maxKeys: 4 });
const validToken = fc.stringMatching(/^[A-Za-z0-9_-]{1,32}$/);
const validBody = fc.record({ state: fc.record({ reported: smallObject }), clientToken: validToken });
const pollutionKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', '__defineGetter__');

const text = (family: string, s: string, codes: readonly number[], token?: string): BadPayload => ({
  family,
  body: Buffer.from(s, 'utf8'),
  codes,
  ...(token !== undefined ? { token } : {}),
});
/** A JSON object payload carrying a valid clientToken: the rejection echoes it. */
const withToken = (family: string, tokenArb: fc.Arbitrary<string>, make: (t: string) => string, codes: readonly number[]): fc.Arbitrary<BadPayload> =>
  tokenArb.map((t) => text(family, make(t), codes, t));

/** `{"k":` … `}` / `[` … `]` nested `levels` deep around `1`, built iteratively (5,000 levels must not recurse). */
function nested(levels: number, kinds: boolean[]): string {
  let open = '';
  let close = '';
  for (let i = 0; i < levels; i++) {
    const obj = i === 0 || kinds[i % kinds.length]!;
    open += obj ? `{"l${i}":` : '[';
    close = (obj ? '}' : ']') + close;
  }
  return `${open}1${close}`;
}

const invalidJson: fc.Arbitrary<BadPayload> = fc.oneof(
  // A proper prefix of an object's text is never JSON.
  fc.tuple(validBody, fc.nat()).map(([b, n]) => {
    const s = JSON.stringify(b);
    return text('invalid-json/truncated', s.slice(0, 1 + (n % (s.length - 1))), [400]);
  }),
  fc
    .tuple(validBody, fc.nat(), fc.constantFrom('{', '}', '[', ']', ',', ':', '"', "'", '\\', 'x', '/*'))
    .map(([b, n, c]) => {
      const s = JSON.stringify(b);
      const at = n % s.length;
      return s.slice(0, at) + c + s.slice(at);
    })
    .filter((s) => {
      try {
        JSON.parse(s);
        return false;
      } catch {
        return true; // only texts that are not JSON at all belong to this family
      }
    })
    .map((s) => text('invalid-json/mutated', s, [400])),
  fc
    .constantFrom('', ' ', '\n\t', 'null', 'NaN', 'undefined', "{'state':{}}", '{state:{}}', '{"state":{"reported":{"a":1,}}}', '{"state":{}}//', '{"a":1}{"b":2}', '\u00a0{}')
    .map((s) => text('invalid-json/literal', s, [400])),
  // Valid JSON, but not an object: AWS answers "Invalid JSON" too.
  fc
    .oneof(fc.integer(), fc.string(), fc.array(fc.integer()), fc.constant(null), fc.boolean(), fc.array(validBody, { maxLength: 2 }))
    .map((v) => text('invalid-json/not-object', JSON.stringify(v), [400])),
);

const nonUtf8: fc.Arbitrary<BadPayload> = fc
  .tuple(validBody, fc.nat(), fc.constantFrom([0xff], [0xfe], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0x80], [0xc3], [0xf8, 0x88, 0x80, 0x80, 0x80], [0xf4, 0x90, 0x80, 0x80]))
  .map(([b, n, bad]) => {
    const s = Buffer.from(JSON.stringify(b), 'utf8');
    const at = n % s.length;
    return { family: 'non-utf8', body: Buffer.concat([s.subarray(0, at), Buffer.from(bad), s.subarray(at)]), codes: [415] };
  });

const rawNul: fc.Arbitrary<BadPayload> = fc.tuple(validBody, fc.nat()).map(([b, n]) => {
  const s = Buffer.from(JSON.stringify(b), 'utf8');
  const at = n % (s.length + 1);
  return { family: 'nul/raw', body: Buffer.concat([s.subarray(0, at), Buffer.from([0]), s.subarray(at)]), codes: [400] };
});

/** Valid JSON whose strings or numbers PostgreSQL's jsonb cannot store as given. */
const unstorable: fc.Arbitrary<BadPayload> = fc.oneof(
  withToken('nul/escaped-value', validToken, (t) => `{"state":{"reported":{"a":"x\\u0000y"}},"clientToken":"${t}"}`, [400]),
  withToken('nul/escaped-key', validToken, (t) => `{"state":{"desired":{"k\\u0000":1}},"clientToken":"${t}"}`, [400]),
  withToken('surrogate/lone', fc.tuple(validToken, fc.constantFrom('\\ud800', '\\udfff', 'a\\udbff', '\\udc00\\ud800')).map(([t, s]) => `${t}|${s}`), (ts) => {
    const [t, s] = ts.split('|') as [string, string];
    return `{"state":{"reported":{"s":"${s}"}},"clientToken":"${t}"}`;
  }, [400]).map((p) => ({ ...p, token: p.token!.split('|')[0]! })),
  withToken('number/non-finite', fc.tuple(validToken, fc.constantFrom('1e400', '-1e999', '2e308')).map(([t, n]) => `${t}|${n}`), (tn) => {
    const [t, n] = tn.split('|') as [string, string];
    return `{"state":{"reported":{"n":${n}}},"clientToken":"${t}"}`;
  }, [400]).map((p) => ({ ...p, token: p.token!.split('|')[0]! })),
);

const bigState: fc.Arbitrary<BadPayload> = fc
  .tuple(validToken, fc.integer({ min: 8300, max: 60_000 }), fc.constantFrom('desired', 'reported'), fc.integer({ min: 1, max: 8 }))
  .map(([t, size, section, parts]) => {
    const piece = 'x'.repeat(Math.ceil(size / parts));
    const obj = Object.fromEntries(Array.from({ length: parts }, (_, i) => [`blob${i}`, piece]));
    return text('too-large/state', JSON.stringify({ state: { [section]: obj }, clientToken: t }), [413], t);
  });

const bigPayload: fc.Arbitrary<BadPayload> = fc
  .tuple(fc.integer({ min: 131_073, max: 400_000 }), fc.boolean())
  .map(([size, garbage]) => {
    // Over 128 KB the size is checked first, even for bytes that are not UTF-8.
    const body = garbage ? Buffer.alloc(size, 0xff) : Buffer.from(JSON.stringify({ state: { reported: { blob: 'y'.repeat(size) } } }), 'utf8');
    return { family: 'too-large/payload', body, codes: [413] };
  });

const deep: fc.Arbitrary<BadPayload> = fc
  .tuple(validToken, fc.oneof(fc.integer({ min: 7, max: 12 }), fc.integer({ min: 13, max: 5000 })), fc.array(fc.boolean(), { minLength: 1, maxLength: 5 }), fc.constantFrom('desired', 'reported'))
  .map(([t, levels, kinds, section]) => text('too-deep', `{"state":{"${section}":${nested(levels, kinds)}},"clientToken":"${t}"}`, [400], t));

const nullInArray: fc.Arbitrary<BadPayload> = fc
  .tuple(validToken, fc.constantFrom('[null]', '[1,null]', '[[null]]', '[{"a":[null]}]', '{"b":[1,2,[3,null]]}'), fc.constantFrom('desired', 'reported'))
  .map(([t, v, section]) => text('array-null', `{"state":{"${section}":{"a":${v}}},"clientToken":"${t}"}`, [400], t));

const notObject = fc.oneof(fc.array(leaf, { maxLength: 3 }), fc.string({ maxLength: 8 }), fc.integer(), fc.boolean());
const wrongTypes: fc.Arbitrary<BadPayload> = fc.oneof(
  fc.tuple(validToken, fc.constantFrom(undefined, { reported: { a: 1 } })).map(([t, extra]) => text('type/missing-state', JSON.stringify({ ...extra, clientToken: t }), [400], t)),
  fc.tuple(validToken, fc.oneof(notObject, fc.constant(null))).map(([t, s]) => text('type/state', JSON.stringify({ state: s, clientToken: t }), [400], t)),
  fc.tuple(validToken, notObject, fc.constantFrom('desired', 'reported')).map(([t, v, section]) => text('type/section', JSON.stringify({ state: { [section]: v }, clientToken: t }), [400], t)),
  fc
    .tuple(validToken, fc.oneof(fc.string({ maxLength: 4 }), fc.integer({ min: -1e6, max: -1 }), fc.double({ min: 0.01, max: 1e6, noNaN: true }).filter((d) => !Number.isInteger(d)), fc.boolean(), fc.constant(null), fc.constant({}), fc.constant([1]), fc.constant(2 ** 53)))
    .map(([t, v]) => text('type/version', JSON.stringify({ state: { reported: { a: 1 } }, version: v, clientToken: t }), [400], t)),
  fc
    .oneof(fc.integer(), fc.boolean(), fc.constant(null), fc.constant({ t: 1 }), fc.constant(['t']), fc.string({ minLength: 65, maxLength: 300 }), fc.constantFrom('é'.repeat(33), '🙂'.repeat(17), 'x'.repeat(65)))
    .map((tok) => text('type/client-token', JSON.stringify({ state: { reported: { a: 1 } }, clientToken: tok }), [400])),
);

const deltaNode: fc.Arbitrary<BadPayload> = fc
  .tuple(validToken, fc.oneof(smallObject, fc.constant(null), leaf))
  .map(([t, d]) => text('delta-node', JSON.stringify({ state: { reported: { a: 1 }, delta: d }, clientToken: t }), [400], t));

const desiredMqtt: fc.Arbitrary<BadPayload> = fc
  .tuple(validToken, fc.oneof(smallObject, leaf, fc.constant(null), fc.constant({ brokerId: 9, broker: 'mqtt://evil:1883' })), fc.option(smallObject, { nil: undefined }))
  .map(([t, m, rest]) => text('desired-mqtt', JSON.stringify({ state: { desired: { ...rest, mqtt: m } }, clientToken: t }), [403], t));

/** Prototype-pollution keys, each paired with a flaw so that the request is rejected whatever the keys do. */
const pollution: fc.Arbitrary<BadPayload> = fc
  .tuple(validToken, pollutionKey, fc.constantFrom('delta', 'mqtt', 'version', 'array-null', 'big', 'top'))
  .map(([t, k, flaw]) => {
    const poison = `{"${k}":{"polluted":true,"isAdmin":true}}`;
    switch (flaw) {
      case 'delta':
        return text('pollution+delta', `{"state":{"reported":${poison},"delta":{"a":1}},"clientToken":"${t}"}`, [400], t);
      case 'mqtt':
        return text('pollution+mqtt', `{"state":{"desired":{"${k}":{"polluted":true},"mqtt":{"brokerId":1}}},"clientToken":"${t}"}`, [403], t);
      case 'version':
        return text('pollution+version', `{"state":{"reported":${poison}},"version":"1","clientToken":"${t}"}`, [400], t);
      case 'array-null':
        return text('pollution+array-null', `{"state":{"desired":{"${k}":[null]}},"clientToken":"${t}"}`, [400], t);
      case 'big':
        return text('pollution+big', `{"state":{"reported":{"${k}":"${'p'.repeat(9000)}"}},"clientToken":"${t}"}`, [413], t);
      default:
        // `state` only inside `__proto__` (an own key after JSON.parse): a parser reading it through the prototype chain would accept this.
        return text('pollution/top', `{"${k}":{"state":{"reported":{"a":1}}},"clientToken":"${t}"}`, [400], t);
    }
  });

/** Every malformed update payload, weighted so that huge bodies stay a small share of the traffic. */
const badUpdatePayload: fc.Arbitrary<BadPayload> = fc.oneof(
  { arbitrary: invalidJson, weight: 12 },
  { arbitrary: nonUtf8, weight: 8 },
  { arbitrary: rawNul, weight: 5 },
  { arbitrary: unstorable, weight: 5 },
  { arbitrary: bigState, weight: 4 },
  { arbitrary: bigPayload, weight: 1 },
  { arbitrary: deep, weight: 8 },
  { arbitrary: nullInArray, weight: 4 },
  { arbitrary: wrongTypes, weight: 14 },
  { arbitrary: deltaNode, weight: 4 },
  { arbitrary: desiredMqtt, weight: 6 },
  { arbitrary: pollution, weight: 6 },
);

/** Any bytes at all (for get/delete, whose payload AWS ignores except for the clientToken). */
const anyBody: fc.Arbitrary<Buffer> = fc.oneof(
  badUpdatePayload.map((p) => p.body),
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.constant(Buffer.alloc(0)),
);

// ---------------------------------------------------------------------------------------------------------------
// Odd topics. Messages on them must be ignored (or, for a valid request topic of an unregistered device, answered
// 404): none may change a shadow or add a row.
// ---------------------------------------------------------------------------------------------------------------

const wellFormed = (reported: Record<string, unknown>): Buffer => Buffer.from(JSON.stringify({ state: { reported, desired: { hacked: true } } }));
const badSegment = fc.oneof(
  fc.constant(''),
  fc.constant('..'),
  fc.constant('.'),
  fc.constant('$x'),
  fc.constant('a b'),
  fc.constant('dévice'),
  fc.constant('naïve-名前'),
  fc.constant('a.b'),
  fc.constant('x'.repeat(129)),
  fc.constant('n'.repeat(65)),
  fc.constant('${jndi:ldap://x}'),
  fc.constant("'; DROP TABLE devices; --"),
  fc.string({ minLength: 1, maxLength: 20 }).filter((s) => /[^A-Za-z0-9:_-]/.test(s) && !/[+#/]/.test(s) && !s.includes('\u0000')),
);

interface TopicCase {
  family: string;
  topic: string;
  body: Buffer;
}

function oddTopics(x: string, xNames: readonly string[]): fc.Arbitrary<TopicCase> {
  const op = fc.constantFrom('update', 'get', 'delete');
  const name = fc.constantFrom(...xNames);
  const base = (n: string): string => (n === '' ? `iot/device/${x}/shadow` : `iot/device/${x}/shadow/name/${n}`);
  const payload = fc.oneof(smallObject.map(wellFormed), anyBody);
  return fc.oneof(
    // Replies only the server may publish, carrying documents that would change the shadow if obeyed.
    fc.tuple(name, fc.constantFrom('update/accepted', 'update/rejected', 'update/delta', 'update/documents', 'get/accepted', 'get/rejected', 'delete/accepted', 'delete/rejected'), payload)
      .map(([n, r, body]) => ({ family: 'spoofed-reply', topic: `${base(n)}/${r}`, body })),
    fc.tuple(name, fc.constantFrom('patch', 'UPDATE', 'update2', 'updates', 'get ', 'update/extra', 'update/accepted/x', 'delete/now', 'list'), payload)
      .map(([n, o, body]) => ({ family: 'unknown-op', topic: `${base(n)}/${o}`, body })),
    fc.tuple(badSegment.filter((n) => !isValidShadowName(n)), op, payload).map(([n, o, body]) => ({ family: 'bad-shadow-name', topic: `iot/device/${x}/shadow/name/${n}/${o}`, body })),
    fc.tuple(badSegment.filter((u) => !isValidDeviceUuid(u)), op, payload, fc.boolean()).map(([u, o, body, named]) => ({ family: 'bad-uuid', topic: `iot/device/${u}/shadow/${named ? 'name/config/' : ''}${o}`, body })),
    fc.tuple(op, payload, fc.constantFrom(
      `iot/device//shadow/%op`, `iot//device/${x}/shadow/%op`, `iot/device/${x}//shadow/%op`, `iot/device/${x}/shadow//%op`,
      `iot/device/${x}/shadow/name//%op`, `iot/device/${x}/shadow/%op/`, `/iot/device/${x}/shadow/%op`, `iot/device/${x}/shadow/name/config/%op/`,
      `iot/device/${x}/shadow/config/%op`, `iot/device/${x}/%op`, `iot/device/${x}/shadow`, `iot/device/${x}`,
    )).map(([o, body, t]) => ({ family: 'empty-or-missing-segment', topic: t.replace('%op', o), body })),
    fc.tuple(op, payload, fc.constantFrom(
      `$aws/things/${x}/shadow/%op/accepted`, `$aws/things/${x}/shadow/name/config/%op/rejected`, `$SYS/broker/%op`, `$switchyard/${x}/%op`,
      `IOT/device/${x}/shadow/%op`, `iot/devices/${x}/shadow/%op`, `iot/things/${x}/shadow/%op`, `aws/things/${x}/shadow/%op`,
      `iot/device/${x}/jobs/%op`, `iot/device/${x}/status`, `iot/device/${x}/command/broker-change`, `iot/device/${x}/command/broker-change/ack`,
      `iot/device/${x}/telemetry/%op`, `iot/device/${x}/shadow/name/../%op`, `iot/device/../shadow/%op`, `iot/device/${x}/../${x}/shadow/%op`,
    )).map(([o, body, t]) => ({ family: 'other-namespace', topic: t.replace('%op', o), body })),
    fc.tuple(fc.integer({ min: 200, max: 60_000 }), op, payload).map(([n, o, body]) => ({ family: 'overlong-topic', topic: `iot/device/${x}/shadow/name/${'z'.repeat(n)}/${o}`, body })),
  );
}

// ---------------------------------------------------------------------------------------------------------------
// The run: publish, pace on PUBACKs and replies, count replies per topic.
// ---------------------------------------------------------------------------------------------------------------

interface Expected {
  /** Rejection topic → how many rejections must arrive there. */
  counts: Map<string, number>;
  /** Rejection topic → allowed codes and, per message, the echoed token when known. */
  codes: Map<string, Set<number>>;
  tokens: Map<string, string[]>;
  families: Map<string, string>;
}

/** Wakes waiters on every event; `next()` is the next event after the call. */
class Progress {
  #waiters: Array<() => void> = [];
  next(): Promise<void> {
    return new Promise((resolve) => this.#waiters.push(resolve));
  }
  notify(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const fn of w) fn();
  }
}

interface Received {
  topic: string;
  raw: Buffer;
}

/** Subscribes to every reply topic of the namespace and records what arrives. */
async function startMonitor(url: string, progress: Progress): Promise<{ client: MqttClient; received: Received[] }> {
  const client = await mqtt.connectAsync(url, { clientId: uniqueId('fuzz-monitor'), clean: true, reconnectPeriod: 0, protocolVersion: 4 });
  const received: Received[] = [];
  client.on('message', (topic, raw) => {
    received.push({ topic, raw });
    progress.notify();
  });
  await client.subscribeAsync({ 'iot/device/+/shadow/+/+': { qos: 1 }, 'iot/device/+/shadow/name/+/+/+': { qos: 1 } });
  return { client, received };
}

/**
 * Publishes `messages` at QoS 1 with at most `window` PUBACKs outstanding and at most `lag` expected replies not
 * yet received, so neither Mosquitto's queue limits nor the server's request queue can drop anything.
 */
async function publishPaced(
  client: MqttClient,
  messages: Array<{ topic: string; body: Buffer; expectsReply: boolean }>,
  state: { repliesSeen: () => number },
  progress: Progress,
  { window = 48, lag = 256, stallMs = 20_000 } = {},
): Promise<void> {
  let unacked = 0;
  let repliesExpected = 0;
  let failure: Error | undefined;
  for (const [i, m] of messages.entries()) {
    while (!failure && (unacked >= window || repliesExpected - state.repliesSeen() >= lag)) {
      await withTimeout(progress.next(), stallMs, `progress at message ${i}/${messages.length} (${unacked} unacked, ${repliesExpected - state.repliesSeen()} replies outstanding)`);
    }
    if (failure) throw failure;
    unacked += 1;
    if (m.expectsReply) repliesExpected += 1;
    client.publish(m.topic, m.body, { qos: 1 }, (err) => {
      unacked -= 1;
      if (err) failure ??= new Error(`publish on ${JSON.stringify(m.topic.slice(0, 120))} failed: ${err.message}`);
      progress.notify();
    });
  }
  while (!failure && unacked > 0) await withTimeout(progress.next(), stallMs, `the last ${unacked} PUBACKs`);
  if (failure) throw failure;
}

// ---------------------------------------------------------------------------------------------------------------
// Snapshots.
// ---------------------------------------------------------------------------------------------------------------

async function dumpTables(env: TestEnv): Promise<Map<string, { count: number; rows: string }>> {
  const { rows: tables } = await env.sy.db.query<{ table_name: string }>(
    `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name`,
  );
  const out = new Map<string, { count: number; rows: string }>();
  for (const { table_name: t } of tables) {
    const ident = `"${t.replaceAll('"', '""')}"`;
    const { rows } = await env.sy.db.query<{ n: number | string; dump: string }>(
      `SELECT count(*) AS n, coalesce(jsonb_agg(to_jsonb(t) ORDER BY to_jsonb(t)::text), '[]'::jsonb)::text AS dump FROM ${ident} t`,
    );
    out.set(t, { count: Number(rows[0]!.n), rows: rows[0]!.dump });
  }
  return out;
}

async function httpSnapshot(env: TestEnv, shadows: ReadonlyArray<{ uuid: string; name: string }>): Promise<string[]> {
  const out: string[] = [];
  for (const { uuid, name } of shadows) {
    const path = name === '' ? `/api/v1/devices/${uuid}/shadow` : `/api/v1/devices/${uuid}/shadows/${name}`;
    const res = await env.api('GET', path);
    // `timestamp` is the time of the answer, not of the shadow.
    const { timestamp: _answeredAt, ...body } = (res.body ?? {}) as Record<string, unknown>;
    out.push(`${path} ${res.status} ${JSON.stringify(body)}`);
  }
  for (const uuid of new Set(shadows.map((s) => s.uuid))) {
    const res = await env.api('GET', `/api/v1/devices/${uuid}/shadows`);
    const { timestamp: _answeredAt, ...body } = (res.body ?? {}) as Record<string, unknown>;
    out.push(`names ${uuid} ${res.status} ${JSON.stringify(body)}`);
  }
  return out;
}

/** Creates well-formed shadows (named, classic, one deleted) over HTTP and MQTT; returns every key written. */
async function seedShadows(env: TestEnv, uuid: string, mqttClient: MqttClient): Promise<Array<{ uuid: string; name: string }>> {
  const post = async (name: string, body: unknown): Promise<void> => {
    const path = name === '' ? `/api/v1/devices/${uuid}/shadow` : `/api/v1/devices/${uuid}/shadows/${name}`;
    const res = await env.api('POST', path, body);
    assert.equal(res.status, 200, `seeding ${path}: ${JSON.stringify(res.body)}`);
  };
  await post('config', { state: { desired: { led: 'on', rate: 5, tags: ['a', 'b'] }, reported: { led: 'off', fw: { v: '1.0.0' } } } });
  await post('config', { state: { desired: { rate: 7 } }, version: 1 });
  await post('', { state: { reported: { temp: 21.5, on: true }, desired: { on: false } } });
  await post('device-state', { state: { reported: { mqtt: { brokerId: env.brokers[0]!.id, status: 'connected' } } } });
  await post('gone', { state: { reported: { a: 1 } } });
  assert.equal((await env.api('DELETE', `/api/v1/devices/${uuid}/shadows/gone`)).status, 200);
  // One write over MQTT as well, answered before the snapshot is taken.
  const topic = shadowTopic(uuid, 'config', 'update');
  const acceptedTopic = shadowTopic(uuid, 'config', 'update', 'accepted');
  await mqttClient.subscribeAsync(acceptedTopic, { qos: 1 });
  const accepted = onceMessage(mqttClient, acceptedTopic);
  await mqttClient.publishAsync(topic, JSON.stringify({ state: { reported: { led: 'on', rate: 7 } }, clientToken: 'seed' }), { qos: 1 });
  await accepted;
  await mqttClient.unsubscribeAsync(acceptedTopic);
  return ['config', '', 'device-state', 'gone'].map((name) => ({ uuid, name }));
}

function onceMessage(client: MqttClient, topic: string, timeoutMs = 10_000): Promise<Buffer> {
  return withTimeout(
    new Promise<Buffer>((resolve) => {
      const on = (t: string, raw: Buffer): void => {
        if (t !== topic) return;
        client.off('message', on);
        resolve(raw);
      };
      client.on('message', on);
    }),
    timeoutMs,
    `a message on ${topic}`,
  );
}

function isPrototypeClean(): boolean {
  const probe: Record<string, unknown> = {};
  return probe['polluted'] === undefined && probe['isAdmin'] === undefined && Object.keys(Object.prototype).length === 0;
}

// ---------------------------------------------------------------------------------------------------------------

const real = realServers(['postgres', 'mosquitto']);

describe('shadow service under malformed MQTT input (PostgreSQL + Mosquitto)', { skip: real.skip }, () => {
  let env: TestEnv;
  const clients: MqttClient[] = [];

  before(async () => {
    // Thousands of requests per device: the per-device limits (covered by device-limits.test.ts) would answer most 429.
    env = await startTestSwitchyard('postgres', { brokers: 1, env: NO_DEVICE_LIMITS });
  });
  after(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
    await env?.stop();
  });

  it('rejects 10,000 generated malformed payloads and topics, keeps answering, and changes no row', async () => {
    const started = Date.now();
    const url = `mqtt://${env.brokers[0]!.host}:${env.brokers[0]!.port}`;
    const progress = new Progress();
    const publisher = await mqtt.connectAsync(url, { clientId: uniqueId('fuzz-pub'), clean: true, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(publisher);

    // Devices: S (well-formed shadows; malformed updates on them), X (well-formed shadows; odd topics only),
    // T (no shadows; malformed requests on fresh shadow names, one reply topic per message).
    const make = async (prefix: string): Promise<string> => (await env.createDevice({ uuid: uniqueId(prefix) })).uuid;
    const S = [await make('fz-s'), await make('fz-s')];
    const X = await make('fz-x');
    const T = [await make('fz-t'), await make('fz-t'), await make('fz-t')];
    const seeded: Array<{ uuid: string; name: string }> = [];
    for (const uuid of [...S, X]) seeded.push(...(await seedShadows(env, uuid, publisher)));

    const tablesBefore = await dumpTables(env);
    const httpBefore = await httpSnapshot(env, seeded);
    assert.ok(tablesBefore.get('device_shadows')!.count >= 12, 'the seed wrote the shadows');

    const monitor = await startMonitor(url, progress);
    clients.push(monitor.client);

    // --- Build the traffic (deterministic for a seed). ---
    const payloadCount = 9_000;
    const topicCount = 1_400;
    const payloads = fc.sample(badUpdatePayload, { numRuns: payloadCount, seed: SEED });
    const extraBodies = fc.sample(anyBody, { numRuns: payloadCount, seed: SEED + 1 });
    const picks = fc.sample(fc.nat(999), { numRuns: payloadCount, seed: SEED + 2 });
    const expected: Expected = { counts: new Map(), codes: new Map(), tokens: new Map(), families: new Map() };
    const expect = (topic: string, codes: readonly number[], family: string, token?: string): void => {
      expected.counts.set(topic, (expected.counts.get(topic) ?? 0) + 1);
      const set = expected.codes.get(topic) ?? new Set<number>();
      for (const c of codes) set.add(c);
      expected.codes.set(topic, set);
      if (token !== undefined) expected.tokens.set(topic, [...(expected.tokens.get(topic) ?? []), token]);
      expected.families.set(topic, family);
    };
    const messages: Array<{ topic: string; body: Buffer; expectsReply: boolean }> = [];
    const familyCounts = new Map<string, number>();
    const countFamily = (f: string): void => void familyCounts.set(f, (familyCounts.get(f) ?? 0) + 1);

    for (let i = 0; i < payloadCount; i++) {
      const p = payloads[i]!;
      const pick = picks[i]!;
      if (pick < 150) {
        // On a live, well-formed shadow (named, classic or the broker shadow): rejected, shadow untouched.
        const target = seeded.filter((s) => s.uuid !== X && s.name !== 'gone')[pick % 6]!;
        messages.push({ topic: shadowTopic(target.uuid, target.name, 'update'), body: p.body, expectsReply: true });
        expect(shadowTopic(target.uuid, target.name, 'update', 'rejected'), p.codes, p.family);
        countFamily(`update ${p.family}`);
      } else if (pick < 200) {
        // The classic shadow of a device that has none: one shared reply topic per device.
        const uuid = T[pick % T.length]!;
        messages.push({ topic: shadowTopic(uuid, '', 'update'), body: p.body, expectsReply: true });
        expect(shadowTopic(uuid, '', 'update', 'rejected'), p.codes, p.family);
        countFamily(`update ${p.family}`);
      } else if (pick < 260) {
        // get/delete with any payload on a shadow that does not exist: 404, and no row appears.
        const uuid = T[pick % T.length]!;
        const op = pick % 2 === 0 ? 'get' : 'delete';
        messages.push({ topic: shadowTopic(uuid, `q${i}`, op), body: extraBodies[i]!, expectsReply: true });
        expect(shadowTopic(uuid, `q${i}`, op, 'rejected'), [404], `${op} of a missing shadow`);
        countFamily(`${op} of a missing shadow`);
      } else {
        // A fresh shadow name per message: exactly one reply topic per message.
        const uuid = T[pick % T.length]!;
        messages.push({ topic: shadowTopic(uuid, `f${i}`, 'update'), body: p.body, expectsReply: true });
        expect(shadowTopic(uuid, `f${i}`, 'update', 'rejected'), p.codes, p.family, p.token);
        countFamily(`update ${p.family}`);
      }
    }

    const xNames = ['', 'config', 'device-state', 'gone'];
    const topicCases = fc.sample(oddTopics(X, xNames), { numRuns: topicCount, seed: SEED + 3 });
    const oddTopicSet = new Set<string>();
    for (const c of topicCases) {
      messages.push({ topic: c.topic, body: c.body, expectsReply: false });
      oddTopicSet.add(c.topic);
      countFamily(`topic ${c.family}`);
    }
    // Valid request topics of devices that were never registered: 404 "Thing not found", nothing stored.
    const ghosts = fc.sample(fc.tuple(fc.constantFrom('update', 'get', 'delete'), fc.constantFrom('', 'config', 'device-state'), smallObject), { numRuns: 300, seed: SEED + 4 });
    for (const [i, [op, name, reported]] of ghosts.entries()) {
      const ghost = `fz-ghost-${process.pid}-${i}`;
      messages.push({ topic: shadowTopic(ghost, name, op), body: Buffer.from(JSON.stringify({ state: { reported }, clientToken: `g${i}` })), expectsReply: true });
      expect(shadowTopic(ghost, name, op, 'rejected'), [404], 'unregistered device', op === 'update' ? `g${i}` : undefined);
      countFamily('topic unregistered device');
    }
    // Interleave the three streams deterministically.
    const order = fc.sample(fc.nat(), { numRuns: messages.length, seed: SEED + 5 });
    const shuffled = messages.map((m, i) => ({ m, k: order[i]! })).sort((a, b) => a.k - b.k).map((e) => e.m);
    assert.ok(shuffled.length >= 10_000, `at least 10,000 messages (${shuffled.length})`);

    // --- Publish. ---
    const isServerReply = (topic: string): boolean => !oddTopicSet.has(topic) && !topic.startsWith(`iot/device/${X}/`);
    let seen = 0;
    let scanned = 0;
    const countReplies = (): number => {
      for (; scanned < monitor.received.length; scanned++) if (isServerReply(monitor.received[scanned]!.topic)) seen++;
      return seen;
    };
    await publishPaced(publisher, shuffled, { repliesSeen: countReplies }, progress);
    const expectedTotal = [...expected.counts.values()].reduce((a, b) => a + b, 0);
    while (countReplies() < expectedTotal) {
      await withTimeout(progress.next(), 20_000, `the last ${expectedTotal - countReplies()} of ${expectedTotal} rejections`);
    }

    // Topics that Mosquitto itself refuses (wildcards, NUL): it disconnects the publisher; the server never sees them.
    let refused = 0;
    for (const topic of [`iot/device/${X}/shadow/+`, `iot/device/#`, `iot/device/${X}/shadow/name/#/update`, `iot/device/${X}\u0000/shadow/update`, `iot/device/${X}/shadow/name/a\u0000b/update`, `\u0000`]) {
      const hostile = await mqtt.connectAsync(url, { clientId: uniqueId('fuzz-hostile'), clean: true, reconnectPeriod: 0, protocolVersion: 4 });
      clients.push(hostile);
      hostile.on('error', () => undefined); // the broker closing the socket is the expected outcome here
      const closed = onceEvent(hostile, 'close', { timeoutMs: 10_000, message: `Mosquitto to close a client that published on ${JSON.stringify(topic)}` });
      hostile.publish(topic, wellFormed({ evil: 1 }), { qos: 1 });
      await closed;
      refused += 1;
    }

    // Barrier: a request through the same path on every monitored device; its reply comes after every earlier one.
    await env.sy.shadows.drain();
    const barrier = await mqtt.connectAsync(url, { clientId: uniqueId('fuzz-barrier'), clean: true, reconnectPeriod: 0, protocolVersion: 4 });
    clients.push(barrier);
    for (const uuid of [...S, ...T]) {
      const topic = shadowTopic(uuid, 'barrier', 'get', 'rejected');
      await barrier.subscribeAsync(topic, { qos: 1 });
      const reply = onceMessage(barrier, topic);
      await barrier.publishAsync(shadowTopic(uuid, 'barrier', 'get'), '', { qos: 1 });
      await reply;
    }

    // --- Every malformed request got exactly one rejection with its code; nothing was accepted. ---
    const got = new Map<string, Received[]>();
    for (const r of monitor.received) {
      if (!isServerReply(r.topic) || r.topic.includes('/name/barrier/')) continue;
      got.set(r.topic, [...(got.get(r.topic) ?? []), r]);
    }
    const problems: string[] = [];
    for (const [topic, list] of got) {
      if (!expected.counts.has(topic)) problems.push(`unexpected message on ${topic}: ${list[0]!.raw.toString('utf8').slice(0, 200)}`);
    }
    let checkedUnique = 0;
    for (const [topic, n] of expected.counts) {
      const list = got.get(topic) ?? [];
      if (list.length !== n) {
        problems.push(`${topic} (${expected.families.get(topic)}): ${list.length} rejections for ${n} requests`);
        continue;
      }
      if (n === 1) checkedUnique += 1;
      const tokens = expected.tokens.get(topic);
      for (const [k, r] of list.entries()) {
        let body: { code?: unknown; message?: unknown; timestamp?: unknown; clientToken?: unknown };
        try {
          body = JSON.parse(r.raw.toString('utf8'));
        } catch {
          problems.push(`${topic}: the rejection is not JSON`);
          continue;
        }
        if (!expected.codes.get(topic)!.has(body.code as number)) {
          problems.push(`${topic} (${expected.families.get(topic)}): code ${String(body.code)} "${String(body.message)}", expected ${[...expected.codes.get(topic)!].join('/')}`);
        }
        if (typeof body.message !== 'string' || body.message === '' || typeof body.timestamp !== 'number') problems.push(`${topic}: malformed error body ${JSON.stringify(body)}`);
        if (n === 1 && tokens && body.clientToken !== tokens[k]) problems.push(`${topic} (${expected.families.get(topic)}): clientToken ${JSON.stringify(body.clientToken)}, expected ${tokens[k]}`);
      }
    }
    assert.deepEqual(problems.slice(0, 30), [], `${problems.length} problem(s); seed ${SEED}`);
    assert.ok(checkedUnique >= 500, `at least 500 malformed requests were each matched to exactly one rejection (${checkedUnique})`);

    // --- Nothing changed, nothing was added. ---
    const tablesAfter = await dumpTables(env);
    assert.deepEqual([...tablesAfter.keys()], [...tablesBefore.keys()]);
    for (const [table, before] of tablesBefore) {
      const afterDump = tablesAfter.get(table)!;
      assert.equal(afterDump.count, before.count, `rows in ${table}`);
      assert.equal(afterDump.rows, before.rows, `contents of ${table} (byte for byte)`);
    }
    assert.deepEqual(await httpSnapshot(env, seeded), httpBefore);
    assert.ok(isPrototypeClean(), 'Object.prototype is untouched');

    // --- The server still answers, over HTTP and MQTT. ---
    const health = await env.api('GET', '/healthz', undefined, { token: null });
    assert.equal(health.status, 200);
    const fresh = await env.createDevice();
    const device: DeviceClient = await env.connectDevice(fresh);
    const base = `iot/device/${fresh.uuid}/shadow/name/after-fuzz`;
    await device.subscribe([`${base}/+/+`]);
    const upd = await device.request(base, 'update', { state: { reported: { ok: true } } });
    assert.equal(upd.topic, `${base}/update/accepted`);
    assert.equal(upd.payload.version, 1);
    const get = await device.request(base, 'get');
    assert.equal(get.topic, `${base}/get/accepted`);
    assert.deepEqual(get.payload.state, { reported: { ok: true } });

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const summary = [...familyCounts.entries()].sort().map(([f, n]) => `${f}: ${n}`).join(', ');
    process.stderr.write(`# shadow-fuzz (postgres): ${shuffled.length + refused} messages (${expectedTotal} answered, ${checkedUnique} matched one-to-one, ${refused} refused by Mosquitto) in ${seconds} s, seed ${SEED}\n#   ${summary}\n`);
  });
});

describe('shadow service under malformed MQTT input (PGlite + Aedes)', () => {
  let env: TestEnv;

  before(async () => {
    // Thousands of requests per device: the per-device limits (covered by device-limits.test.ts) would answer most 429.
    env = await startTestSwitchyard('embedded', { brokers: 1, env: NO_DEVICE_LIMITS });
  });
  after(async () => {
    await env?.stop();
  });

  // Aedes closes a device's connection when it publishes on a topic that is not its own, so every message here
  // goes on a valid request topic of the publishing device itself; only the payload is malformed.
  it('rejects 2,000 generated malformed payloads on a device\'s own topics and changes no row', async () => {
    const started = Date.now();
    const progress = new Progress();
    const devices: Array<{ uuid: string; client: DeviceClient; kicked: number }> = [];
    for (let i = 0; i < 2; i++) {
      const d = await env.createDevice({ uuid: uniqueId('fz-e') });
      // Seeded before the device connects, so that the seed's own replies cannot reach it.
      const res = await env.api('POST', `/api/v1/devices/${d.uuid}/shadows/config`, { state: { desired: { led: 'on' }, reported: { led: 'off' } } });
      assert.equal(res.status, 200);
      const client = await env.connectDevice(d);
      const entry = { uuid: d.uuid, client, kicked: 0 };
      client.client.on('message', () => progress.notify());
      client.client.on('close', () => {
        entry.kicked += 1;
        progress.notify();
      });
      await client.subscribe([`iot/device/${d.uuid}/shadow/+/+`, `iot/device/${d.uuid}/shadow/name/+/+/+`]);
      devices.push(entry);
    }
    const tablesBefore = await dumpTables(env);
    const httpBefore = await httpSnapshot(env, devices.map((d) => ({ uuid: d.uuid, name: 'config' })));

    const count = 2_000;
    const payloads = fc.sample(badUpdatePayload, { numRuns: count, seed: SEED + 10 });
    const expected = new Map<string, { n: number; codes: Set<number>; token?: string; family: string }>();
    const perDevice = devices.map(() => [] as Array<{ topic: string; body: Buffer; expectsReply: boolean }>);
    for (const [i, p] of payloads.entries()) {
      const d = i % devices.length;
      const name = i % 20 === 0 ? 'config' : `f${i}`;
      const uuid = devices[d]!.uuid;
      perDevice[d]!.push({ topic: shadowTopic(uuid, name, 'update'), body: p.body, expectsReply: true });
      const reply = shadowTopic(uuid, name, 'update', 'rejected');
      const e = expected.get(reply) ?? { n: 0, codes: new Set<number>(), family: p.family };
      e.n += 1;
      for (const c of p.codes) e.codes.add(c);
      if (name !== 'config' && p.token !== undefined) e.token = p.token;
      expected.set(reply, e);
    }
    const replies = (): number => devices.reduce((n, d) => n + d.client.messages.length, 0);
    await Promise.all(devices.map((d, i) => publishPaced(d.client.client, perDevice[i]!, { repliesSeen: replies }, progress, { window: 24, lag: 128 })));
    while (replies() < count) await withTimeout(progress.next(), 20_000, `the last ${count - replies()} of ${count} rejections`);
    await env.sy.shadows.drain();
    for (const d of devices) {
      const barrier = await d.client.request(`iot/device/${d.uuid}/shadow/name/barrier`, 'get', {}, 10_000);
      assert.equal(barrier.payload.code, 404);
    }
    assert.deepEqual(devices.map((d) => d.kicked), devices.map(() => 0), 'Aedes kept every device connected');

    const problems: string[] = [];
    const got = new Map<string, Array<{ payload: any }>>();
    for (const d of devices) {
      for (const m of d.client.messages) {
        if (m.topic.includes('/name/barrier/')) continue;
        got.set(m.topic, [...(got.get(m.topic) ?? []), m]);
      }
    }
    for (const topic of got.keys()) if (!expected.has(topic)) problems.push(`unexpected message on ${topic}`);
    for (const [topic, e] of expected) {
      const list = got.get(topic) ?? [];
      if (list.length !== e.n) problems.push(`${topic} (${e.family}): ${list.length} rejections for ${e.n} requests`);
      for (const m of list) {
        if (!e.codes.has(m.payload?.code)) problems.push(`${topic} (${e.family}): code ${String(m.payload?.code)} "${String(m.payload?.message)}"`);
        if (e.token !== undefined && m.payload?.clientToken !== e.token) problems.push(`${topic} (${e.family}): clientToken ${JSON.stringify(m.payload?.clientToken)}, expected ${e.token}`);
      }
    }
    assert.deepEqual(problems.slice(0, 30), [], `${problems.length} problem(s); seed ${SEED + 10}`);

    const tablesAfter = await dumpTables(env);
    for (const [table, before] of tablesBefore) {
      assert.equal(tablesAfter.get(table)!.count, before.count, `rows in ${table}`);
      assert.equal(tablesAfter.get(table)!.rows, before.rows, `contents of ${table} (byte for byte)`);
    }
    assert.deepEqual(await httpSnapshot(env, devices.map((d) => ({ uuid: d.uuid, name: 'config' }))), httpBefore);
    assert.equal((await env.api('GET', '/healthz', undefined, { token: null })).status, 200);
    const ok = await devices[0]!.client.request(`iot/device/${devices[0]!.uuid}/shadow/name/after-fuzz`, 'update', { state: { reported: { ok: true } } });
    assert.equal(ok.payload.version, 1);
    process.stderr.write(`# shadow-fuzz (embedded): ${count} malformed updates, ${expected.size} reply topics checked, in ${((Date.now() - started) / 1000).toFixed(1)} s, seed ${SEED + 10}\n`);
  });
});
