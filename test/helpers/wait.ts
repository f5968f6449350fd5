/**
 * Waiting in tests. Prefer events (`onceEvent`) to polling (`waitFor`): polling hides ordering bugs and slows
 * the suite. Both are bounded and fail with a message that says what was awaited.
 */
import { once, type EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

export interface WaitForOptions {
  /** Give up after this many milliseconds. Default 5000. */
  timeoutMs?: number;
  /** Pause between calls, in milliseconds. Default 20. */
  intervalMs?: number;
  /** What was awaited, for the error. Default "condition". */
  message?: string;
}

/**
 * Calls `fn` until it returns (or resolves to) a truthy value and resolves with that value. Rejects with
 * `timed out after <t> ms waiting for <message>` (plus the last error `fn` threw, if any) on timeout.
 */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  { timeoutMs = 5000, intervalMs = 20, message = 'condition' }: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await fn();
      if (value) return value as NonNullable<T>;
      lastError = undefined;
    } catch (err) {
      lastError = err; // retried until the deadline, then reported below
    }
    if (Date.now() >= deadline) {
      const cause = lastError instanceof Error ? `: last error: ${lastError.message}` : '';
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${cause}`, { cause: lastError });
    }
    await sleep(intervalMs);
  }
}

/** Anything with node's `once(event, listener)`: EventEmitter, MqttClient, pg.Client, ChildProcess, … */
export interface EventSource {
  once(event: string, listener: (...args: never[]) => void): unknown;
}

/**
 * Resolves with the arguments of the next `event` on `emitter`; rejects if it emits `error` first (node's
 * `events.once` semantics) or after `timeoutMs` (default 5000).
 */
export async function onceEvent(
  emitter: EventSource,
  event: string,
  { timeoutMs = 5000, message }: { timeoutMs?: number; message?: string } = {},
): Promise<unknown[]> {
  try {
    // Typed emitters (mqtt.js) declare narrower `once` signatures than node's; at runtime they are EventEmitters.
    return await once(emitter as unknown as EventEmitter, event, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    if (err instanceof Error && err.name === 'AbortError') {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${message ?? `event "${event}"`}`, { cause: err });
    }
    throw err;
  }
}

/** Rejects with a clear message if `promise` has not settled within `timeoutMs`. */
export async function withTimeout<T>(promise: Promise<T>, timeoutMs: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${message}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
