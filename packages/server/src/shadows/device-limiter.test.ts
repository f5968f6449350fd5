import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { createDeviceLimiter, describeRefusal } from './device-limiter.ts';

const T0 = Date.UTC(2025, 0, 1);

/** Acquires `n` times at `now` for `key`; returns the outcomes' reasons ('ok' when admitted). */
function burst(l: ReturnType<typeof createDeviceLimiter>, key: string, n: number, now: number): string[] {
  return Array.from({ length: n }, () => {
    const a = l.tryAcquire(key, now);
    return a.ok ? 'ok' : a.reason;
  });
}

describe('device limiter', () => {
  it('admits a burst of `ratePerSecond` requests at once, then refuses with reason rate', () => {
    const l = createDeviceLimiter({ ratePerSecond: 20, maxInFlight: 0 });
    const out = burst(l, 'd1', 25, T0);
    assert.deepEqual(out.slice(0, 20), Array(20).fill('ok'));
    assert.deepEqual(out.slice(20), Array(5).fill('rate'));
    assert.deepEqual(l.stats(), { admitted: 20, refusedRate: 5, refusedInFlight: 0, tracked: 1 });
  });

  it('refills continuously at the rate, never above the burst', () => {
    const l = createDeviceLimiter({ ratePerSecond: 20, maxInFlight: 0 });
    burst(l, 'd1', 20, T0);
    assert.equal(l.tryAcquire('d1', T0 + 49).ok, false, '49 ms refill less than one token');
    assert.equal(l.tryAcquire('d1', T0 + 50).ok, true, '50 ms refill exactly one token at 20/s');
    assert.equal(l.tryAcquire('d1', T0 + 50).ok, false);
    // A long quiet spell refills to the burst, not beyond.
    assert.equal(burst(l, 'd1', 30, T0 + 3_600_000).filter((r) => r === 'ok').length, 20);
  });

  it('sustains exactly the rate over time for a device that sends as fast as it can', () => {
    const l = createDeviceLimiter({ ratePerSecond: 20, maxInFlight: 0 });
    let ok = 0;
    for (let t = 0; t <= 10_000; t += 5) ok += burst(l, 'd1', 3, T0 + t).filter((r) => r === 'ok').length;
    // 20 at once + 20/s for 10 s.
    assert.equal(ok, 20 + 200);
  });

  it('honours a burst different from the rate', () => {
    const l = createDeviceLimiter({ ratePerSecond: 2, burst: 5, maxInFlight: 0 });
    assert.equal(burst(l, 'd1', 10, T0).filter((r) => r === 'ok').length, 5);
    assert.equal(burst(l, 'd1', 10, T0 + 1000).filter((r) => r === 'ok').length, 2);
  });

  it('keeps each device in its own bucket', () => {
    const l = createDeviceLimiter({ ratePerSecond: 20, maxInFlight: 0 });
    assert.equal(burst(l, 'noisy', 500, T0).filter((r) => r === 'ok').length, 20);
    assert.deepEqual(burst(l, 'quiet', 5, T0), Array(5).fill('ok'));
  });

  it('bounds the requests in flight per device, refusing without taking a token, until one is released', () => {
    const l = createDeviceLimiter({ ratePerSecond: 20, maxInFlight: 10 });
    const out = burst(l, 'd1', 12, T0);
    assert.deepEqual(out, [...Array(10).fill('ok'), 'in-flight', 'in-flight']);
    assert.equal(l.tryAcquire('other', T0).ok, true, 'another device is not affected');
    l.release('d1');
    assert.equal(l.tryAcquire('d1', T0).ok, true, 'a released slot admits one more');
    assert.equal(l.tryAcquire('d1', T0).ok, false);
    // 11 tokens were taken; 9 are left once the slots are free.
    for (let i = 0; i < 11; i++) l.release('d1');
    assert.equal(burst(l, 'd1', 12, T0).filter((r) => r === 'ok').length, 9);
  });

  it('limits in-flight only when the rate is 0, and nothing when both are 0', () => {
    const inflightOnly = createDeviceLimiter({ ratePerSecond: 0, maxInFlight: 3 });
    assert.deepEqual(burst(inflightOnly, 'd1', 4, T0), ['ok', 'ok', 'ok', 'in-flight']);
    const off = createDeviceLimiter({ ratePerSecond: 0, maxInFlight: 0 });
    assert.equal(off.enabled, false);
    assert.deepEqual(new Set(burst(off, 'd1', 10_000, T0)), new Set(['ok']));
    off.release('d1');
    assert.equal(off.stats().tracked, 0);
  });

  it('refills nothing when the clock steps back, and ignores releases it did not admit', () => {
    const l = createDeviceLimiter({ ratePerSecond: 10, maxInFlight: 0 });
    burst(l, 'd1', 10, T0);
    assert.equal(l.tryAcquire('d1', T0 - 60_000).ok, false);
    assert.equal(l.tryAcquire('d1', T0 + 100).ok, true);
    l.release('never-seen');
    l.release('d1');
    l.release('d1');
    assert.equal(l.stats().tracked, 1);
  });

  it('forgets idle devices so that memory stays bounded under many distinct uuids', () => {
    const l = createDeviceLimiter({ ratePerSecond: 20, maxInFlight: 10 });
    for (let i = 0; i < 50_000; i++) {
      // Each uuid is used once and released; a second later its bucket is full again.
      const key = `dev-${i}`;
      assert.equal(l.tryAcquire(key, T0 + i * 10).ok, true);
      l.release(key);
    }
    assert.ok(l.stats().tracked <= 4096, `tracked ${l.stats().tracked}`);
    // A device with a request in flight is never forgotten, however long it waits.
    const held = createDeviceLimiter({ ratePerSecond: 20, maxInFlight: 1 });
    assert.equal(held.tryAcquire('held', T0).ok, true);
    for (let i = 0; i < 10_000; i++) held.tryAcquire(`x-${i}`, T0 + 10_000 + i);
    assert.equal(held.tryAcquire('held', T0 + 60_000).ok, false, 'still in flight');
  });

  it('refuses bad options', () => {
    assert.throws(() => createDeviceLimiter({ ratePerSecond: -1, maxInFlight: 0 }), /ratePerSecond/);
    assert.throws(() => createDeviceLimiter({ ratePerSecond: Number.NaN, maxInFlight: 0 }), /ratePerSecond/);
    assert.throws(() => createDeviceLimiter({ ratePerSecond: 1, maxInFlight: -3 }), /maxInFlight/);
    assert.throws(() => createDeviceLimiter({ ratePerSecond: 5, burst: 0.5, maxInFlight: 0 }), /burst/);
  });

  it('never admits more than burst + rate × elapsed, whatever the arrival pattern (property)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 50 }),
        fc.array(fc.tuple(fc.integer({ min: 0, max: 400 }), fc.integer({ min: 1, max: 30 })), { minLength: 1, maxLength: 60 }),
        (rate, steps) => {
          const l = createDeviceLimiter({ ratePerSecond: rate, maxInFlight: 0 });
          let t = T0;
          let ok = 0;
          for (const [gap, n] of steps) {
            t += gap;
            ok += burst(l, 'd', n, t).filter((r) => r === 'ok').length;
            assert.ok(ok <= rate + Math.floor(((t - T0) * rate) / 1000) + 1e-9, `${ok} admitted after ${t - T0} ms at ${rate}/s`);
          }
        },
      ),
    );
  });

  it('describes refusals with the configured numbers', () => {
    assert.equal(describeRefusal('rate', { ratePerSecond: 20, maxInFlight: 10 }), 'more than 20 requests per second from this device');
    assert.match(describeRefusal('in-flight', { ratePerSecond: 20, maxInFlight: 10 }), /^10 requests of this device are already waiting/);
  });
});
