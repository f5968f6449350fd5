import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  commandTopic,
  isDeviceToServer,
  jobsTopic,
  parseTopic,
  shadowTopic,
  statusTopic,
  telemetryTopic,
  type JobsOp,
  type Namespace,
  type ShadowOp,
  type ShadowReply,
} from '@switchyard/protocol';
import { deviceNamespaceFilters, devicePublishFilters, deviceRoleAcls, deviceRoleName, serverRoleAcls } from './dynsec-acl.ts';

/** MQTT matching as Mosquitto does it: `+` one level, `#` the rest, wildcards at the root never match `$` topics. */
function filterMatches(filter: string, topic: string): boolean {
  if (topic.startsWith('$') && (filter.startsWith('+') || filter.startsWith('#'))) return false;
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return i === f.length - 1;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

const idChar = fc.constantFrom(...'abcXYZ019:_-'.split(''));
const uuidArb = fc.string({ unit: idChar, minLength: 1, maxLength: 40 });
const nameArb = fc.string({ unit: idChar, minLength: 1, maxLength: 20 });
const jobIdArb = fc.string({ unit: fc.constantFrom(...'abZ09_-'.split('')), minLength: 1, maxLength: 20 });

/** Every topic of the protocol for device `uuid`, whichever direction. */
function topicsOf(uuid: string, shadowName: string, jobId: string, stream: string): string[] {
  const out = [statusTopic(uuid), commandTopic(uuid, 'broker-change'), commandTopic(uuid, 'broker-change', true), telemetryTopic(uuid, stream)];
  for (const ns of ['iot', 'aws'] as Namespace[]) {
    for (const name of ['', shadowName]) {
      for (const op of ['update', 'get', 'delete'] as ShadowOp[]) {
        out.push(shadowTopic(uuid, name, op, undefined, ns));
        const replies: ShadowReply[] = op === 'update' ? ['accepted', 'rejected', 'delta', 'documents'] : ['accepted', 'rejected'];
        for (const r of replies) out.push(shadowTopic(uuid, name, op, r, ns));
      }
    }
    for (const op of ['notify', 'notify-next'] as JobsOp[]) out.push(jobsTopic(uuid, op, { ns }));
    for (const op of ['get', 'start-next', 'job-get', 'job-update'] as JobsOp[]) {
      const withId = op === 'job-get' || op === 'job-update' ? { jobId } : {};
      out.push(jobsTopic(uuid, op, { ns, ...withId }));
      for (const reply of ['accepted', 'rejected'] as const) out.push(jobsTopic(uuid, op, { ns, reply, ...withId }));
    }
  }
  return out;
}

describe('dynsec ACLs of a device', () => {
  it('let a device publish exactly its own device→server topics, in both namespaces', () => {
    fc.assert(
      fc.property(uuidArb, uuidArb, nameArb, jobIdArb, nameArb, (a, b, name, jobId, stream) => {
        fc.pre(a !== b);
        const allowed = devicePublishFilters(a);
        for (const topic of topicsOf(a, name, jobId, stream)) {
          const parsed = parseTopic(topic);
          assert.ok(parsed, topic);
          const may = allowed.some((f) => filterMatches(f, topic));
          assert.equal(may, isDeviceToServer(parsed), `${a} publishing ${topic}`);
        }
        for (const topic of topicsOf(b, name, jobId, stream)) {
          assert.equal(allowed.some((f) => filterMatches(f, topic)), false, `${a} publishing ${b}'s ${topic}`);
        }
      }),
      { numRuns: 300 },
    );
  });

  it("confine subscriptions and deliveries to the device's own namespaces", () => {
    fc.assert(
      fc.property(uuidArb, uuidArb, nameArb, jobIdArb, nameArb, (a, b, name, jobId, stream) => {
        fc.pre(a !== b);
        const own = deviceNamespaceFilters(a);
        for (const topic of topicsOf(a, name, jobId, stream)) assert.ok(own.some((f) => filterMatches(f, topic)), topic);
        for (const topic of topicsOf(b, name, jobId, stream)) assert.equal(own.some((f) => filterMatches(f, topic)), false, topic);
      }),
      { numRuns: 300 },
    );
  });

  it('names one role per device and holds only allows', () => {
    assert.equal(deviceRoleName('d-1'), 'switchyard-device-d-1');
    const acls = deviceRoleAcls('d-1');
    assert.ok(acls.every((a) => a.allow));
    assert.deepEqual(
      [...new Set(acls.map((a) => a.acltype))].sort(),
      ['publishClientReceive', 'publishClientSend', 'subscribePattern'],
    );
    assert.ok(acls.some((a) => a.acltype === 'subscribePattern' && a.topic === '$aws/things/d-1/#'), '# never matches $ topics: the $aws namespace is listed on its own');
    assert.throws(() => deviceRoleAcls('a/b'), TypeError);
    assert.throws(() => deviceRoleAcls('#'), TypeError);
  });

  it("give the server's role every device topic and the plugin's control topics", () => {
    const acls = serverRoleAcls();
    const has = (acltype: string, topic: string): boolean => acls.some((a) => a.acltype === acltype && a.topic === topic && a.allow);
    for (const topic of ['iot/#', '$aws/#']) {
      assert.ok(has('publishClientSend', topic) && has('subscribePattern', topic) && has('publishClientReceive', topic), topic);
    }
    assert.ok(has('publishClientSend', '$CONTROL/dynamic-security/v1'));
    assert.ok(has('subscribePattern', '$CONTROL/dynamic-security/v1/response'));
    assert.ok(has('publishClientReceive', '$CONTROL/dynamic-security/v1/response'));
  });
});
