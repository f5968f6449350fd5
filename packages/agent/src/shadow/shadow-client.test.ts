import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { reportedAfterAssignment, ShadowClient, ShadowTimeoutError } from './shadow-client.ts';
import type { GetAcceptedMessage, JsonObject } from '@switchyard/protocol';
import { fakeClock } from '../../test/fake-clock.ts';

const UUID = 'dev-1';
const base = `iot/device/${UUID}/shadow/name/device-state`;
const log = pino({ level: 'silent' });
const A = { id: 'b1#1', brokerId: 1 };
const B = { id: 'b2#2', brokerId: 2 };
const desired = { brokerId: 2, broker: 'mqtt://127.0.0.1:1884', protocol: 'mqtt', host: '127.0.0.1', port: 1884 };
const buf = (v: unknown) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v));

function setup() {
  const clock = fakeClock();
  const shadow = new ShadowClient({ deviceUuid: UUID, clock, log, timeoutMs: 1000 });
  const sent: Array<{ topic: string; payload: any }> = [];
  const send = async (topic: string, payload: string) => {
    sent.push({ topic, payload: JSON.parse(payload) });
  };
  const events: Array<[string, any]> = [];
  shadow.on('assignment', (e) => events.push(['assignment', e]));
  shadow.on('noAssignment', (e) => events.push(['noAssignment', e]));
  shadow.on('assignmentChanged', (e) => events.push(['assignmentChanged', e]));
  return { clock, shadow, sent, send, events };
}

describe('shadow-client', () => {
  it('lists the reply topics to subscribe to before any request', () => {
    const { shadow } = setup();
    assert.deepEqual(shadow.replyTopics(), [`${base}/get/accepted`, `${base}/get/rejected`, `${base}/update/delta`, `${base}/update/accepted`, `${base}/update/rejected`]);
  });

  it('matches a get answer by clientToken and turns desired.mqtt into an assignment at the shadow version', async () => {
    const { shadow, sent, send, events } = setup();
    const p = shadow.get(send);
    await Promise.resolve();
    assert.equal(sent[0]?.topic, `${base}/get`);
    const token = sent[0]!.payload.clientToken as string;
    // An answer to somebody else's request is not ours.
    shadow.handleMessage(A, `${base}/get/accepted`, buf({ state: { desired: { mqtt: desired } }, version: 9, clientToken: 'other' }));
    shadow.handleMessage(A, `${base}/get/accepted`, buf({ state: { desired: { mqtt: desired }, reported: { mqtt: { status: 'connected', brokerId: 1 } } }, version: 9, clientToken: token }));
    const answer = await p;
    assert.equal(answer.ok, true);
    assert.deepEqual(answer.via, A);
    const assignments = events.filter(([k]) => k === 'assignment').map(([, e]) => e);
    assert.equal(assignments.length, 2, 'every get/accepted carries the assignment, whoever asked');
    assert.deepEqual(assignments[1].target, { brokerId: 2, protocol: 'mqtt', host: '127.0.0.1', port: 1884, url: 'mqtt://127.0.0.1:1884' });
    assert.equal(assignments[1].version, 9);
    assert.deepEqual(assignments[1].reported, { status: 'connected', brokerId: 1 });
  });

  it('says a document\'s report followed its assignment only when every desired.mqtt leaf is from an earlier second', () => {
    const doc = (desiredAt: number[], statusAt?: number): GetAcceptedMessage => ({
      state: {},
      metadata: {
        desired: { mqtt: Object.fromEntries(desiredAt.map((t, i) => [`k${i}`, { timestamp: t }])) },
        reported: { mqtt: statusAt === undefined ? {} : { status: { timestamp: statusAt } } } as JsonObject,
      },
      version: 3,
      timestamp: 0,
    });
    assert.equal(reportedAfterAssignment(doc([100, 100], 101)), true);
    assert.equal(reportedAfterAssignment(doc([100, 101], 101)), false, 'the same second could be either order');
    assert.equal(reportedAfterAssignment(doc([102], 101)), false, 'assigned after the report');
    assert.equal(reportedAfterAssignment(doc([100])), false, 'no report yet');
    assert.equal(reportedAfterAssignment({ state: {}, metadata: {}, version: 1, timestamp: 0 }), false, 'no metadata');
    // Carried on the assignment event of a get answer.
    const { shadow, events } = setup();
    shadow.handleMessage(A, `${base}/get/accepted`, buf({ ...doc([100], 101), state: { desired: { mqtt: desired } } }));
    assert.equal(events[0]?.[1].reportedAfterAssignment, true);
  });

  it('accepts the answer only through the connection it insists on (the round-trip proof)', async () => {
    const { shadow, sent, send } = setup();
    const p = shadow.get(send, { via: B.id, clientToken: 'mv-1' });
    await Promise.resolve();
    assert.equal(sent[0]?.payload.clientToken, 'mv-1');
    let settled = false;
    void p.then(() => (settled = true));
    shadow.handleMessage(A, `${base}/get/rejected`, buf({ code: 404, message: 'No shadow exists with name: device-state', timestamp: 1, clientToken: 'mv-1' }));
    await Promise.resolve();
    assert.equal(settled, false, 'the same token through another broker proves nothing');
    shadow.handleMessage(B, `${base}/get/rejected`, buf({ code: 404, message: 'No shadow exists with name: device-state', timestamp: 1, clientToken: 'mv-1' }));
    const answer = await p;
    assert.equal(answer.ok, false);
    assert.deepEqual(answer.via, B);
  });

  it('treats a 404 as no assignment, and a shadow without desired.mqtt likewise', () => {
    const { shadow, events } = setup();
    shadow.handleMessage(A, `${base}/get/rejected`, buf({ code: 404, message: 'x', timestamp: 1 }));
    shadow.handleMessage(A, `${base}/get/accepted`, buf({ state: { reported: { other: 1 } }, version: 3 }));
    assert.deepEqual(events.map(([k, e]) => [k, e.version]), [['noAssignment', 0], ['noAssignment', 3]]);
  });

  it('asks for a get on a delta that touches the broker, and not on one that does not', () => {
    const { shadow, events } = setup();
    shadow.handleMessage(A, `${base}/update/delta`, buf({ state: { mqtt: { brokerId: 2, port: 1884 } }, version: 4 }));
    shadow.handleMessage(A, `${base}/update/delta`, buf({ state: { mqtt: { somethingElse: 1 } }, version: 5 }));
    shadow.handleMessage(A, `${base}/update/delta`, buf({ state: { color: 'red' }, version: 6 }));
    assert.deepEqual(events, [['assignmentChanged', { version: 4, via: A }]]);
  });

  it('takes a delta naming a whole, valid broker as the assignment itself (no get), at the delta version', () => {
    const { shadow, events } = setup();
    shadow.handleMessage(A, `${base}/update/delta`, buf({ state: { mqtt: desired }, version: 7 }));
    // Whole but invalid (a URL that disagrees with host/port), or without a usable version: fall back to a get.
    shadow.handleMessage(A, `${base}/update/delta`, buf({ state: { mqtt: { ...desired, broker: 'mqtt://evil:1' } }, version: 8 }));
    shadow.handleMessage(A, `${base}/update/delta`, buf({ state: { mqtt: desired } }));
    assert.deepEqual(events, [
      ['assignment', { target: events[0]![1].target, version: 7, reported: undefined, via: A, fromDelta: true }],
      ['assignmentChanged', { version: 8, via: A }],
      ['assignmentChanged', { version: 0, via: A }],
    ]);
    assert.equal(events[0]![1].target.brokerId, 2);
    assert.equal(events[0]![1].target.url, 'mqtt://127.0.0.1:1884');
  });

  it('ignores malformed payloads, invalid assignments and other devices or shadows', () => {
    const { shadow, events } = setup();
    shadow.handleMessage(A, `${base}/get/accepted`, buf('not json'));
    shadow.handleMessage(A, `${base}/get/accepted`, buf([1, 2]));
    shadow.handleMessage(A, `${base}/get/accepted`, buf({ state: { desired: { mqtt: desired } }, version: -1 }));
    shadow.handleMessage(A, `iot/device/dev-2/shadow/name/device-state/get/accepted`, buf({ state: { desired: { mqtt: desired } }, version: 2 }));
    shadow.handleMessage(A, `iot/device/${UUID}/shadow/name/other/get/accepted`, buf({ state: { desired: { mqtt: desired } }, version: 2 }));
    shadow.handleMessage(A, `${base}/get/accepted`, buf({ state: { desired: { mqtt: { ...desired, broker: 'mqtt://evil:1' } } }, version: 2 }));
    assert.deepEqual(events.map(([k]) => k), ['noAssignment'], 'only the invalid assignment is reported, as no assignment');
  });

  it('times out a request nobody answers', async () => {
    const { shadow, send, clock } = setup();
    const p = shadow.get(send, { timeoutMs: 500 });
    clock.advance(499);
    clock.advance(1);
    await assert.rejects(p, ShadowTimeoutError);
  });

  it('resolves an update on update/accepted and exposes the PUBACK separately', async () => {
    const { shadow, sent, send } = setup();
    const { clientToken, acked, reply } = shadow.update(send, { reported: { mqtt: { status: 'connected' } } });
    await acked;
    assert.deepEqual(sent[0], { topic: `${base}/update`, payload: { state: { reported: { mqtt: { status: 'connected' } } }, clientToken } });
    shadow.handleMessage(B, `${base}/update/accepted`, buf({ state: {}, version: 3, clientToken }));
    // Broadcast answers arrive more than once: the second is ignored.
    shadow.handleMessage(A, `${base}/update/accepted`, buf({ state: {}, version: 3, clientToken }));
    const answer = await reply;
    assert.equal(answer.ok, true);
  });
});
