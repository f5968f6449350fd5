/**
 * Which brokers' request subscriptions this instance owns. Several instances share one database and each one
 * connects to every broker (to publish), but only the owner of a broker subscribes to its request topics, so
 * every device request is answered once. Ownership is a session-level advisory lock per broker
 * (`pg_try_advisory_lock(LOCK_SESSION_CLASS, brokerId)`) held on this instance's one {@link LockSession}:
 * when the holder dies, PostgreSQL frees its locks as the connection drops and a standby takes over at its
 * next try, within `retryMs`.
 *
 * States of one broker (absent = not asked for: its connection is down, or it is not in the pool):
 * - `standby`: asked for (`acquire`), another session holds the lock (or there is no session right now). Left
 *   for `owner` by a successful try — at once in `acquire`, then one every `retryMs` — or for absent by `release`.
 * - `owner`: this session holds the lock; `onAcquired` ran. Left for absent by `release` (unlock), or for
 *   `standby` when the session is lost: every owned broker at once, reported in one `onLost` call.
 * Timers: one tick every `retryMs` (tries every `standby` broker; opens a new session after a loss). After a loss
 * this instance lets one whole `retryMs` pass before it tries again, so a standby instance (which tries within
 * `retryMs`) takes the brokers: the instance whose session just died is the one with the doubtful connection.
 * Every operation on the session runs through one queue, so a try and a release never interleave.
 */
import type { LockSession } from '../db/db.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';

export interface BrokerOwnershipOptions {
  /** Opens the lock session (`db.createLockSession()`). Called again after the session is lost. */
  openSession(): Promise<LockSession>;
  /** How often a broker owned by another instance is tried again, and a lost session re-opened, ms. Default 2000. */
  retryMs?: number;
  /** This instance now owns `brokerId`: subscribe to its request topics. */
  onAcquired(brokerId: number): void;
  /** The session was lost: these brokers are no longer owned (their locks may already be another's). Drop them now. */
  onLost(brokerIds: number[]): void;
  log: Logger;
  clock: Clock;
}

export interface BrokerOwnership {
  /** Wants `brokerId` (its connection is up): tries at once, then every `retryMs`. Resolves whether it is owned now. */
  acquire(brokerId: number): Promise<boolean>;
  /** No longer wants `brokerId` (its connection closed or was lost): unlocks it if owned. */
  release(brokerId: number): Promise<void>;
  owns(brokerId: number): boolean;
  /** Stops retrying, releases every lock and closes the session. */
  close(): Promise<void>;
}

export function createBrokerOwnership(opts: BrokerOwnershipOptions): BrokerOwnership {
  const log = opts.log.child({ component: 'broker-ownership' });
  const retryMs = opts.retryMs ?? 2000;
  const brokers = new Map<number, 'standby' | 'owner'>();
  let session: LockSession | null = null;
  let tickTimer: NodeJS.Timeout | null = null;
  let closing = false;
  /** No tries before this instant (clock ms): set when the session is lost. */
  let holdOffUntil = 0;
  let queue: Promise<unknown> = Promise.resolve();
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const next = queue.then(op);
    queue = next.catch(() => undefined); // the caller sees the rejection; the queue goes on
    return next;
  };

  function onSessionLost(lost: LockSession, err: Error): void {
    if (session !== lost) return;
    session = null;
    holdOffUntil = opts.clock.now() + retryMs;
    const ids = [...brokers].filter(([, s]) => s === 'owner').map(([id]) => id);
    for (const id of ids) brokers.set(id, 'standby');
    log.error({ err: err.message, brokerIds: ids, retryMs }, 'lock session lost: dropping ownership of every broker; re-acquiring after reconnecting');
    opts.onLost(ids);
  }

  /** The open session, or null when one cannot be opened now (logged; the next tick tries again). */
  async function ensureSession(): Promise<LockSession | null> {
    if (session) return session;
    try {
      const opened = await opts.openSession();
      opened.onLost((err) => onSessionLost(opened, err));
      session = opened;
      return opened;
    } catch (err) {
      log.warn({ err, retryMs }, 'cannot open the lock session; owning no broker, retrying');
      return null;
    }
  }

  async function tryOne(brokerId: number): Promise<boolean> {
    if (closing || brokers.get(brokerId) !== 'standby') return brokers.get(brokerId) === 'owner';
    if (opts.clock.now() < holdOffUntil) return false; // a reconnect right after the loss waits for the ticks too
    const s = await ensureSession();
    if (!s) return false;
    let ok: boolean;
    try {
      ok = await s.tryLock(brokerId);
    } catch (err) {
      log.warn({ err, brokerId, retryMs }, 'trying the ownership lock failed; retrying');
      return false;
    }
    if (!ok || s !== session || brokers.get(brokerId) !== 'standby') return false; // lost meanwhile
    brokers.set(brokerId, 'owner');
    log.info({ brokerId }, 'took ownership of the broker request subscriptions');
    opts.onAcquired(brokerId);
    return true;
  }

  function tick(): void {
    tickTimer = opts.clock.setTimeout(() => {
      serial(async () => {
        if (opts.clock.now() < holdOffUntil) return;
        for (const [id, s] of [...brokers]) {
          if (s !== 'standby' || closing) continue;
          if (!(await ensureSession())) break; // logged once per tick, not once per broker
          await tryOne(id);
        }
      })
        .catch((err: unknown) => log.error({ err }, 'ownership retry failed; the next tick tries again'))
        .finally(() => {
          if (!closing) tick();
        });
    }, retryMs);
  }

  return {
    acquire(brokerId) {
      if (closing) return Promise.resolve(false);
      if (!tickTimer) tick();
      return serial(() => {
        // In the queue, after any release of an earlier connection's ownership.
        if (!brokers.has(brokerId)) brokers.set(brokerId, 'standby');
        return tryOne(brokerId);
      });
    },
    release(brokerId) {
      return serial(async () => {
        const was = brokers.get(brokerId);
        brokers.delete(brokerId);
        if (was === 'owner' && session) {
          await session.unlock(brokerId);
          log.info({ brokerId }, 'released ownership of the broker request subscriptions');
        }
      });
    },
    owns: (brokerId) => brokers.get(brokerId) === 'owner',
    async close() {
      closing = true;
      if (tickTimer) opts.clock.clearTimeout(tickTimer);
      tickTimer = null;
      await serial(async () => {
        brokers.clear();
        const s = session;
        session = null;
        await s?.close(); // closing the session releases every lock at once
      });
    },
  };
}
