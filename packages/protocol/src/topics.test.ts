import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  SHADOW_REQUEST_SUBSCRIPTIONS,
  commandTopic,
  isDeviceToServer,
  jobsTopic,
  parseTopic,
  shadowTopic,
  statusTopic,
  telemetryTopic,
  type JobsOp,
  type Namespace,
  type ParsedTopic,
  type ShadowOp,
  type ShadowReply,
} from './topics.ts';

const idChar = fc.constantFrom(...'abcXYZ019:_-'.split(''));
const uuidArb = fc.string({ unit: idChar, minLength: 1, maxLength: 128 });
const nameArb = fc.string({ unit: idChar, minLength: 1, maxLength: 64 });
const jobIdArb = fc.string({ unit: fc.constantFrom(...'abZ09_-'.split('')), minLength: 1, maxLength: 64 });
const nsArb = fc.constantFrom<Namespace>('iot', 'aws');

const shadowArb: fc.Arbitrary<ParsedTopic> = fc
  .record({
    ns: nsArb,
    deviceUuid: uuidArb,
    shadowName: fc.oneof(fc.constant(''), nameArb),
    op: fc.constantFrom<ShadowOp>('update', 'get', 'delete'),
    reply: fc.option(fc.constantFrom<ShadowReply>('accepted', 'rejected', 'delta', 'documents'), { nil: undefined }),
  })
  .filter((x) => x.reply === undefined || x.op === 'update' || x.reply === 'accepted' || x.reply === 'rejected')
  .map(({ reply, ...rest }) => (reply === undefined ? { kind: 'shadow', ...rest } : { kind: 'shadow', ...rest, reply }));

const jobsArb: fc.Arbitrary<ParsedTopic> = fc
  .record({
    ns: nsArb,
    deviceUuid: uuidArb,
    op: fc.constantFrom<JobsOp>('notify', 'notify-next', 'get', 'start-next', 'job-get', 'job-update'),
    jobId: fc.oneof(jobIdArb, fc.constant('$next'), fc.constantFrom('get', 'update', 'notify', 'start-next')),
    reply: fc.option(fc.constantFrom('accepted' as const, 'rejected' as const), { nil: undefined }),
  })
  .filter((x) => !(x.op === 'job-update' && x.jobId === '$next'))
  .map(({ ns, deviceUuid, op, jobId, reply }): ParsedTopic => {
    const base = { kind: 'jobs' as const, ns, deviceUuid, op };
    const withId = op === 'job-get' || op === 'job-update' ? { ...base, jobId } : base;
    const hasReply = reply !== undefined && op !== 'notify' && op !== 'notify-next';
    return hasReply ? { ...withId, reply } : withId;
  });

const otherArb: fc.Arbitrary<ParsedTopic> = fc.oneof(
  uuidArb.map((deviceUuid): ParsedTopic => ({ kind: 'status', deviceUuid })),
  fc.record({ deviceUuid: uuidArb, ack: fc.boolean() }).map((x): ParsedTopic => ({ kind: 'command', command: 'broker-change', ...x })),
  fc.record({ deviceUuid: uuidArb, stream: nameArb }).map((x): ParsedTopic => ({ kind: 'telemetry', ...x })),
);

function build(p: ParsedTopic): string {
  switch (p.kind) {
    case 'shadow':
      return shadowTopic(p.deviceUuid, p.shadowName, p.op, p.reply, p.ns);
    case 'status':
      return statusTopic(p.deviceUuid);
    case 'command':
      return commandTopic(p.deviceUuid, p.command, p.ack);
    case 'telemetry':
      return telemetryTopic(p.deviceUuid, p.stream);
    case 'jobs': {
      const opts: { jobId?: string; reply?: 'accepted' | 'rejected'; ns: Namespace } = { ns: p.ns };
      if (p.jobId !== undefined) opts.jobId = p.jobId;
      if (p.reply !== undefined) opts.reply = p.reply;
      return jobsTopic(p.deviceUuid, p.op, opts);
    }
  }
}

describe('topics', () => {
  const examples: Array<[string, string]> = [
    [shadowTopic('d1', 'device-state', 'update', 'accepted'), 'iot/device/d1/shadow/name/device-state/update/accepted'],
    [shadowTopic('d1', '', 'get'), 'iot/device/d1/shadow/get'],
    [shadowTopic('d1', '', 'update', 'delta', 'aws'), '$aws/things/d1/shadow/update/delta'],
    [shadowTopic('d1', 'x', 'delete', undefined, 'aws'), '$aws/things/d1/shadow/name/x/delete'],
    [statusTopic('d1'), 'iot/device/d1/status'],
    [commandTopic('d1', 'broker-change'), 'iot/device/d1/command/broker-change'],
    [commandTopic('d1', 'broker-change', true), 'iot/device/d1/command/broker-change/ack'],
    [telemetryTopic('d1', 'heartbeat'), 'iot/device/d1/telemetry/heartbeat'],
    [jobsTopic('d1', 'notify-next'), 'iot/device/d1/jobs/notify-next'],
    [jobsTopic('d1', 'notify'), 'iot/device/d1/jobs/notify'],
    [jobsTopic('d1', 'get', { reply: 'accepted' }), 'iot/device/d1/jobs/get/accepted'],
    [jobsTopic('d1', 'start-next'), 'iot/device/d1/jobs/start-next'],
    [jobsTopic('d1', 'job-get', { jobId: '$next', ns: 'aws' }), '$aws/things/d1/jobs/$next/get'],
    [jobsTopic('d1', 'job-update', { jobId: 'j-1', reply: 'rejected' }), 'iot/device/d1/jobs/j-1/update/rejected'],
  ];
  for (const [actual, expected] of examples) {
    it(`builds ${expected}`, () => assert.equal(actual, expected));
  }

  it('throws TypeError on invalid builder input', () => {
    assert.throws(() => shadowTopic('a/b', '', 'get'), TypeError);
    assert.throws(() => shadowTopic('d1', 'a+b', 'get'), TypeError);
    assert.throws(() => shadowTopic('d1', '$x', 'get'), TypeError);
    assert.throws(() => shadowTopic('d1', '', 'get', 'delta'), TypeError);
    assert.throws(() => shadowTopic('d1', '', 'delete', 'documents'), TypeError);
    assert.throws(() => shadowTopic('d1', '', 'put' as ShadowOp), TypeError);
    assert.throws(() => shadowTopic('d1', '', 'get', undefined, 'x' as Namespace), TypeError);
    assert.throws(() => statusTopic(''), TypeError);
    assert.throws(() => telemetryTopic('d1', 'a/b'), TypeError);
    assert.throws(() => commandTopic('d1', 'reboot' as 'broker-change'), TypeError);
    assert.throws(() => jobsTopic('d1', 'job-get'), TypeError);
    assert.throws(() => jobsTopic('d1', 'job-update', { jobId: '$next' }), TypeError);
    assert.throws(() => jobsTopic('d1', 'job-update', { jobId: 'j'.repeat(65) }), TypeError);
    assert.throws(() => jobsTopic('d1', 'notify', { reply: 'accepted' }), TypeError);
    assert.throws(() => jobsTopic('d1', 'get', { jobId: 'j1' }), TypeError);
  });

  it('parses the named shadow update/accepted topic', () => {
    assert.deepEqual(parseTopic('iot/device/d1/shadow/name/device-state/update/accepted'), {
      kind: 'shadow', ns: 'iot', deviceUuid: 'd1', shadowName: 'device-state', op: 'update', reply: 'accepted',
    });
  });

  it('leaves the reply key absent, not undefined, for requests', () => {
    const p = parseTopic('iot/device/d1/shadow/get');
    assert.ok(p !== null && !('reply' in p));
    const j = parseTopic('iot/device/d1/jobs/j1/update');
    assert.ok(j !== null && !('reply' in j));
  });

  it('round-trips parseTopic(build(x)) for generated valid inputs', () => {
    fc.assert(
      fc.property(fc.oneof(shadowArb, jobsArb, otherArb), (x) => {
        assert.deepStrictEqual(parseTopic(build(x)), x);
      }),
      { numRuns: 2000 },
    );
  });

  const garbage = [
    '', '/', 'iot', 'iot/device', 'iot/device/d1', 'iot/device/d1/', 'iot/device//shadow/get',
    'iot/device/d1/shadow/get/', '/iot/device/d1/shadow/get', 'iot/device/d1//shadow/get',
    'iot/device/+/shadow/get', 'iot/device/d1/shadow/#', 'iot/device/#', 'iot/device/d1/shadow/name/+/get',
    'iot/device/$d1/shadow/get', 'iot/device/d1/shadow/name/$x/get', 'iot/device/d\u00001/shadow/get',
    `iot/device/${'x'.repeat(129)}/shadow/get`, `iot/device/d1/shadow/name/${'n'.repeat(65)}/get`,
    'iot/device/d1/shadow/put', 'iot/device/d1/shadow/get/delta', 'iot/device/d1/shadow/delete/documents',
    'iot/device/d1/shadow/update/accepted/x', 'iot/device/d1/shadow/name/get', 'iot/device/d1/shadow/name//get',
    'iot/device/d1/status/x', 'iot/device/d1/command/reboot', 'iot/device/d1/command/broker-change/nack',
    'iot/device/d1/telemetry', 'iot/device/d1/telemetry/a/b', 'iot/device/d1/jobs', 'iot/device/d1/jobs/notify/accepted',
    'iot/device/d1/jobs/$next/update', 'iot/device/d1/jobs/j1/delete', 'iot/device/d1/jobs/j1/get/ok',
    'iot/device/d1/jobs/j$1/get', '$aws/things/d1/status', '$aws/things/d1/command/broker-change',
    'aws/things/d1/shadow/get', 'IOT/device/d1/shadow/get', 'iot/device/d1/shadow/GET', '$aws/things/d1/shadow/get/',
  ];
  for (const g of garbage) {
    it(`returns null for ${JSON.stringify(g)}`, () => assert.equal(parseTopic(g), null));
  }

  it('returns null for generated garbage: wildcards, empty segments, $, NUL, / inside ids, overlong ids', () => {
    const bad = fc.oneof(
      fc.constantFrom('+', '#', '', '$x', 'a\u0000b', 'x'.repeat(129)),
      fc.string().filter((s) => /[+#$]/.test(s) || s.includes(String.fromCharCode(0)) || s === ""),
    );
    fc.assert(
      fc.property(fc.oneof(shadowArb, jobsArb, otherArb), bad, fc.nat(), (x, junk, pos) => {
        const segs = build(x).split('/');
        const i = pos % segs.length;
        // `$` is legal as the first character of `$aws` and of the `$next` job id; don't corrupt those into themselves.
        if (junk === segs[i]) return;
        segs[i] = junk;
        assert.equal(parseTopic(segs.join('/')), null, segs.join('/'));
      }),
      { numRuns: 2000 },
    );
    fc.assert(
      fc.property(fc.oneof(shadowArb, otherArb), fc.constantFrom('a/b', 'a/', '/a', 'x'.repeat(129)), (x, junkId) => {
        if (x.kind === 'shadow' && x.ns === 'aws') return;
        const t = build(x).replace(/^iot\/device\/[^/]+/, `iot/device/${junkId}`);
        assert.equal(parseTopic(t), null, t);
      }),
    );
  });

  it('returns null for random strings that no builder produces', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 80 }), (s) => {
        const p = parseTopic(s);
        if (p !== null) assert.equal(build(p), s);
      }),
    );
  });

  it('lists exactly the shadow request subscriptions per namespace', () => {
    assert.deepEqual(SHADOW_REQUEST_SUBSCRIPTIONS('iot'), [
      'iot/device/+/shadow/update', 'iot/device/+/shadow/get', 'iot/device/+/shadow/delete',
      'iot/device/+/shadow/name/+/update', 'iot/device/+/shadow/name/+/get', 'iot/device/+/shadow/name/+/delete',
    ]);
    assert.deepEqual(SHADOW_REQUEST_SUBSCRIPTIONS('aws'), [
      '$aws/things/+/shadow/update', '$aws/things/+/shadow/get', '$aws/things/+/shadow/delete',
      '$aws/things/+/shadow/name/+/update', '$aws/things/+/shadow/name/+/get', '$aws/things/+/shadow/name/+/delete',
    ]);
  });

  const directions: Array<[string, boolean]> = [
    ['iot/device/d1/shadow/update', true],
    ['iot/device/d1/shadow/name/n/get', true],
    ['iot/device/d1/shadow/update/accepted', false],
    ['iot/device/d1/shadow/update/delta', false],
    ['iot/device/d1/status', true],
    ['iot/device/d1/command/broker-change', false],
    ['iot/device/d1/command/broker-change/ack', true],
    ['iot/device/d1/telemetry/heartbeat', true],
    ['iot/device/d1/jobs/notify-next', false],
    ['iot/device/d1/jobs/notify', false],
    ['iot/device/d1/jobs/get', true],
    ['iot/device/d1/jobs/start-next', true],
    ['iot/device/d1/jobs/$next/get', true],
    ['iot/device/d1/jobs/j1/update', true],
    ['iot/device/d1/jobs/j1/update/accepted', false],
  ];
  for (const [topic, expected] of directions) {
    it(`classifies ${topic} as ${expected ? 'device → server' : 'server → device'}`, () => {
      const p = parseTopic(topic);
      assert.ok(p);
      assert.equal(isDeviceToServer(p), expected);
    });
  }
});
