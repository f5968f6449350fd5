import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { startHeartbeat } from './heartbeat.ts';
import { fakeClock, T0 } from '../../test/fake-clock.ts';

describe('heartbeat', () => {
  it('publishes a rising seq from 1 with the boot id at QoS 1, at a fixed rate, until stopped', () => {
    const clock = fakeClock();
    const sent: Array<{ topic: string; body: any; qos: number }> = [];
    const hb = startHeartbeat({
      deviceUuid: 'd1',
      periodMs: 100,
      clock,
      log: pino({ level: 'silent' }),
      bootId: 'boot-1',
      publish: async (topic, payload, o) => {
        sent.push({ topic, body: JSON.parse(payload), qos: o.qos });
      },
    });
    clock.advance(350);
    assert.deepEqual(sent.map((s) => s.body.seq), [1, 2, 3]);
    assert.equal(sent[0]?.topic, 'iot/device/d1/telemetry/heartbeat');
    assert.equal(sent[0]?.qos, 1);
    assert.deepEqual(sent[0]?.body, { seq: 1, at: new Date(T0 + 100).toISOString(), bootId: 'boot-1' });
    assert.equal(hb.seq, 3);
    hb.stop();
    clock.advance(1000);
    assert.equal(sent.length, 3);
    assert.equal(clock.pending(), 0, 'no timer left');
  });

  it('gives every process its own boot id', () => {
    const clock = fakeClock();
    const opts = { deviceUuid: 'd1', periodMs: 100, clock, log: pino({ level: 'silent' }), publish: async () => undefined };
    const a = startHeartbeat(opts);
    const b = startHeartbeat(opts);
    assert.notEqual(a.bootId, b.bootId);
    a.stop();
    b.stop();
  });
});
