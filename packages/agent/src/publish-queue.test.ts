import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import {
  PublishQueue,
  PublishQueueClosedError,
  PublishQueueFullError,
  type PublishConnection,
  type QueuedMessage,
} from './publish-queue.ts';

/** A connection whose sends stay open until the test acks or fails them. */
function makeConnection(id: string) {
  const sent: { message: QueuedMessage; ack: () => void; fail: (err: unknown) => void }[] = [];
  const connection: PublishConnection = {
    id,
    send(message) {
      return new Promise<void>((resolve, reject) => sent.push({ message, ack: resolve, fail: reject }));
    },
  };
  return { connection, sent, seqs: () => sent.map((s) => s.message.seq) };
}

/** Lets promise callbacks run. */
const tick = () => new Promise<void>((r) => setImmediate(r));

function track(p: Promise<void>) {
  const t = { settled: false, error: undefined as unknown };
  p.then(
    () => (t.settled = true),
    (err: unknown) => {
      t.settled = true;
      t.error = err;
    },
  );
  return t;
}

describe('publish-queue', () => {
  it('sends at once on the current connection and resolves on PUBACK', async () => {
    const q = new PublishQueue();
    const a = makeConnection('a');
    q.switchTo(a.connection);
    const p = track(q.publish('iot/device/d1/telemetry/heartbeat', '{"seq":1}', { qos: 1 }));
    assert.deepEqual(a.seqs(), [1]);
    assert.deepEqual(a.sent[0]?.message, { seq: 1, topic: 'iot/device/d1/telemetry/heartbeat', payload: '{"seq":1}', qos: 1, retain: false });
    await tick();
    assert.equal(p.settled, false);
    assert.equal(q.size, 1);
    a.sent[0]?.ack();
    await tick();
    assert.equal(p.settled, true);
    assert.equal(p.error, undefined);
    assert.equal(q.size, 0);
  });

  it('holds messages while no connection is current and sends them in order on the next', async () => {
    const q = new PublishQueue();
    const ps = [1, 2, 3].map((i) => track(q.publish('t/x', String(i), { qos: i === 2 ? 0 : 1 })));
    const a = makeConnection('a');
    q.switchTo(a.connection);
    assert.deepEqual(a.seqs(), [1, 2, 3]);
    for (const s of a.sent) s.ack();
    await tick();
    assert.ok(ps.every((p) => p.settled && p.error === undefined));
  });

  it('re-sends QoS 1 messages not acknowledged on the old connection on the new one, in order', async () => {
    const q = new PublishQueue();
    const a = makeConnection('a');
    const b = makeConnection('b');
    q.switchTo(a.connection);
    const ps = [1, 2, 3, 4].map((i) => track(q.publish('t/x', String(i))));
    a.sent[1]?.ack(); // seq 2 acknowledged on the old connection
    await tick();
    q.switchTo(b.connection);
    assert.deepEqual(b.seqs(), [1, 3, 4]);
    const p5 = track(q.publish('t/x', '5'));
    assert.deepEqual(b.seqs(), [1, 3, 4, 5]);
    assert.deepEqual(a.seqs(), [1, 2, 3, 4], 'nothing new goes to the old connection');
    for (const s of b.sent) s.ack();
    await tick();
    assert.ok([...ps, p5].every((p) => p.settled && p.error === undefined));
    assert.equal(q.size, 0);
  });

  it('does not re-send a QoS 0 message that was already written once', async () => {
    const q = new PublishQueue();
    const a = makeConnection('a');
    const b = makeConnection('b');
    q.switchTo(a.connection);
    void q.publish('t/x', 'fire-and-forget', { qos: 0 });
    q.switchTo(b.connection);
    assert.deepEqual(b.seqs(), []);
  });

  it('completes a message on the first PUBACK, from either connection, and ignores the second', async () => {
    const q = new PublishQueue();
    const a = makeConnection('a');
    const b = makeConnection('b');
    q.switchTo(a.connection);
    const p = track(q.publish('t/x', 'm'));
    q.switchTo(b.connection);
    a.sent[0]?.ack(); // late PUBACK through the old broker
    await tick();
    assert.equal(p.settled, true);
    assert.equal(q.size, 0);
    b.sent[0]?.ack();
    await tick();
    assert.equal(q.size, 0);
  });

  it('keeps a message whose send failed with the connection and sends it on the next connection', async () => {
    const q = new PublishQueue();
    const a = makeConnection('a');
    q.switchTo(a.connection);
    const p = track(q.publish('t/x', 'm'));
    a.sent[0]?.fail(new Error('client disconnecting'));
    await tick();
    assert.equal(p.settled, false);
    q.switchTo(null);
    const a2 = makeConnection('a#2');
    q.switchTo(a2.connection);
    assert.deepEqual(a2.seqs(), [1]);
    a2.sent[0]?.ack();
    await tick();
    assert.equal(p.settled, true);
    assert.equal(p.error, undefined);
  });

  it('ignores a late failure from the old connection once the message moved on', async () => {
    const q = new PublishQueue();
    const a = makeConnection('a');
    const b = makeConnection('b');
    q.switchTo(a.connection);
    const p = track(q.publish('t/x', 'm'));
    q.switchTo(b.connection);
    a.sent[0]?.fail(new Error('closed'));
    await tick();
    assert.equal(p.settled, false);
    assert.equal(q.size, 1);
    b.sent[0]?.ack();
    await tick();
    assert.equal(p.settled, true);
  });

  it('fails a message at once on a permanent refusal, and a QoS 0 message on any failure', async () => {
    const q = new PublishQueue();
    const a = makeConnection('a');
    q.switchTo(a.connection);
    const p1 = track(q.publish('t/x', 'm'));
    const p0 = track(q.publish('t/y', 'n', { qos: 0 }));
    a.sent[0]?.fail(Object.assign(new Error('not authorized (0x87)'), { permanent: true }));
    a.sent[1]?.fail(new Error('socket closed'));
    await tick();
    assert.match(String(p1.error), /not authorized/);
    assert.match(String(p0.error), /socket closed/);
    assert.equal(q.size, 0);
  });

  it('treats a send that throws synchronously like a rejected one', async () => {
    const q = new PublishQueue();
    q.switchTo({
      id: 'x',
      send() {
        throw new Error('boom');
      },
    });
    const p = track(q.publish('t/x', 'm', { qos: 0 }));
    await tick();
    assert.match(String(p.error), /boom/);
  });

  it('rejects beyond maxMessages with a clear error, and accepts again once acknowledged', async () => {
    const q = new PublishQueue({ maxMessages: 2 });
    const a = makeConnection('a');
    q.switchTo(a.connection);
    void q.publish('t/x', '1');
    void q.publish('t/x', '2');
    await assert.rejects(q.publish('t/x', '3'), (err: unknown) => {
      assert.ok(err instanceof PublishQueueFullError);
      assert.equal(err.code, 'PUBLISH_QUEUE_FULL');
      assert.equal(err.message, 'publish queue full (2 messages pending): not accepting a message for t/x');
      return true;
    });
    a.sent[0]?.ack();
    await tick();
    const p4 = track(q.publish('t/x', '4'));
    await tick();
    assert.equal(p4.error, undefined, 'accepted again');
    assert.equal(q.size, 2);
  });

  it('rejects a bad topic or qos without queueing', async () => {
    const q = new PublishQueue();
    await assert.rejects(q.publish('', 'x'), TypeError);
    await assert.rejects(q.publish('a/+/b', 'x'), /without \+ #/);
    await assert.rejects(q.publish('a/#', 'x'), TypeError);
    await assert.rejects(q.publish('a/b', 'x', { qos: 2 as 1 }), /unsupported qos 2/);
    assert.equal(q.size, 0);
  });

  it('refuses a non-positive maxMessages', () => {
    assert.throws(() => new PublishQueue({ maxMessages: 0 }), RangeError);
  });

  it('resolves flushed() when everything pending is acknowledged', async () => {
    const q = new PublishQueue();
    await q.flushed();
    const a = makeConnection('a');
    q.switchTo(a.connection);
    void q.publish('t/x', '1');
    void q.publish('t/x', '2');
    const f = track(q.flushed());
    a.sent[0]?.ack();
    await tick();
    assert.equal(f.settled, false);
    a.sent[1]?.ack();
    await tick();
    assert.equal(f.settled, true);
  });

  it('close() rejects pending messages, flushed() waiters and later publishes', async () => {
    const q = new PublishQueue();
    const p = track(q.publish('t/x', '1'));
    const f = track(q.flushed());
    q.close('shutting down');
    await tick();
    assert.ok(p.error instanceof PublishQueueClosedError);
    assert.ok(f.error instanceof PublishQueueClosedError);
    await assert.rejects(q.publish('t/x', '2'), /publish queue closed: shutting down/);
    assert.equal(q.size, 0);
  });
});
