/**
 * Per-device admission for device requests (shadow requests, jobs requests, status and command acks over MQTT):
 * a token bucket per device plus a bound on the device's requests that were admitted and not yet answered.
 *
 * - Rate: each device has a bucket of `burst` tokens (default: one second's worth, `ratePerSecond`) refilled
 *   continuously at `ratePerSecond`. A request takes one token; with none left it is refused (`reason: 'rate'`).
 *   AWS IoT: 20 shadow requests per second per thing, then 429.
 * - In flight: at most `maxInFlight` admitted requests of one device may wait for their answer at once; one more is
 *   refused (`reason: 'in-flight'`) without taking a token. AWS IoT: 10 in-flight requests, then 429. This is what
 *   keeps one noisy device from filling a shared batch lane and delaying every other device behind it.
 *
 * Pure apart from its own state: no timers and no clock of its own (the caller passes `nowMs`), so tests drive time
 * by hand. Memory stays bounded by the devices active in about the last second: an entry whose bucket has refilled
 * and that has nothing in flight is indistinguishable from no entry, and such entries are swept whenever the map
 * has doubled since the last sweep (amortised O(1) per call). Either limit set to 0 turns that limit off; with both
 * off nothing is tracked at all.
 */

export interface DeviceLimiterOptions {
  /** Sustained requests per second per device; 0 turns the rate limit off. */
  ratePerSecond: number;
  /** Requests a quiet device may send at once (the bucket size). Default: `ratePerSecond` (one second's worth), at least 1. */
  burst?: number;
  /** Admitted requests of one device not yet answered; 0 turns the bound off. */
  maxInFlight: number;
}

export type Admission = { ok: true } | { ok: false; reason: 'rate' | 'in-flight' };

/** Counters since the limiter was created (read-only; metrics and tests). */
export interface DeviceLimiterStats {
  admitted: number;
  refusedRate: number;
  refusedInFlight: number;
  /** Devices currently tracked. */
  tracked: number;
}

export interface DeviceLimiter {
  /** True when at least one limit is on. */
  readonly enabled: boolean;
  /**
   * Admits one request of `key` at `nowMs` (milliseconds, any monotonic-enough clock), or says why not.
   * Every admitted request must be {@link release}d exactly once when it has been answered.
   */
  tryAcquire(key: string, nowMs: number): Admission;
  /** The request admitted for `key` has been answered (successfully or not). */
  release(key: string): void;
  stats(): DeviceLimiterStats;
}

interface Entry {
  /** Tokens × 1000 (integer arithmetic for integer rates and millisecond clocks: no drift from 0.1 + 0.2). */
  milli: number;
  /** When `milli` was last brought up to date, ms. */
  at: number;
  inFlight: number;
}

const MIN_SWEEP_SIZE = 1024;

export function createDeviceLimiter(opts: DeviceLimiterOptions): DeviceLimiter {
  const rate = checkLimit('ratePerSecond', opts.ratePerSecond);
  const maxInFlight = checkLimit('maxInFlight', opts.maxInFlight);
  const burst = opts.burst === undefined ? Math.max(1, rate) : checkLimit('burst', opts.burst);
  if (rate > 0 && burst < 1) throw new RangeError('burst must be at least 1 when a rate is set');
  const enabled = rate > 0 || maxInFlight > 0;
  const entries = new Map<string, Entry>();
  let sweepAt = MIN_SWEEP_SIZE;
  let admitted = 0;
  let refusedRate = 0;
  let refusedInFlight = 0;

  const full = burst * 1000;

  /** Brings the tokens of `e` up to `nowMs` (never more than `burst`; a clock that steps back refills nothing). */
  function refill(e: Entry, nowMs: number): void {
    if (rate === 0) return;
    const elapsed = nowMs - e.at;
    if (elapsed > 0) {
      e.milli = Math.min(full, e.milli + elapsed * rate);
      e.at = nowMs;
    }
  }

  function sweep(nowMs: number): void {
    for (const [key, e] of entries) {
      refill(e, nowMs);
      if (e.inFlight === 0 && (rate === 0 || e.milli >= full)) entries.delete(key);
    }
    sweepAt = Math.max(MIN_SWEEP_SIZE, entries.size * 2);
  }

  return {
    enabled,
    tryAcquire(key, nowMs) {
      if (!enabled) {
        admitted += 1;
        return { ok: true };
      }
      let e = entries.get(key);
      if (e === undefined) {
        if (entries.size >= sweepAt) sweep(nowMs);
        e = { milli: full, at: nowMs, inFlight: 0 };
        entries.set(key, e);
      } else {
        refill(e, nowMs);
      }
      if (maxInFlight > 0 && e.inFlight >= maxInFlight) {
        refusedInFlight += 1;
        return { ok: false, reason: 'in-flight' };
      }
      if (rate > 0) {
        if (e.milli < 1000) {
          refusedRate += 1;
          return { ok: false, reason: 'rate' };
        }
        e.milli -= 1000;
      }
      e.inFlight += 1;
      admitted += 1;
      return { ok: true };
    },
    release(key) {
      if (!enabled) return;
      const e = entries.get(key);
      if (e !== undefined && e.inFlight > 0) e.inFlight -= 1;
    },
    stats: () => ({ admitted, refusedRate, refusedInFlight, tracked: entries.size }),
  };
}

function checkLimit(name: string, n: number): number {
  if (!Number.isFinite(n) || n < 0) throw new RangeError(`${name} must be a finite number ≥ 0, got ${n}`);
  return n;
}

/** A human sentence for a refusal, for logs and HTTP messages (never includes a secret). */
export function describeRefusal(reason: 'rate' | 'in-flight', o: { ratePerSecond: number; maxInFlight: number }): string {
  return reason === 'rate'
    ? `more than ${o.ratePerSecond} requests per second from this device`
    : `${o.maxInFlight} requests of this device are already waiting for their answer`;
}
