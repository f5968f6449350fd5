/**
 * Group commit for shadow requests.
 *
 * Requests are spread over `lanes` by device (so one device's requests stay in order on one lane).
 * Each lane runs at most one batch at a time: while a batch's transaction is in flight, new requests
 * queue up, and the moment it commits the next batch takes everything queued (up to `maxBatch`).
 * Under light load a batch holds one request and adds no delay; under heavy load batches grow and
 * the per-update cost of the durable commit shrinks. No timer waits for a batch to fill.
 */
export interface BatcherOptions<Req, Res> {
  /** Parallel lanes; requests of one key always use the same lane. Default 1. */
  lanes?: number;
  /** Largest batch handed to `process`. Default 500. */
  maxBatch?: number;
  /** Most queued requests per lane before `submit` rejects with `QueueFullError`. Default 20,000. */
  maxQueued?: number;
  /** Lane key of a request (the device uuid). */
  keyOf(req: Req): string;
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

interface Pending<Req, Res> {
  req: Req;
  resolve(res: Res): void;
  reject(err: unknown): void;
}

interface Lane<Req, Res> {
  queue: Pending<Req, Res>[];
  running: boolean;
}

export class Batcher<Req, Res> {
  readonly #opts: Required<Omit<BatcherOptions<Req, Res>, 'keyOf' | 'process'>> & BatcherOptions<Req, Res>;
  readonly #lanes: Lane<Req, Res>[];
  #idleWaiters: Array<() => void> = [];
  #batches = 0;
  #requests = 0;

  constructor(opts: BatcherOptions<Req, Res>) {
    this.#opts = { lanes: 1, maxBatch: 500, maxQueued: 20_000, ...opts };
    this.#lanes = Array.from({ length: Math.max(1, this.#opts.lanes) }, () => ({ queue: [], running: false }));
  }

  submit(req: Req): Promise<Res> {
    const lane = this.#lanes[laneIndex(this.#opts.keyOf(req), this.#lanes.length)]!;
    if (lane.queue.length >= this.#opts.maxQueued) return Promise.reject(new QueueFullError());
    return new Promise<Res>((resolve, reject) => {
      lane.queue.push({ req, resolve, reject });
      if (!lane.running) {
        lane.running = true;
        // Let requests parsed from the same read (one socket chunk holds many MQTT packets) join the first batch —
        // without waiting for the rest of the event loop's turn (a setImmediate here cost an idle lane's request
        // ~0.1–0.5 ms behind whatever else was ready). A busy lane batches what queues while it works anyway.
        process.nextTick(() => void this.#drain(lane));
      }
    });
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
      try {
        const results = await this.#opts.process(batch.map((p) => p.req));
        batch.forEach((p, i) => p.resolve(results[i]!));
      } catch (err) {
        for (const p of batch) p.reject(err);
      }
    }
    lane.running = false;
    if (this.#lanes.every((l) => !l.running)) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

/** FNV-1a over the key: stable lane choice without crypto. */
function laneIndex(key: string, lanes: number): number {
  if (lanes === 1) return 0;
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % lanes;
}
