import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { nextDelay, type BackoffPolicy } from './backoff.ts';

const policy: BackoffPolicy = { baseMs: 100, maxMs: 10_000 };

describe('nextDelay', () => {
  const table: Array<[attempt: number, random: number, p: BackoffPolicy, expected: number]> = [
    [0, 0.5, policy, 50],
    [1, 0.5, policy, 100],
    [2, 0.5, policy, 200],
    [3, 0.25, policy, 200],
    [10, 0.5, policy, 5_000], // 100 × 1024 capped at 10 000
    [1000, 0.5, policy, 5_000], // factor^attempt overflows to Infinity, still capped
    [0, 0, policy, 0],
    [2, 0.5, { baseMs: 100, maxMs: 10_000, factor: 3 }, 450],
    [5, 0.5, { baseMs: 100, maxMs: 10_000, factor: 1 }, 50],
    [3, 0.5, { baseMs: 0, maxMs: 10_000 }, 0],
    [0, 0.3333, { baseMs: 10, maxMs: 100 }, 3], // integer ms
  ];
  for (const [attempt, r, p, expected] of table) {
    it(`returns ${expected} ms for attempt ${attempt}, random ${r}, ${JSON.stringify(p)}`, () => {
      assert.equal(nextDelay(attempt, p, () => r), expected);
    });
  }

  it('stays below the cap even when random returns 1 or more', () => {
    assert.equal(nextDelay(0, policy, () => 1), 99);
    assert.equal(nextDelay(0, policy, () => 7), 99);
    assert.equal(nextDelay(0, policy, () => -1), 0);
    assert.equal(nextDelay(0, policy, () => Number.NaN), 0);
  });

  it('throws RangeError on invalid attempts and policies', () => {
    assert.throws(() => nextDelay(-1, policy), RangeError);
    assert.throws(() => nextDelay(1.5, policy), RangeError);
    assert.throws(() => nextDelay(0, { baseMs: -1, maxMs: 1 }), RangeError);
    assert.throws(() => nextDelay(0, { baseMs: 1, maxMs: Number.NaN }), RangeError);
    assert.throws(() => nextDelay(0, { baseMs: 1, maxMs: 1, factor: 0.5 }), RangeError);
  });

  it('always returns an integer in [0, min(maxMs, base × factor^attempt)]', () => {
    fc.assert(
      fc.property(fc.nat(200), fc.nat(10_000), fc.nat(100_000), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (a, base, max, r) => {
        const d = nextDelay(a, { baseMs: base, maxMs: max }, () => r);
        assert.ok(Number.isInteger(d) && d >= 0 && d <= Math.min(max, base * 2 ** a));
      }),
    );
  });
});
