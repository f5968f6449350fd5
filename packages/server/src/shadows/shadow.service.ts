/**
 * The shadow service: AWS IoT Device Shadow semantics over MQTT and HTTP, stored in PostgreSQL.
 *
 * Every request (from any broker or from HTTP) goes through one {@link Batcher}: a device's requests
 * are applied one at a time in arrival order, each batch in ONE transaction that first takes an
 * advisory lock per device (so several server instances serialise too), reads the current documents,
 * applies the requests in memory with the pure rules of `@switchyard/protocol`, writes every touched
 * shadow in one statement and commits durably. Only after the commit are replies published —
 * a device never sees `accepted` for a change that could still be lost.
 */
import {
  SHADOW_LIMITS,
  SHADOW_MESSAGES,
  applyUpdate,
  deleteAcceptedMessage,
  getAcceptedMessage,
  parseClientToken,
  parseTopic,
  parseUpdateRequest,
  shadowError,
  shadowTopic,
  type Namespace,
  type ShadowDocument,
  type ShadowErrorBody,
  type UpdateShadowRequest,
} from '@switchyard/protocol';
import { Batcher, QueueFullError } from './shadow-batcher.ts';
import { createDeviceLimiter, describeRefusal } from './device-limiter.ts';
import {
  listShadowNames,
  loadDeviceRoutes,
  loadRoutesAndShadows,
  loadRoutesAndShadowsSqlCall,
  lockDevicesSql,
  routesAndShadowsOf,
  saveShadowsSqlCall,
  shadowKey,
  type DeviceRoute,
  type StoredShadow,
} from './shadows.store.ts';

import type { ShadowOrigin, ShadowRequest, ShadowOutcome, AppliedUpdate, ShadowServiceOptions, ShadowService } from './shadow.types.ts';

export type * from './shadow.types.ts';

/** The key `mqtt` of `desired` belongs to the server (broker assignment); nobody else may write it. */
function writesServerOwnedKey(req: UpdateShadowRequest): boolean {
  const desired = req.state.desired;
  return desired !== null && desired !== undefined && Object.prototype.hasOwnProperty.call(desired, 'mqtt');
}

/** The shadow holds a server-owned `desired.mqtt`. */
function holdsServerOwnedKey(doc: ShadowDocument | null): boolean {
  const desired = doc?.state.desired;
  return desired !== undefined && desired !== null && Object.prototype.hasOwnProperty.call(desired, 'mqtt');
}

export function createShadowService(opts: ShadowServiceOptions): ShadowService {
  const { db, clock, publisher } = opts;
  const log = opts.log.child({ component: 'shadow-service' });
  const namespaces = opts.namespaces ?? ['iot'];
  const nowSeconds = (): number => Math.floor(clock.now() / 1000);

  const batcher = new Batcher<ShadowRequest, ShadowOutcome>({
    lanes: opts.lanes ?? (db.kind === 'postgres' ? 2 : 1),
    spillAt: opts.laneSpillAt ?? 128,
    maxBatch: opts.maxBatch ?? 500,
    maxQueued: opts.maxQueued ?? 2000,
    keyOf: (req) => req.deviceUuid,
    process: processBatch,
    onSettleError: (err) => log.error({ err }, 'answering a shadow request failed (a bug); the lane goes on'),
  });
  const limits = { ratePerSecond: opts.deviceRateLimit ?? 20, maxInFlight: opts.deviceMaxInFlight ?? 10 };
  const limiter = createDeviceLimiter(limits);
  /** Requests counted against their device's limits: a device's own (any MQTT publisher counts as the device). */
  const limited = (origin: ShadowOrigin): boolean => origin.kind === 'mqtt' || (origin.kind === 'http' && origin.actor === 'device');

  async function processBatch(batch: ShadowRequest[]): Promise<ShadowOutcome[]> {
    const uuids = [...new Set(batch.map((r) => r.deviceUuid))];
    const keys = uniqueKeys(batch);
    const writes = batch.some((r) => r.op !== 'get');
    let routes: Map<string, DeviceRoute>;
    let outcomes: ShadowOutcome[];
    const afterCommit: Array<() => void> = [];
    try {
      if (writes) {
        // Two round trips: BEGIN's message takes the devices' locks (sorted: no deadlock) and then reads their rows;
        // the batch's writes go with the COMMIT.
        const begin = `${lockDevicesSql(db, uuids)}; ${loadRoutesAndShadowsSqlCall(db, uuids, keys)}`;
        outcomes = await db.transaction(async (tx, begun) => {
          const loaded = routesAndShadowsOf(begun.rows[0]!);
          routes = loaded.routes;
          const dirty = new Map<string, StoredShadow>();
          const results = batch.map((req) => applyOne(req, loaded.routes, loaded.shadows, dirty));
          if (opts.afterApply) {
            const applied: AppliedUpdate[] = [];
            batch.forEach((req, i) => {
              const out = results[i]!;
              if (req.op === 'update' && out.ok && out.op === 'update') {
                applied.push({ deviceUuid: req.deviceUuid, shadowName: req.shadowName, origin: req.origin, request: req.request, document: out.document, afterCommit });
              }
            });
            if (applied.length > 0) await opts.afterApply(tx, applied);
          }
          if (dirty.size > 0) tx.atCommit(saveShadowsSqlCall(db, [...dirty.values()]));
          return results;
        }, { begin });
      } else {
        const loaded = await loadRoutesAndShadows(db, uuids, keys);
        routes = loaded.routes;
        outcomes = batch.map((req) => applyOne(req, loaded.routes, loaded.shadows, new Map()));
      }
    } catch (err) {
      log.error({ err, batchSize: batch.length }, 'shadow batch failed; answering 500 to each request');
      const now = nowSeconds();
      outcomes = batch.map((req) => ({
        ok: false as const,
        error: shadowError(500, SHADOW_MESSAGES.internal, now, clientTokenOf(req)),
      }));
      routes = new Map();
      afterCommit.length = 0; // rolled back: nothing to announce
    }
    batch.forEach((req, i) => {
      const out = outcomes[i]!;
      opts.onOutcome?.(req.op, req.origin.kind, out.ok ? 200 : out.error.code);
    });
    for (const fn of afterCommit) {
      try {
        fn();
      } catch (err) {
        log.error({ err }, 'after-commit callback failed');
      }
    }
    replySoon(() => batch.forEach((req, i) => publishOutcome(req, outcomes[i]!, routes.get(req.deviceUuid))));
    return outcomes;
  }

  /**
   * A committed batch's MQTT replies go out at the end of the event loop's turn, not before `processBatch` returns:
   * the lane sends its next batch's first statement first, and the database works on it while this thread builds
   * and writes the replies. A lane is a serial pipeline — at 5,000 updates/s its wall time per update is what bounds
   * the batch size and the latency (bench/shadow-throughput) — and building the replies was a fifth of it. Replies
   * keep their order (one FIFO for every lane); `drain` publishes what is left.
   */
  let replies: Array<() => void> = [];
  let repliesScheduled = false;
  function replySoon(publish: () => void): void {
    replies.push(publish);
    if (repliesScheduled) return;
    repliesScheduled = true;
    setImmediate(flushReplies);
  }
  function flushReplies(): void {
    repliesScheduled = false;
    const due = replies;
    replies = [];
    for (const publish of due) {
      try {
        publish();
      } catch (err) {
        log.error({ err }, 'publishing shadow replies failed');
      }
    }
  }

  function applyOne(
    req: ShadowRequest,
    routes: Map<string, DeviceRoute>,
    current: Map<string, StoredShadow>,
    dirty: Map<string, StoredShadow>,
  ): ShadowOutcome {
    const now = nowSeconds();
    const token = clientTokenOf(req);
    if (!routes.has(req.deviceUuid)) {
      return { ok: false, error: shadowError(404, SHADOW_MESSAGES.thingNotFound, now, token) };
    }
    const key = shadowKey(req.deviceUuid, req.shadowName);
    const stored = current.get(key);
    const doc: ShadowDocument | null = stored?.document ?? null;
    switch (req.op) {
      case 'get':
        if (!doc) return { ok: false, error: shadowError(404, SHADOW_MESSAGES.notFound(req.shadowName), now, token) };
        return { ok: true, op: 'get', body: getAcceptedMessage(doc, now, token) };
      case 'delete': {
        if (!doc || !stored) {
          return { ok: false, error: shadowError(404, SHADOW_MESSAGES.notFound(req.shadowName), now, token) };
        }
        // A device deleting the shadow that holds its assignment would erase `desired.mqtt`, which it may not write.
        if (limited(req.origin) && holdsServerOwnedKey(doc)) return { ok: false, error: shadowError(403, SHADOW_MESSAGES.forbidden, now, token) };
        const next: StoredShadow = { ...stored, document: null };
        current.set(key, next);
        dirty.set(key, next);
        return { ok: true, op: 'delete', body: deleteAcceptedMessage(stored.version, now, token) };
      }
      case 'update': {
        const dropsDesired = req.request.state.desired === null && holdsServerOwnedKey(doc); // `"desired": null` erases it too
        if (req.origin.kind !== 'internal' && (writesServerOwnedKey(req.request) || (limited(req.origin) && dropsDesired))) {
          return { ok: false, error: shadowError(403, SHADOW_MESSAGES.forbidden, now, token) };
        }
        const result = applyUpdate(doc, req.request, now, { priorVersion: stored?.version ?? 0 });
        if (!result.ok) return { ok: false, error: result.error };
        const next: StoredShadow = {
          deviceUuid: req.deviceUuid,
          shadowName: req.shadowName,
          document: result.document,
          version: result.document.version,
        };
        current.set(key, next);
        dirty.set(key, next);
        return {
          ok: true,
          op: 'update',
          body: result.accepted,
          version: result.document.version,
          document: result.document,
          documents: result.documents,
          ...(result.delta ? { delta: result.delta } : {}),
        };
      }
      default: {
        const unreachable: never = req;
        throw new Error(`unknown shadow op ${JSON.stringify(unreachable)}`);
      }
    }
  }

  /** Brokers a device may be listening on: where the request came from, where it is, where it should be. */
  function deviceBrokers(req: ShadowRequest, route: DeviceRoute | undefined): number[] {
    const ids = new Set<number>();
    if (req.origin.kind === 'mqtt') ids.add(req.origin.brokerId);
    if (route?.connectedBrokerId != null) ids.add(route.connectedBrokerId);
    if (route?.brokerId != null) ids.add(route.brokerId);
    return [...ids];
  }

  function publishOutcome(req: ShadowRequest, outcome: ShadowOutcome, route: DeviceRoute | undefined): void {
    const { deviceUuid: uuid, shadowName: name } = req;
    if (!outcome.ok) {
      // Errors go only to the requester (HTTP callers get the status code instead).
      if (req.origin.kind === 'mqtt') {
        publisher.publish(req.origin.brokerId, shadowTopic(uuid, name, req.op, 'rejected', req.origin.ns), JSON.stringify(outcome.error), 1);
      }
      return;
    }
    if (outcome.op === 'get') {
      if (req.origin.kind === 'mqtt') {
        publisher.publish(req.origin.brokerId, shadowTopic(uuid, name, 'get', 'accepted', req.origin.ns), JSON.stringify(outcome.body), 1);
      }
      return;
    }
    const replyNs: Namespace[] = req.origin.kind === 'mqtt' ? [req.origin.ns] : namespaces;
    const brokers = deviceBrokers(req, route);
    const accepted = JSON.stringify(outcome.body);
    for (const brokerId of brokers) {
      for (const ns of replyNs) publisher.publish(brokerId, shadowTopic(uuid, name, outcome.op, 'accepted', ns), accepted, 1);
    }
    if (outcome.op !== 'update') return;
    const documents = JSON.stringify(outcome.documents);
    const delta = outcome.delta ? JSON.stringify(outcome.delta) : undefined;
    for (const brokerId of brokers) {
      for (const ns of replyNs) publisher.publish(brokerId, shadowTopic(uuid, name, 'update', 'documents', ns), documents, 0);
      // A delta is state the device must act on: every namespace, QoS 1.
      if (delta) for (const ns of namespaces) publisher.publish(brokerId, shadowTopic(uuid, name, 'update', 'delta', ns), delta, 1);
    }
  }

  function rejectNow(brokerId: number, ns: Namespace, uuid: string, name: string, op: 'get' | 'update' | 'delete', error: ShadowErrorBody): void {
    publisher.publish(brokerId, shadowTopic(uuid, name, op, 'rejected', ns), JSON.stringify(error), 1);
  }

  /** Admits a device's request under its limits, or answers it 429 at once (over MQTT too). */
  function submit(req: ShadowRequest): Promise<ShadowOutcome> {
    const holdsSlot = limited(req.origin);
    if (holdsSlot) {
      const admission = limiter.tryAcquire(req.deviceUuid, clock.now());
      if (!admission.ok) return Promise.resolve(throttled(req, clientTokenOf(req), admission.reason));
    }
    return new Promise((resolve) => queue(req, holdsSlot, resolve));
  }

  /** 429 for a request over its device's limits: published to an MQTT requester at once, returned to HTTP. */
  function throttled(req: Pick<ShadowRequest, 'deviceUuid' | 'shadowName' | 'op' | 'origin'>, clientToken: string | undefined, reason: 'rate' | 'in-flight'): ShadowOutcome {
    log.debug({ deviceUuid: req.deviceUuid, op: req.op, reason }, `shadow request refused with 429: ${describeRefusal(reason, limits)}`);
    const error = shadowError(429, SHADOW_MESSAGES.tooManyRequests, nowSeconds(), clientToken);
    opts.onOutcome?.(req.op, req.origin.kind, 429, reason);
    if (req.origin.kind === 'mqtt') rejectNow(req.origin.brokerId, req.origin.ns, req.deviceUuid, req.shadowName, req.op, error);
    return { ok: false, error };
  }

  /**
   * Hands `req` to the batcher; `answered` (HTTP) gets its outcome — MQTT requesters get theirs published by the batch.
   * `holdsSlot`: the request holds one of its device's in-flight slots, freed once it is answered.
   */
  function queue(req: ShadowRequest, holdsSlot: boolean, answered?: (outcome: ShadowOutcome) => void): void {
    batcher.push(req, (err, res) => {
      if (holdsSlot) limiter.release(req.deviceUuid);
      const outcome = err === undefined ? res! : notQueued(req, err);
      answered?.(outcome);
    });
  }

  /** The answer to a request the batcher did not take (its lane is full: 429, published at once) or failed outright. */
  function notQueued(req: ShadowRequest, err: unknown): ShadowOutcome {
    const now = nowSeconds();
    if (err instanceof QueueFullError) {
      const outcome: ShadowOutcome = { ok: false, error: shadowError(429, SHADOW_MESSAGES.tooManyRequests, now, clientTokenOf(req)) };
      opts.onOutcome?.(req.op, req.origin.kind, 429, 'queue');
      publishOutcome(req, outcome, undefined);
      return outcome;
    }
    log.error({ err, deviceUuid: req.deviceUuid }, 'shadow request failed');
    opts.onOutcome?.(req.op, req.origin.kind, 500);
    return { ok: false, error: shadowError(500, SHADOW_MESSAGES.internal, now, clientTokenOf(req)) };
  }

  function handleMqtt(brokerId: number, topic: string, payload: Buffer): void {
    const parsed = parseTopic(topic);
    if (!parsed || parsed.kind !== 'shadow' || parsed.reply !== undefined) {
      log.debug({ brokerId, topic }, 'ignored message on a topic that is not a shadow request');
      return;
    }
    if (!namespaces.includes(parsed.ns)) return;
    const { deviceUuid, shadowName, op, ns } = parsed;
    const origin: ShadowOrigin = { kind: 'mqtt', brokerId, ns };
    // Every request counts against its device's limits, malformed ones too (each costs a parse and a reply).
    const admission = limiter.tryAcquire(deviceUuid, clock.now());
    if (!admission.ok) {
      throttled({ op, deviceUuid, shadowName, origin }, parseClientToken(payload), admission.reason);
      return;
    }
    if (op === 'update') {
      const r = parseUpdateRequest(payload);
      if (!r.ok) {
        limiter.release(deviceUuid);
        opts.onOutcome?.(op, 'mqtt', r.error.code);
        rejectNow(brokerId, ns, deviceUuid, shadowName, op, shadowError(r.error.code, r.error.message, nowSeconds(), r.clientToken));
        return;
      }
      queue({ op, deviceUuid, shadowName, origin, request: r.request }, true);
      return;
    }
    const clientToken = parseClientToken(payload);
    queue({ op, deviceUuid, shadowName, origin, ...(clientToken !== undefined ? { clientToken } : {}) }, true);
  }

  async function listNames(deviceUuid: string, o: { limit: number; after?: string }): Promise<string[] | null> {
    const routes = await loadDeviceRoutes(db, [deviceUuid]);
    if (!routes.has(deviceUuid)) return null;
    return listShadowNames(db, deviceUuid, o);
  }

  return { submit, handleMqtt, listNames, drain: async () => {
      await batcher.idle();
      flushReplies();
    }, stats: () => batcher.stats(), limiterStats: () => limiter.stats() };
}

function clientTokenOf(req: ShadowRequest): string | undefined {
  return req.op === 'update' ? req.request.clientToken : req.clientToken;
}

function uniqueKeys(batch: ShadowRequest[]): Array<{ deviceUuid: string; shadowName: string }> {
  const seen = new Map<string, { deviceUuid: string; shadowName: string }>();
  for (const r of batch) seen.set(shadowKey(r.deviceUuid, r.shadowName), { deviceUuid: r.deviceUuid, shadowName: r.shadowName });
  return [...seen.values()];
}

export { SHADOW_LIMITS };
