/**
 * Waiters of `GET /devices/:uuid/config?wait=N` (long-poll), woken by the change itself.
 *
 * One LISTEN on {@link CONFIG_CHANNEL} per server instance (PostgreSQL: every instance hears a commit made by any
 * other; PGlite: the same `Db.listen`, in-process). The assignment transaction does `pg_notify(channel, uuid)`, so a
 * notification arrives only once the new config is committed and readable. Each notification resolves the waiters
 * of that device, in memory; nobody re-reads the database in a loop.
 *
 * Bounds: at most `maxPerDevice` waiters per device and `maxTotal` overall; beyond them `wait` throws
 * `TOO_MANY_REQUESTS` (429). A waiter ends when it is woken, when its time is up, when its signal aborts (the client
 * disconnected) or when the watch stops (server shutting down: answered at once, so the HTTP server can close).
 */
import type { Db } from '../db/db.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { AppError } from '../errors.ts';
import { CONFIG_CHANNEL } from './assignments.store.ts';

/** Why a wait ended. */
export type WaitOutcome = 'changed' | 'timeout' | 'aborted' | 'closed';

export interface ConfigWatchOptions {
  db: Db;
  clock: Clock;
  log: Logger;
  /** Most concurrent waiters of one device. Default 4. */
  maxPerDevice?: number;
  /** Most concurrent waiters in this instance. Default 10000. */
  maxTotal?: number;
  /** Called with the device of every notification (before its waiters wake): e.g. to drop a cached config. */
  onChange?: (deviceUuid: string) => void;
}

export interface ConfigWaiter {
  /** Settles when the device's config may have changed, the time is up, the signal aborted or the watch stopped. */
  readonly done: Promise<WaitOutcome>;
  /** Ends the wait now (idempotent); `done` resolves with `aborted`. */
  cancel(): void;
}

export interface ConfigWatch {
  /** LISTENs (idempotent). */
  start(): Promise<void>;
  /**
   * Registers a waiter for `deviceUuid` for `ms`. Register BEFORE reading the config: a change committed between
   * the read and the registration would otherwise be missed.
   * @throws AppError TOO_MANY_REQUESTS beyond the bounds
   */
  wait(deviceUuid: string, ms: number, signal?: AbortSignal): ConfigWaiter;
  /** Waiters now (all devices). */
  size(): number;
  /** UNLISTENs and ends every waiter with `closed`. */
  stop(): Promise<void>;
}

interface Entry {
  settle(outcome: WaitOutcome): void;
}

export function createConfigWatch(opts: ConfigWatchOptions): ConfigWatch {
  const log = opts.log.child({ component: 'config-watch' });
  const maxPerDevice = opts.maxPerDevice ?? 4;
  const maxTotal = opts.maxTotal ?? 10_000;
  const byDevice = new Map<string, Set<Entry>>();
  let total = 0;
  let unlisten: (() => Promise<void>) | null = null;
  let stopped = false;

  const wakeDevice = (uuid: string): void => {
    opts.onChange?.(uuid);
    const set = byDevice.get(uuid);
    if (!set) return;
    for (const e of [...set]) e.settle('changed');
  };

  return {
    async start() {
      if (unlisten || stopped) return;
      unlisten = await opts.db.listen(CONFIG_CHANNEL, wakeDevice);
    },

    wait(deviceUuid, ms, signal) {
      if (stopped) return { done: Promise.resolve('closed'), cancel: () => undefined };
      const set = byDevice.get(deviceUuid) ?? new Set<Entry>();
      if (set.size >= maxPerDevice) {
        throw new AppError('TOO_MANY_REQUESTS', `device ${deviceUuid} already has ${set.size} config long-polls waiting (at most ${maxPerDevice}); finish one first`);
      }
      if (total >= maxTotal) {
        throw new AppError('TOO_MANY_REQUESTS', `this server already holds ${total} config long-polls (at most ${maxTotal}); retry later or poll without wait`);
      }
      byDevice.set(deviceUuid, set);
      total++;
      let settled = false;
      let resolve!: (o: WaitOutcome) => void;
      const done = new Promise<WaitOutcome>((r) => (resolve = r));
      const onAbort = (): void => entry.settle('aborted');
      const timer = opts.clock.setTimeout(() => entry.settle('timeout'), ms);
      const entry: Entry = {
        settle(outcome) {
          if (settled) return;
          settled = true;
          opts.clock.clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          set.delete(entry);
          if (set.size === 0 && byDevice.get(deviceUuid) === set) byDevice.delete(deviceUuid);
          total--;
          resolve(outcome);
        },
      };
      set.add(entry);
      if (signal?.aborted) entry.settle('aborted');
      else signal?.addEventListener('abort', onAbort, { once: true });
      return { done, cancel: () => entry.settle('aborted') };
    },

    size: () => total,

    async stop() {
      stopped = true;
      for (const set of [...byDevice.values()]) for (const e of [...set]) e.settle('closed');
      const u = unlisten;
      unlisten = null;
      await u?.().catch((err: unknown) => log.warn({ err }, 'UNLISTEN of the config channel failed; the connection closes anyway'));
    },
  };
}
