/**
 * The one retry delay used for MQTT reconnects, the config poller and retries alike:
 * exponential, capped, full jitter (delay = random() × min(maxMs, baseMs × factor^attempt)).
 */

/** Backoff policy. */
export interface BackoffPolicy {
  /** Cap of the first attempt's delay, in milliseconds (≥ 0). */
  baseMs: number;
  /** Upper bound of every delay, in milliseconds (≥ 0). */
  maxMs: number;
  /** Growth per attempt (≥ 1). Default 2. */
  factor?: number;
}

/**
 * Delay before retry number `attempt`, in whole milliseconds, in `[0, min(maxMs, baseMs × factor^attempt))`
 * (0 when that cap is 0).
 * @param attempt 0-based attempt number (a non-negative integer)
 * @param random source of uniform numbers in [0, 1); default `Math.random`; inject one in tests
 * @throws RangeError on a negative or non-integer attempt, or a negative / non-finite policy field
 */
export function nextDelay(attempt: number, policy: BackoffPolicy, random: () => number = Math.random): number {
  const factor = policy.factor ?? 2;
  if (!Number.isInteger(attempt) || attempt < 0) throw new RangeError(`invalid attempt: ${attempt}`);
  if (!Number.isFinite(policy.baseMs) || policy.baseMs < 0) throw new RangeError(`invalid baseMs: ${policy.baseMs}`);
  if (!Number.isFinite(policy.maxMs) || policy.maxMs < 0) throw new RangeError(`invalid maxMs: ${policy.maxMs}`);
  if (!Number.isFinite(factor) || factor < 1) throw new RangeError(`invalid factor: ${factor}`);
  // factor ** attempt overflows to Infinity for large attempts; Math.min then yields maxMs, as wanted.
  const cap = Math.min(policy.maxMs, policy.baseMs * factor ** attempt);
  const r = random();
  // Clamp a misbehaving random source into [0, 1) so the delay never reaches the cap or goes negative.
  const u = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1 - Number.EPSILON) : 0;
  return Math.floor(u * cap);
}
