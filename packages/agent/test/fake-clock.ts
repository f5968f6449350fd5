/** A fake {@link Clock} starting at a fixed instant; `advance(ms)` fires due timers in time order. */
import type { Clock } from '../src/clock.ts';

export const T0 = Date.UTC(2025, 0, 1);

export interface FakeClock extends Clock {
  advance(ms: number): void;
  /** Timers still pending. */
  pending(): number;
}

export function fakeClock(start = T0): FakeClock {
  let now = start;
  let nextId = 1;
  const timers = new Map<number, { at: number; fn: () => void }>();
  return {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + Math.max(0, ms), fn });
      return id;
    },
    clearTimeout(handle) {
      timers.delete(handle as number);
    },
    advance(ms) {
      const end = now + ms;
      for (;;) {
        let due: [number, { at: number; fn: () => void }] | undefined;
        for (const entry of timers) if (entry[1].at <= end && (!due || entry[1].at < due[1].at)) due = entry;
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
    },
    pending: () => timers.size,
  };
}
