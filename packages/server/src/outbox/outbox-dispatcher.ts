/**
 * The outbox dispatcher: delivers committed side effects at least once, in order per dependency chain.
 *
 * It wakes when a transaction that wrote rows commits (LISTEN/NOTIFY — in-process on PGlite, across
 * instances on PostgreSQL), when a delayed retry becomes due (one timer set to the earliest due row),
 * and on start (rows a crashed server left behind). When the outbox is empty it does nothing: no
 * polling loop. A slow safety timer (default 30 s) covers a NOTIFY lost while the LISTEN connection
 * was down. A failed delivery is retried with capped exponential backoff and full jitter.
 *
 * Rows of one claim are independent (a row whose `depends_on` is still in the outbox is never claimed), so rows
 * that `concurrent` selects (credential changes on brokers) are delivered side by side — their deliverer batches
 * them, e.g. several dynsec commands in one control message — while the others go one by one, in id order.
 * The lease of every row still in work is renewed every third of `leaseSeconds`: a round slowed by a paced
 * broker is never taken over by another dispatcher half-way.
 */
import { nextDelay, type BackoffPolicy } from '@switchyard/protocol';
import type { Db } from '../db/db.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { OUTBOX_CHANNEL, claim, extendLease, markDelivered, markFailed, nextDueInSeconds, undelivered, type OutboxRow } from './outbox.store.ts';

export interface OutboxDispatcherOptions {
  db: Db;
  log: Logger;
  clock: Clock;
  /**
   * Delivers one row; throws to have it retried. `justCommitted`: handed over by {@link OutboxDispatcher.deliverLeased}
   * right after its transaction committed (what that transaction decided still holds; a retry re-checks).
   */
  deliver(row: OutboxRow, ctx: { justCommitted: boolean }): Promise<void>;
  /** Called after rows were delivered and deleted (e.g. to mark their migrations `notified`): once per claim or lease batch. */
  onDelivered?(rows: readonly OutboxRow[]): Promise<void>;
  /** Retry policy. Default base 250 ms, cap 30 s. */
  backoff?: BackoffPolicy;
  /** Rows claimed per round. Default 100. */
  batchSize?: number;
  /** How long a claim is held before another dispatcher may take the row over (s). Default 15. */
  leaseSeconds?: number;
  /** Safety re-check interval while idle (ms). Default 30,000. */
  safetyIntervalMs?: number;
  /** Rows that may be delivered side by side with the other selected rows of their claim. Default: none. */
  concurrent?(row: OutboxRow): boolean;
}

export interface OutboxDispatcher {
  start(): Promise<void>;
  /** Asks for a delivery round now (also called by the NOTIFY listener). */
  wake(): void;
  /**
   * Waits until the rows `ids` are delivered (by this dispatcher or another instance's) or `timeoutMs` passed;
   * resolves with the ids still undelivered (empty when all went out). Wakes the dispatcher first.
   */
  waitDelivered(ids: readonly number[], timeoutMs: number): Promise<number[]>;
  /**
   * Delivers rows its caller inserted already leased (`enqueueLeased`) and just committed, at once and in order,
   * without a claim; a failed one is retried like any row (its lease is dropped, the due timer takes it).
   */
  deliverLeased(rows: readonly OutboxRow[]): void;
  /** The lease a dispatcher holds on rows in work, seconds (also the lease `enqueueLeased` should take). */
  readonly leaseSeconds: number;
  /** Rows taken through {@link deliverLeased} (for tests and metrics). */
  readonly leasedDelivered: number;
  stop(): Promise<void>;
}

export function createOutboxDispatcher(opts: OutboxDispatcherOptions): OutboxDispatcher {
  const log = opts.log.child({ component: 'outbox' });
  const backoff = opts.backoff ?? { baseMs: 250, maxMs: 30_000 };
  const batchSize = opts.batchSize ?? 100;
  const leaseSeconds = opts.leaseSeconds ?? 15;
  let running: Promise<void> | null = null;
  let again = false;
  let stopped = false;
  let dueTimer: NodeJS.Timeout | null = null;
  let safetyTimer: NodeJS.Timeout | null = null;
  let unlisten: (() => Promise<void>) | null = null;

  /** Settled by every local delivery: `waitDelivered` re-checks then instead of waiting for its poll. */
  const deliveredWaiters = new Set<() => void>();

  /** Delivers one row; a failure is recorded on the row (retried later). The caller deletes delivered rows. */
  async function deliverOne(row: OutboxRow, justCommitted = false): Promise<boolean> {
    try {
      await opts.deliver(row, { justCommitted });
      return true;
    } catch (err) {
      const delay = nextDelay(row.attempts - 1, backoff);
      const rlog = log.child({ outboxId: row.id, kind: row.kind, deviceUuid: row.deviceUuid, migrationId: row.migrationId });
      rlog.warn({ err: (err as Error).message, attempt: row.attempts, nextDelayMs: delay }, 'outbox delivery failed; will retry');
      await markFailed(opts.db, row.id, (err as Error).message, delay);
      return false;
    }
  }

  async function round(): Promise<void> {
    for (;;) {
      const rows = await claim(opts.db, batchSize, leaseSeconds);
      if (rows.length === 0) break;
      await deliverClaimed(rows);
      if (stopped) return;
    }
    scheduleDue(await nextDueInSeconds(opts.db));
  }

  /** Delivers rows this dispatcher holds the lease of, renewing it while any is in work; false if one failed. */
  async function deliverClaimed(rows: readonly OutboxRow[], justCommitted = false): Promise<boolean> {
    let ok = true;
    const inWork = new Set(rows.map((r) => r.id));
    let renewTimer: ReturnType<Clock['setTimeout']> | null = null;
    const renew = (): void => {
      renewTimer = opts.clock.setTimeout(() => {
        extendLease(opts.db, [...inWork], leaseSeconds)
          .catch((err: unknown) => log.warn({ err: (err as Error).message }, 'renewing outbox leases failed; another dispatcher may deliver some rows again'))
          .finally(() => {
            if (inWork.size > 0 && !stopped) renew();
          });
      }, (leaseSeconds * 1000) / 3);
    };
    renew();
    const delivered: OutboxRow[] = [];
    const track = async (row: OutboxRow): Promise<void> => {
      if (stopped) return;
      if (await deliverOne(row, justCommitted)) delivered.push(row);
      else ok = false;
    };
    try {
      const side = rows.filter((r) => opts.concurrent?.(r) === true);
      const serial = rows.filter((r) => opts.concurrent?.(r) !== true);
      await Promise.all([
        Promise.all(side.map(track)),
        (async () => {
          for (const row of serial) await track(row);
        })(),
      ]);
      // The batch's bookkeeping in one statement (and one hook call), not one per row: an assignment's rows (a delta
      // per namespace) go out back to back, and the database is not asked four times while the device is moving.
      // Should this fail, the rows stay leased and are delivered again when the lease ends (at least once).
      if (delivered.length > 0) {
        await markDelivered(
          opts.db,
          delivered.map((r) => r.id),
        );
        await opts.onDelivered?.(delivered);
        for (const w of [...deliveredWaiters]) w();
      }
    } finally {
      inWork.clear();
      if (renewTimer) opts.clock.clearTimeout(renewTimer);
    }
    return ok;
  }

  let leasedDelivered = 0;
  /**
   * One chain per device: a device's leased rows of successive transactions go out in commit order, and a publish
   * that hangs (a broker that stopped acknowledging) holds up only its own device, not a fleet being moved.
   */
  const leasedChains = new Map<string, Promise<void>>();
  function deliverLeased(rows: readonly OutboxRow[]): void {
    if (stopped || rows.length === 0) return;
    leasedDelivered += rows.length;
    const key = rows[0]!.deviceUuid ?? '';
    const next = (leasedChains.get(key) ?? Promise.resolve())
      .then(() => deliverClaimed([...rows].sort((a, b) => a.id - b.id), true))
      .then(
        (ok) => {
          if (!ok) wake(); // the failed rows are due later: the round sets the timer
        },
        (err: unknown) => {
          log.error({ err }, 'delivering just-committed outbox rows failed; they are retried when their lease ends');
          scheduleDue(leaseSeconds);
        },
      )
      .finally(() => {
        if (leasedChains.get(key) === next) leasedChains.delete(key);
      });
    leasedChains.set(key, next);
  }

  function scheduleDue(seconds: number | null): void {
    if (dueTimer) opts.clock.clearTimeout(dueTimer);
    dueTimer = null;
    if (seconds === null || stopped) return;
    dueTimer = opts.clock.setTimeout(() => {
      dueTimer = null;
      wake();
    }, Math.ceil(seconds * 1000) + 5);
  }

  function wake(): void {
    if (stopped) return;
    if (running) {
      again = true;
      return;
    }
    running = round()
      .catch((err: unknown) => {
        log.error({ err }, 'outbox round failed; retrying in 1 s');
        scheduleDue(1);
      })
      .finally(() => {
        running = null;
        if (again && !stopped) {
          again = false;
          wake();
        }
      });
  }

  function safety(): void {
    const every = opts.safetyIntervalMs ?? 30_000;
    if (every <= 0 || stopped) return;
    safetyTimer = opts.clock.setTimeout(() => {
      wake();
      safety();
    }, every);
  }

  async function waitDelivered(ids: readonly number[], timeoutMs: number): Promise<number[]> {
    const deadline = opts.clock.now() + timeoutMs;
    wake();
    let left = [...ids];
    for (;;) {
      left = await undelivered(opts.db, left);
      const remaining = deadline - opts.clock.now();
      if (left.length === 0 || remaining <= 0 || stopped) return left;
      // Woken by a local delivery, or after a short poll (rows another instance delivers leave no local trace).
      await new Promise<void>((resolve) => {
        const done = (): void => {
          deliveredWaiters.delete(done);
          opts.clock.clearTimeout(timer);
          resolve();
        };
        const timer = opts.clock.setTimeout(done, Math.min(100, remaining));
        deliveredWaiters.add(done);
      });
    }
  }

  return {
    waitDelivered,
    deliverLeased,
    leaseSeconds,
    get leasedDelivered() {
      return leasedDelivered;
    },
    async start() {
      unlisten = await opts.db.listen(OUTBOX_CHANNEL, () => wake());
      safety();
      wake();
    },
    wake,
    async stop() {
      stopped = true;
      if (dueTimer) opts.clock.clearTimeout(dueTimer);
      if (safetyTimer) opts.clock.clearTimeout(safetyTimer);
      await unlisten?.();
      await running;
      await Promise.all([...leasedChains.values()]);
    },
  };
}
