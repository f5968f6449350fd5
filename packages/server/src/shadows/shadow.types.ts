/**
 * The shadow service's types: requests and where they come from, outcomes, the hooks it calls and its options
 * (the service itself is `shadow.service.ts`, which re-exports all of these).
 */
import type { Namespace, ShadowDocument, ShadowErrorBody, UpdateShadowRequest } from '@switchyard/protocol';
import type { Db, Queryable } from '../db/db.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { BatcherStats } from './shadow-batcher.ts';
import type { DeviceLimiterStats } from './device-limiter.ts';

/** Where a request came from: a broker (a device, or anything allowed to publish there) or HTTP. */
export type ShadowOrigin =
  | { kind: 'mqtt'; brokerId: number; ns: Namespace }
  | { kind: 'http'; actor: 'admin' | 'device' }
  | { kind: 'internal' };

interface BaseRequest {
  deviceUuid: string;
  /** '' is the classic (unnamed) shadow. */
  shadowName: string;
  origin: ShadowOrigin;
}

export type ShadowRequest =
  | (BaseRequest & { op: 'get'; clientToken?: string })
  | (BaseRequest & { op: 'delete'; clientToken?: string })
  | (BaseRequest & { op: 'update'; request: UpdateShadowRequest });

export type ShadowOutcome =
  | { ok: true; op: 'get'; body: object }
  | { ok: true; op: 'delete'; body: object }
  | { ok: true; op: 'update'; body: object; version: number; document: ShadowDocument; delta?: object; documents: object }
  | { ok: false; error: ShadowErrorBody };

/** A successful update, as seen by {@link ShadowServiceOptions.afterApply} inside the transaction. */
export interface AppliedUpdate {
  deviceUuid: string;
  shadowName: string;
  origin: ShadowOrigin;
  request: UpdateShadowRequest;
  /** The document after the update. */
  document: ShadowDocument;
  /** Callbacks run after the transaction committed (e.g. to emit events). */
  afterCommit: Array<() => void>;
}

/** Publishes on one broker; failures are logged by the publisher, never thrown at the service. */
export interface ShadowPublisher {
  publish(brokerId: number, topic: string, payload: string, qos: 0 | 1): void;
}

export interface ShadowServiceOptions {
  db: Db;
  clock: Clock;
  log: Logger;
  publisher: ShadowPublisher;
  /** Topic namespaces served; deltas go out in each. Default `['iot']`. */
  namespaces?: Namespace[];
  /** Parallel batch lanes (one transaction in flight per lane). Default 2 on PostgreSQL, 1 on PGlite. */
  lanes?: number;
  /**
   * Requests waiting on a lane before devices new to the batcher go to the next lane (see `shadow-batcher.ts`).
   * Default 128: at moderate load one lane and its larger batches (bench/shadow-throughput at 5,000 updates/s: the
   * server −5 %, PostgreSQL −8 % of a core against lanes side by side); the second lane once the first falls behind.
   */
  laneSpillAt?: number;
  /** Largest batch per transaction. Default 500. */
  maxBatch?: number;
  /**
   * Requests waiting per lane before new ones are answered 429 at once (`SWITCHYARD_SHADOW_QUEUE_MAX`).
   * Default 2,000: under overload a quick 429 beats seconds of queueing for everyone. */
  maxQueued?: number;
  /**
   * Shadow requests per second per device (`SWITCHYARD_DEVICE_RATE_LIMIT`; 0 = no limit), burst one second's worth.
   * Counted for requests from devices (MQTT, and HTTP with a device token), malformed ones included; operator and
   * internal requests are not limited per device. Over it: 429 at once. Default 20 (AWS IoT).
   */
  deviceRateLimit?: number;
  /** Admitted shadow requests of one device not yet answered (`SWITCHYARD_DEVICE_MAX_IN_FLIGHT`; 0 = no bound); one more gets 429. Default 10. */
  deviceMaxInFlight?: number;
  /**
   * Runs inside each batch's transaction after its updates were applied in memory, before commit (e.g. the
   * assignment service moving a migration on a device's report). The batch's shadow rows are written after it, in
   * the COMMIT's round trip: read the new documents from `applied`, not from `device_shadows`. Throwing fails the
   * batch.
   */
  afterApply?(q: Queryable, applied: AppliedUpdate[]): Promise<void>;
  /** Observer of every answer (metrics): `code` 200 = accepted, else the rejection's code; `limit` says which limit refused a 429. */
  onOutcome?(op: ShadowRequest['op'], origin: ShadowOrigin['kind'], code: number, limit?: 'rate' | 'in-flight' | 'queue'): void;
}

export interface ShadowService {
  submit(req: ShadowRequest): Promise<ShadowOutcome>;
  /** Entry point for every message the broker pool receives on a shadow request topic. */
  handleMqtt(brokerId: number, topic: string, payload: Buffer): void;
  listNames(deviceUuid: string, opts: { limit: number; after?: string }): Promise<string[] | null>;
  /** Waits for queued requests to finish (shutdown). */
  drain(): Promise<void>;
  /** Batches and requests processed since start (read-only counters; benchmarks, metrics). */
  stats(): BatcherStats;
  /** Requests admitted and refused by the per-device limits since start. */
  limiterStats(): DeviceLimiterStats;
}
