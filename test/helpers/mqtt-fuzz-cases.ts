/**
 * Generated device → server MQTT messages for test/integration/mqtt-fuzz.test.ts, on the topics the shadow fuzz
 * does not cover: jobs requests (`get`, `start-next`, `{jobId}/get`, `{jobId}/update`, in the `iot` and `$aws`
 * namespaces), presence (`…/status`) and command acks (`…/command/broker-change/ack`), plus odd topics next to them.
 *
 * Every message is built so that it must change nothing: jobs updates are malformed or cannot apply (a wrong
 * `expectedVersion`, another device's job, an unknown execution), `start-next` finds an IN_PROGRESS execution at
 * the head of the queue (which it returns unchanged), status messages are malformed or name another broker, acks are
 * malformed or name no command of the device. Each case says what must come back: one reply (accepted allowed or
 * not, and the rejection codes allowed), silence, or (odd jobs topics) silence or one `InvalidTopic`.
 */
import fc from 'fast-check';
import { HOSTILE_KEYS, LONE_SURROGATES, NON_UTF8_BYTES, hostileId, nestedJson } from './fuzz-values.ts';

export interface FuzzDevice {
  uuid: string;
  /** Head of the queue: IN_PROGRESS. */
  inProgress: string;
  queued: string;
  /** SUCCEEDED. */
  done: string;
}

export interface MqttFuzzContext {
  devices: FuzzDevice[];
  sentinel: { uuid: string; jobId: string };
  /** The broker the messages arrive on, and another one (a status naming it is a spoof). */
  brokerId: number;
  otherBrokerId: number;
  /** A real broker-change command of devices[0]: acks for it may only carry invalid fields. */
  commandId: string;
}

export type Expect =
  | { kind: 'reply'; accepted: boolean; codes: readonly string[]; token?: string }
  | { kind: 'silence' }
  | { kind: 'invalid-topic' };

export interface MqttCase {
  family: string;
  topic: string;
  body: Buffer;
  /** The device whose request queue the message joins (pacing), if any. */
  device?: string;
  expect: Expect;
}

const pick = <T>(list: readonly T[], n: number): T => list[n % list.length]!;
const PARSE = ['InvalidRequest'] as const;
const WRONG: Record<string, string[]> = {
  string: ['1', 'true', 'null', '[]', '{}'],
  integer: ['"1"', '1.5', 'true', 'null', '[]', '1e400', '-1e400', '9007199254740993'],
  boolean: ['"true"', '1', 'null', '[]'],
  details: ['[]', '"x"', '1', 'true', '{"a":1}', '{"a":null}', '{"a":""}', '{"":"x"}', '{"a b":"x"}', `{"${'k'.repeat(129)}":"x"}`, `{"a":"${'v'.repeat(1025)}"}`, '{"a":"x\\u0000y"}', '{"a":"line\\nbreak"}',
    `{${Array.from({ length: 11 }, (_, i) => `"k${i}":"v"`).join(',')}}`, ...LONE_SURROGATES.map((s) => `{"a":${JSON.stringify(s).replace(/[\ud800-\udfff]/g, (c) => `\\u${c.charCodeAt(0).toString(16)}`)}}`)],
};
const FIELDS: Record<string, Record<string, keyof typeof WRONG>> = {
  get: { clientToken: 'string' },
  'start-next': { statusDetails: 'details', stepTimeoutInMinutes: 'integer', clientToken: 'string' },
  'job-get': { executionNumber: 'integer', includeJobDocument: 'boolean', clientToken: 'string' },
  'job-update': { status: 'string', statusDetails: 'details', expectedVersion: 'integer', executionNumber: 'integer', includeJobExecutionState: 'boolean', includeJobDocument: 'boolean', stepTimeoutInMinutes: 'integer', clientToken: 'string' },
};

function jsonWith(fields: Record<string, string>): string {
  return `{${Object.entries(fields).map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(',')}}`;
}

/** A jobs request payload for `op` that changes nothing, with what must come back. */
function jobsPayload(op: string, jobKind: string, c: { n: number; mode: number; key: string; text: string; bytes: number[] }, token: string): { body: Buffer; expect: Expect } {
  const tok = JSON.stringify(token);
  const fields = FIELDS[op]!;
  const names = Object.keys(fields);
  const found = jobKind === 'ghost' || jobKind === 'sentinel' ? ['ResourceNotFound'] : [];
  // What a well-formed request of this op may get, for this job.
  const wellFormed = (): Expect => {
    if (op === 'get' || op === 'start-next') return { kind: 'reply', accepted: true, codes: [], token };
    if (op === 'job-get') return { kind: 'reply', accepted: jobKind !== 'ghost' && jobKind !== 'sentinel' && jobKind !== 'done', codes: [...found, ...(jobKind === 'done' ? ['TerminalStateReached'] : [])], token };
    return { kind: 'reply', accepted: false, codes: ['VersionMismatch', 'ResourceNotFound', 'InvalidStateTransition'], token };
  };
  switch (c.mode % 10) {
    case 0: {
      // Not UTF-8 JSON.
      const s = Buffer.from(`{"clientToken":${tok},"status":"IN_PROGRESS"}`);
      const at = c.n % s.length;
      return { body: Buffer.concat([s.subarray(0, at), Buffer.from(pick(NON_UTF8_BYTES, c.n)), s.subarray(at)]), expect: { kind: 'reply', accepted: false, codes: ['InvalidJson'] } };
    }
    case 1: {
      const bad = pick(['{', '{"a":1,}', "{'a':1}", '{"a":1}{"b":2}', 'nul', '{"a":NaN}', '[1,', '"unterminated', '{"clientToken":"x"', nestedJson(20_000, true).slice(0, -1)], c.n);
      return { body: Buffer.from(bad), expect: { kind: 'reply', accepted: false, codes: ['InvalidJson'] } };
    }
    case 2: {
      const bad = pick(['[]', '[{}]', '"x"', '1', 'true', '-0', '[null]', nestedJson(c.n % 3000 + 10, false)], c.n);
      return { body: Buffer.from(bad), expect: { kind: 'reply', accepted: false, codes: [...PARSE] } };
    }
    case 3: {
      // An unknown field (thingName and jobId are tolerated, as AWS SDKs send them).
      const key = c.key === 'thingName' || c.key === 'jobId' ? '__proto__' : c.key;
      return { body: Buffer.from(`{"clientToken":${tok},${JSON.stringify(key)}:{"polluted":true}${op === 'job-update' ? ',"status":"IN_PROGRESS","expectedVersion":999' : ''}}`), expect: { kind: 'reply', accepted: false, codes: [...PARSE], token } };
    }
    case 4:
    case 5: {
      // One field of the wrong type (or an invalid statusDetails).
      const name = pick(names, c.n);
      const wrong = pick(WRONG[fields[name]!]!, c.n >> 3);
      const rest: Record<string, string> = { clientToken: tok, ...(op === 'job-update' && name !== 'status' ? { status: '"IN_PROGRESS"', expectedVersion: '999' } : {}) };
      const expect: Expect = name === 'clientToken' ? { kind: 'reply', accepted: false, codes: [...PARSE] } : { kind: 'reply', accepted: false, codes: [...PARSE], token };
      return { body: Buffer.from(jsonWith({ ...rest, [name]: wrong })), expect };
    }
    case 6: {
      const tooLong = pick([JSON.stringify('t'.repeat(65)), JSON.stringify('é'.repeat(33)), JSON.stringify('🙂'.repeat(17))], c.n);
      return { body: Buffer.from(`{"clientToken":${tooLong}}`), expect: { kind: 'reply', accepted: false, codes: [...PARSE] } };
    }
    case 7: {
      if (op === 'job-update') {
        const status = pick(['"QUEUED"', '"CANCELED"', '"TIMED_OUT"', '"REMOVED"', '"in_progress"', '""', '"SUCCEEDED "'], c.n);
        const parseFail = !['"QUEUED"', '"CANCELED"', '"TIMED_OUT"', '"REMOVED"'].includes(status);
        return { body: Buffer.from(`{"clientToken":${tok},"status":${status},"expectedVersion":999}`), expect: { kind: 'reply', accepted: false, codes: parseFail ? [...PARSE] : wellFormedCodes(found), token } };
      }
      if (op === 'start-next') {
        const m = pick(['0', '-1', '-2', '10081', '1.5'], c.n);
        return { body: Buffer.from(`{"clientToken":${tok},"stepTimeoutInMinutes":${m}}`), expect: { kind: 'reply', accepted: false, codes: [...PARSE], token } };
      }
      return { body: Buffer.from(`{"clientToken":${tok}}`), expect: wellFormed() };
    }
    case 8: {
      // Well-formed: read-only ops are answered; an update cannot apply (wrong expectedVersion or executionNumber).
      if (op === 'job-update') {
        const status = pick(['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED'], c.n);
        const extra = c.n % 2 === 0 ? '"expectedVersion":999' : '"executionNumber":999,"expectedVersion":999';
        return { body: Buffer.from(`{"clientToken":${tok},"status":"${status}",${extra},"statusDetails":{"k":"v"}}`), expect: wellFormed() };
      }
      if (op === 'start-next') return { body: Buffer.from(`{"clientToken":${tok},"statusDetails":{"step":"x"},"stepTimeoutInMinutes":5}`), expect: wellFormed() };
      if (op === 'job-get') return { body: Buffer.from(`{"clientToken":${tok},"includeJobDocument":${c.n % 2 === 0},"thingName":"ignored","jobId":"ignored"}`), expect: wellFormed() };
      return { body: Buffer.from(pick(['', ' ', 'null', '{}', `{"clientToken":${tok}}`], c.n)), expect: c.n % 5 === 4 ? wellFormed() : { kind: 'reply', accepted: true, codes: [] } };
    }
    default: {
      // Values PostgreSQL cannot store or JSON cannot carry, in any field.
      const name = pick(names, c.n);
      const bad = pick(['"a\\u0000b"', '"\\ud800"', '"x\\udfff"', '1e400', '-0', JSON.stringify(c.text)], c.n >> 2);
      const rest: Record<string, string> = { clientToken: tok, ...(op === 'job-update' && name !== 'status' ? { status: '"IN_PROGRESS"', expectedVersion: '999' } : {}) };
      const body = name === 'statusDetails' ? jsonWith({ ...rest, statusDetails: `{"k":${bad}}` }) : jsonWith({ ...rest, [name]: bad });
      // Nothing here may be accepted for an update; reads may be answered (`-0` is the execution number 0: none).
      const codes = op === 'job-update' ? [...PARSE, ...wellFormedCodes(found)] : [...PARSE, 'ResourceNotFound', 'TerminalStateReached'];
      const expect: Expect = { kind: 'reply', accepted: op !== 'job-update', codes, ...(name === 'clientToken' ? {} : { token }) };
      return { body: Buffer.from(body), expect };
    }
  }
}

function wellFormedCodes(found: string[]): string[] {
  return ['VersionMismatch', 'InvalidStateTransition', ...found, 'ResourceNotFound'];
}

const jobsChoice = fc.record({ dev: fc.nat(), ns: fc.constantFrom('iot', 'iot', 'aws'), op: fc.constantFrom('get', 'start-next', 'job-get', 'job-get', 'job-update', 'job-update', 'job-update'), job: fc.constantFrom('inProgress', 'queued', 'done', 'ghost', 'ghost', 'sentinel', 'next'), n: fc.nat(), mode: fc.nat(), key: fc.constantFrom(...HOSTILE_KEYS), text: fc.string({ unit: 'binary', maxLength: 12 }), bytes: fc.constant([]) });

export function jobsCases(ctx: MqttFuzzContext, count: number, seed: number): MqttCase[] {
  return fc.sample(jobsChoice, { numRuns: count, seed }).map((c, i) => {
    const d = pick(ctx.devices, c.dev);
    const base = c.ns === 'aws' ? `$aws/things/${d.uuid}/jobs` : `iot/device/${d.uuid}/jobs`;
    let job = c.job;
    if (c.op === 'job-update' && job === 'next') job = 'ghost';
    const jobId = job === 'ghost' ? `ghost-${i}` : job === 'sentinel' ? ctx.sentinel.jobId : job === 'next' ? '$next' : d[job as 'inProgress' | 'queued' | 'done'];
    const topic = c.op === 'get' || c.op === 'start-next' ? `${base}/${c.op}` : `${base}/${jobId}/${c.op === 'job-get' ? 'get' : 'update'}`;
    // `$next/get` describes the head of the queue: the IN_PROGRESS execution.
    const kind = job === 'next' ? 'inProgress' : job;
    const { body, expect } = jobsPayload(c.op, kind, { ...c, bytes: [] }, `c${i}`);
    return { family: `jobs ${c.op} ${c.ns} ${kind} mode${c.mode % 10}`, topic, body, device: d.uuid, expect };
  });
}

const statusChoice = fc.record({ dev: fc.nat(), n: fc.nat(), mode: fc.nat(11), hostile: hostileId, key: fc.constantFrom(...HOSTILE_KEYS) });

/** Status messages that must change no presence: malformed, or naming a broker they did not arrive on. */
export function statusCases(ctx: MqttFuzzContext, count: number, seed: number): MqttCase[] {
  const targets = [...ctx.devices.map((d) => d.uuid), ctx.sentinel.uuid];
  return fc.sample(statusChoice, { numRuns: count, seed }).map((c) => {
    const uuid = pick(targets, c.dev);
    const topic = `iot/device/${uuid}/status`;
    const state = pick(['"online"', '"offline"'], c.n);
    const other = ctx.otherBrokerId;
    const bodies = [
      `{"state":${state},"brokerId":${other}}`,
      `{"state":${state},"brokerId":${other},"at":"${new Date(0).toISOString()}",${JSON.stringify(c.key)}:{"isAdmin":true}}`,
      `{"state":${pick(['"ONLINE"', '"on"', '""', 'null', '1', 'true', '["online"]', '"online\\u0000"'], c.n)},"brokerId":${ctx.brokerId}}`,
      `{"state":${state},"brokerId":${pick(['0', '-1', '1.5', `"${ctx.brokerId}"`, 'null', '9007199254740993', '1e400', `[${ctx.brokerId}]`, `${ctx.brokerId}.5`], c.n)}}`,
      `{"state":${state}}`,
      `{"brokerId":${ctx.brokerId}}`,
      pick(['', ' ', 'null', '[]', '"online"', '1', '{', 'online', '{"state":"online","brokerId":' + ctx.brokerId], c.n),
      `{"state":${state},"brokerId":${other},"pad":"${'p'.repeat(c.n % 100_000)}"}`,
      `{"state":${state},"brokerId":${other},"deep":${nestedJson(c.n % 5000 + 1, c.n % 2 === 0)}}`,
      `{"__proto__":{"state":"online","brokerId":${ctx.brokerId}}}`,
    ];
    const idx = c.mode % (bodies.length + 1);
    let body: Buffer;
    if (idx === bodies.length) {
      const s = Buffer.from(`{"state":"online","brokerId":${ctx.brokerId}}`);
      body = Buffer.concat([s.subarray(0, 10), Buffer.from(pick(NON_UTF8_BYTES, c.n)), s.subarray(10)]);
    } else body = Buffer.from(bodies[idx]!);
    return { family: `status mode${idx}`, topic, body, expect: { kind: 'silence' } };
  });
}

/** Command acks that must change no migration: malformed, for no command of the device, or with invalid fields. */
export function ackCases(ctx: MqttFuzzContext, count: number, seed: number): MqttCase[] {
  const targets = [...ctx.devices.map((d) => d.uuid), ctx.sentinel.uuid];
  return fc.sample(statusChoice, { numRuns: count, seed }).map((c, i) => {
    const uuid = pick(targets, c.dev);
    const topic = `iot/device/${uuid}/command/broker-change/ack`;
    // The real command id only with a status that is not one, or under another device's uuid.
    const real = JSON.stringify(ctx.commandId);
    const bodies = [
      `{"commandId":"unknown-${i}","status":"${pick(['received', 'completed', 'failed'], c.n)}"}`,
      `{"commandId":${real},"status":${pick(['"done"', '"RECEIVED"', '""', 'null', '1', '["received"]', '"received\\u0000"'], c.n)}}`,
      `{"commandId":${pick(['""', 'null', '1', '[]', '{}', `"${'c'.repeat(129)}"`, '"\\u0000"', '"\\ud800"'], c.n)},"status":"received"}`,
      `{"commandId":"unknown-${i}","status":"failed","error":${pick(['1', '{}', '[]', 'true', '"x\\u0000"', '"\\ud800"', `"${'e'.repeat(5000)}"`], c.n)}}`,
      `{"commandId":${real},"status":"failed","error":${pick(['1', '{}', '[]', 'true'], c.n)}}`,
      pick(['', ' ', 'null', '[]', '"ack"', '1', '{', `{"commandId":${real}}`, `{"status":"received"}`], c.n),
      `{"commandId":${JSON.stringify(c.hostile.replace(/[\ud800-\udfff]/g, ''))},"status":"received",${JSON.stringify(c.key)}:1}`,
      `{"__proto__":{"commandId":${real},"status":"completed"}}`,
    ];
    const idx = c.mode % (bodies.length + 1);
    let body: Buffer;
    if (idx === bodies.length) body = Buffer.concat([Buffer.from(`{"commandId":${real},"status":"rec`), Buffer.from(pick(NON_UTF8_BYTES, c.n)), Buffer.from('eived"}')]);
    else body = Buffer.from(bodies[idx]!);
    // The real command's own device gets only invalid acks; under another uuid even a valid one names no command of it.
    if (uuid !== ctx.devices[0]!.uuid && idx === 4) body = Buffer.from(`{"commandId":${real},"status":"completed"}`);
    return { family: `ack mode${idx}`, topic, body, expect: { kind: 'silence' } };
  });
}

/** Topics next to the device → server ones: ignored, or (a jobs topic of a valid device) answered InvalidTopic. */
export function oddTopicCases(ctx: MqttFuzzContext, count: number, seed: number): MqttCase[] {
  const d = ctx.devices[0]!;
  return fc.sample(fc.record({ n: fc.nat(), hostile: hostileId }), { numRuns: count, seed }).map(({ n, hostile }, i) => {
    // Only what Mosquitto accepts in a topic (it disconnects a client for wildcards, NUL or control characters).
    const clean = hostile.replace(/[^\u0020-\u007e\u00a0-\ud7ff\ue000-\ufffd]|[+#/]/g, '') || 'x y';
    const jobsBase = pick([`iot/device/${d.uuid}/jobs`, `$aws/things/${d.uuid}/jobs`], n);
    const invalidTopic: Array<() => string> = [
      () => `${jobsBase}/a.${i}/update`,
      () => `${jobsBase}/${'x'.repeat(65)}${i}/get`,
      () => `${jobsBase}/é${i}/update`,
      () => `${jobsBase}/$next/update`,
      () => `${jobsBase}/a b${i}/get`,
      () => `${jobsBase}/${clean}${i}.x/update`,
    ];
    const ignored: Array<() => string> = [
      () => `${jobsBase}/notify`,
      () => `${jobsBase}/notify-next`,
      // A reply only the server may publish, on another device's topic (not one the run expects replies on).
      () => `${n % 2 === 0 ? 'iot/device' : '$aws/things'}/${ctx.sentinel.uuid}/jobs/get/accepted`,
      () => `${jobsBase}/j${i}/update/accepted`,
      () => `iot/device/${d.uuid}/status/extra`,
      () => `iot/device/${clean}${i}./status`,
      () => `iot/device/${d.uuid}/command/broker-change/ack/x`,
      () => `iot/device/${d.uuid}/command/other/ack`,
      () => `iot/device/${d.uuid}/command/broker-change`,
      () => `$aws/things/${d.uuid}/status`,
      () => `iot/device/${clean}${i}./jobs/get`,
      () => `iot/device//jobs/get`,
      () => `iot/device/${d.uuid}/jobs`,
      () => `iot/device/${d.uuid}/jobs/`,
      () => `iot/device/${d.uuid}/jobs/get/`,
      () => `iot/device/${d.uuid}/${'z'.repeat(200 + (n % 20_000))}/jobs/get`,
    ];
    const invalid = n % 3 === 0;
    const topic = invalid ? pick(invalidTopic, n >> 2)() : pick(ignored, n >> 2)();
    return { family: invalid ? 'odd jobs topic' : 'odd topic', topic, body: Buffer.from(`{"clientToken":"o${i}","status":"SUCCEEDED"}`), expect: invalid ? { kind: 'invalid-topic' } : { kind: 'silence' } };
  });
}
