/**
 * Group commit for shadow requests.
 *
 * Each lane runs at most one batch at a time: while a batch's transaction is in flight, new requests
 * queue up, and the moment it commits the next batch takes everything queued (up to `maxBatch`).
 * Under light load a batch holds one request and adds no delay; under heavy load batches grow and
 * the per-update cost of the durable commit shrinks. No timer waits for a batch to fill.
 *
 * Lanes: a key (device) with requests in the batcher stays on the lane that has them, so one device's requests
 * are applied in order and two lanes never hold the same device. A key with nothing pending goes to a lane by
 * `spillAt`: unset, the first idle lane (else the shortest queue) — lanes side by side at any load; set, the first
 * lane whose queue is shorter than `spillAt` (else the shortest queue) — one lane and its larger batches until it
 * falls behind by `spillAt` requests, then more. Every batch is a few round trips to the database and a commit:
 * fewer, larger batches cost the server and the database less CPU per update (bench/shadow-throughput).
 */
export interface BatcherOptions<Req, Res> {
  /** Parallel lanes; a key's pending requests always share one lane. Default 1. */
  lanes?: number;
  /** Queue length of a lane from which new keys go to the next lane (see above). Default: spread over idle lanes. */
  spillAt?: number;
  /** Largest batch handed to `process`. Default 500. */
  maxBatch?: number;
  /** Most queued requests per lane before `submit` rejects with `QueueFullError`. Default 20,000. */
  maxQueued?: number;
  /** Lane key of a request (the device uuid). */
  keyOf(req: Req): string;
  /**
   * Called with what a `push` callback threw (a bug of the caller's; the lane goes on). Default: an unhandled
   * rejection, as the promise form's would be (the server logs those and keeps running).
   */
  onSettleError?(err: unknown): void;
  /** Processes one batch; must return one result per request, in order. */
  process(batch: Req[]): Promise<Res[]>;
}

/** Counters since the batcher was created (read-only; for metrics and benchmarks). */
export interface BatcherStats {
  /** Batches handed to `process`. */
  batches: number;
  /** Requests in those batches (`requests / batches` is the average batch size). */
  requests: number;
}

export class QueueFullError extends Error {
  constructor() {
    // No stack: this is flow control, thrown for every request past a full lane when the server is saturated —
    // exactly when capturing thousands of stack traces a second hurts most.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super('shadow request queue is full');
    Error.stackTraceLimit = limit;
    this.name = 'QueueFullError';
  }
}

/** A queued request and what to call with its result (`err` set when it failed). */
interface Pending<Req, Res> {
  req: Req;
  key: string;
  settle(err: unknown, res?: Res): void;
}

interface Lane<Req, Res> {
  queue: Pending<Req, Res>[];
  running: boolean;
}

export class Batcher<Req, Res> {
  readonly #opts: Required<Omit<BatcherOptions<Req, Res>, 'keyOf' | 'process' | 'spillAt'>> & BatcherOptions<Req, Res>;
  readonly #lanes: Lane<Req, Res>[];
  /** Keys with requests in the batcher: their lane and how many. */
  readonly #owners = new Map<string, { lane: Lane<Req, Res>; pending: number }>();
  #idleWaiters: Array<() => void> = [];
  #batches = 0;
  #requests = 0;

  constructor(opts: BatcherOptions<Req, Res>) {
    this.#opts = { lanes: 1, maxBatch: 500, maxQueued: 20_000, onSettleError: (err) => void Promise.reject(err), ...opts };
    this.#lanes = Array.from({ length: Math.max(1, this.#opts.lanes) }, () => ({ queue: [], running: false }));
  }

  submit(req: Req): Promise<Res> {
    return new Promise<Res>((resolve, reject) => this.push(req, (err, res) => (err === undefined ? resolve(res!) : reject(err))));
  }

  /**
   * {@link submit} without a promise: `settle` is called once, with the result or with the error (a
   * {@link QueueFullError} at once, synchronously, when the lane is full). For the hot path (every MQTT request).
   */
  push(req: Req, settle: (err: unknown, res?: Res) => void): void {
    const key = this.#opts.keyOf(req);
    const owner = this.#owners.get(key);
    const lane = owner?.lane ?? this.#pickLane();
    if (lane.queue.length >= this.#opts.maxQueued) {
      settle(new QueueFullError());
      return;
    }
    if (owner) owner.pending += 1;
    else this.#owners.set(key, { lane, pending: 1 });
    lane.queue.push({ req, key, settle });
    if (!lane.running) {
      lane.running = true;
      // Let requests parsed from the same read (one socket chunk holds many MQTT packets) join the first batch —
      // without waiting for the rest of the event loop's turn (a setImmediate here cost an idle lane's request
      // ~0.1–0.5 ms behind whatever else was ready). A busy lane batches what queues while it works anyway.
      process.nextTick(() => void this.#drain(lane));
    }
  }

  /** The request of `key` is answered: its lane no longer holds it. */
  #done(key: string): void {
    const o = this.#owners.get(key)!;
    if (--o.pending === 0) this.#owners.delete(key);
  }

  #pickLane(): Lane<Req, Res> {
    const spillAt = this.#opts.spillAt;
    const open = spillAt === undefined ? (l: Lane<Req, Res>) => !l.running && l.queue.length === 0 : (l: Lane<Req, Res>) => l.queue.length < spillAt;
    const first = this.#lanes.find(open);
    if (first) return first;
    return this.#lanes.reduce((best, l) => (l.queue.length < best.queue.length ? l : best));
  }

  /** Resolves when every lane is idle (used on shutdown). */
  async idle(): Promise<void> {
    if (this.#lanes.every((l) => !l.running)) return;
    await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
  }

  stats(): BatcherStats {
    return { batches: this.#batches, requests: this.#requests };
  }

  get queued(): number {
    return this.#lanes.reduce((n, l) => n + l.queue.length, 0);
  }

  async #drain(lane: Lane<Req, Res>): Promise<void> {
    while (lane.queue.length > 0) {
      const batch = lane.queue.splice(0, this.#opts.maxBatch);
      this.#batches += 1;
      this.#requests += batch.length;
      let results: Res[] | null = null;
      let failure: unknown;
      try {
        results = await this.#opts.process(batch.map((p) => p.req));
      } catch (err) {
        failure = err ?? new Error('shadow batch failed');
      }
      batch.forEach((p, i) => {
        this.#done(p.key);
        try {
          if (results === null) p.settle(failure);
          else p.settle(undefined, results[i]!);
        } catch (err) {
          // A caller's callback that throws must not stop the lane (its loop would never run again).
          this.#opts.onSettleError(err);
        }
      });
    }
    lane.running = false;
    if (this.#lanes.every((l) => !l.running)) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}
