import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Clock } from '../clock.ts';
import type { LockSession } from '../db/db.ts';
import { createMemoryLockTable } from '../db/memory-lock-session.ts';
import { silentLogger } from '../log.ts';
import { createBrokerOwnership, type BrokerOwnership } from './broker-ownership.ts';

const T0 = Date.UTC(2025, 0, 1);

/** A fake clock starting at T0; `advance(ms)` fires due timers in time order and lets their promises settle. */
function fakeClock() {
  let now = T0;
  let nextId = 1;
  const timers = new Map<number, { at: number; fn: () => void }>();
  const flush = () => new Promise<void>((resolve) => setImmediate(resolve));
  const clock: Clock & { advance(ms: number): Promise<void> } = {
    now: () => now,
    setTimeout(fn, ms) {
      const id = nextId++;
      timers.set(id, { at: now + ms, fn });
      return id as unknown as NodeJS.Timeout;
    },
    clearTimeout: (handle) => void timers.delete(handle as unknown as number),
    async advance(ms) {
      const end = now + ms;
      for (;;) {
        await flush();
        const due = [...timers].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
        if (!due) break;
        timers.delete(due[0]);
        now = due[1].at;
        due[1].fn();
      }
      now = end;
      await flush();
    },
  };
  return clock;
}

/** One instance's ownership over a shared lock table, with a handle to lose its current session. */
function instance(table: ReturnType<typeof createMemoryLockTable>, clock: Clock) {
  const acquired: number[] = [];
  const lost: number[][] = [];
  let current: { session: LockSession; lose(): Promise<void> } | undefined;
  const ownership: BrokerOwnership = createBrokerOwnership({
    async openSession() {
      const inner = table.open();
      const callbacks: Array<(err: Error) => void> = [];
      const session: LockSession = { ...inner, onLost: (cb) => (callbacks.push(cb), () => undefined) };
      current = {
        session,
        async lose() {
          await inner.close(); // the database frees its locks
          for (const cb of callbacks) cb(new Error('connection terminated'));
        },
      };
      return session;
    },
    onAcquired: (id) => acquired.push(id),
    onLost: (ids) => lost.push(ids),
    log: silentLogger(),
    clock,
  });
  return { ownership, acquired, lost, lose: () => current!.lose() };
}

describe('broker ownership', () => {
  it('gives a broker to the first instance that asks; the other waits and takes it within one retry once released', async () => {
    const clock = fakeClock();
    const table = createMemoryLockTable();
    const a = instance(table, clock);
    const b = instance(table, clock);
    assert.equal(await a.ownership.acquire(1), true);
    assert.equal(await b.ownership.acquire(1), false);
    assert.deepEqual([a.acquired, b.acquired], [[1], []]);
    await clock.advance(10_000);
    assert.deepEqual([a.ownership.owns(1), b.ownership.owns(1)], [true, false], 'held: the standby keeps waiting');

    await a.ownership.release(1);
    assert.equal(a.ownership.owns(1), false);
    await clock.advance(1999);
    assert.equal(b.ownership.owns(1), false);
    await clock.advance(1);
    assert.equal(b.ownership.owns(1), true, 'taken at the next try, 2000 ms');
    assert.deepEqual(b.acquired, [1]);
    await a.ownership.close();
    await b.ownership.close();
  });

  it('drops every owned broker at once when the session is lost, and lets a standby take them first', async () => {
    const clock = fakeClock();
    const table = createMemoryLockTable();
    const a = instance(table, clock);
    const b = instance(table, clock);
    await a.ownership.acquire(1);
    await a.ownership.acquire(2);
    await clock.advance(1000); // b's tries land 1000 ms after a's
    await b.ownership.acquire(1);
    await b.ownership.acquire(2);

    await a.lose();
    assert.deepEqual(a.lost, [[1, 2]]);
    assert.deepEqual([a.ownership.owns(1), a.ownership.owns(2)], [false, false], 'at once');
    await clock.advance(1000); // a's next tick comes first, but a holds off for one retry period
    assert.deepEqual([a.ownership.owns(1), b.ownership.owns(1)], [false, false]);
    await clock.advance(1000);
    assert.deepEqual([b.ownership.owns(1), b.ownership.owns(2)], [true, true], 'the standby took both');
    await clock.advance(10_000);
    assert.deepEqual([a.ownership.owns(1), a.ownership.owns(2)], [false, false], 'a, with a new session, waits');

    await b.ownership.close(); // closing releases every lock
    await clock.advance(2000);
    assert.deepEqual([a.ownership.owns(1), a.ownership.owns(2)], [true, true]);
    assert.deepEqual(a.acquired, [1, 2, 1, 2]);
    await a.ownership.close();
  });

  it('re-acquires after its own loss when nobody else wants the broker', async () => {
    const clock = fakeClock();
    const a = instance(createMemoryLockTable(), clock);
    await a.ownership.acquire(5);
    await a.lose();
    assert.equal(await a.ownership.acquire(6), false, 'holding off: no tries right after the loss');
    await clock.advance(4000);
    assert.deepEqual([a.ownership.owns(5), a.ownership.owns(6)], [true, true]);
    await a.ownership.close();
  });
});
