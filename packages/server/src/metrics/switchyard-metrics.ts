/**
 * Switchyard's metrics (`GET /metrics`, Prometheus text format): what one server instance saw, plus a few
 * fleet-wide gauges read from the database at scrape time. Every name and label is listed in docs/operations.md.
 *
 * Sources, all in-process and additive:
 * - migrations: `observeMigration`, called with every change the assignment service announces
 *   (`onMigrationChange` in serve.ts; superseded rows are announced by the assignment that ends them) — so
 *   counters cover moves requested or finished THROUGH this instance; summed over instances they give the fleet.
 * - shadows: `observeShadow`, the shadow service's `onOutcome` hook (every answer, HTTP and MQTT).
 * - HTTP: `observeHttp`, an `onResponse` hook (method, route PATTERN, status code — never the raw URL).
 * - scrape time: open migrations by status (one GROUP BY), outbox rows, broker connections of this instance's
 *   pool, process basics.
 *
 * Labels are bounded: statuses, channels, ops, codes, route patterns, broker ids/names. No device uuid, no token.
 * A scrape-time query that fails or takes longer than `queryTimeoutMs` leaves its gauges out of that scrape and
 * counts `switchyard_metrics_collector_errors_total{collector}`; the scrape itself still answers.
 */
import type { Queryable } from '../db/db.ts';
import type { Logger } from '../log.ts';
import type { Migration } from '../assignments/assignment.model.ts';
import { ASSIGNMENT_CHANNELS, MIGRATION_STATUSES, OPEN_STATUSES } from '../assignments/assignments.store.ts';
import { pendingCount } from '../outbox/outbox.store.ts';
import type { BrokerPoolStatus } from '../http/health.routes.ts';
import { countOpenMigrations } from './metrics.store.ts';
import { registerProcessMetrics } from './process-metrics.ts';
import { Registry, type CounterChild } from './registry.ts';

/** Buckets of `switchyard_migration_duration_seconds`: 10 ms … 120 s (the default migration timeout). */
export const MIGRATION_DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120] as const;

const FINAL_STATUSES = MIGRATION_STATUSES.filter((s) => !(OPEN_STATUSES as readonly string[]).includes(s));
const SHADOW_OPS = ['get', 'update', 'delete'] as const;
/** Codes a shadow answer may carry (AWS IoT); anything else is counted as `other`. */
const SHADOW_CODES = new Set([400, 401, 403, 404, 409, 413, 415, 429, 500, 503]);
const HTTP_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

export interface SwitchyardMetricsOptions {
  db: Queryable;
  log: Logger;
  /** This instance's broker connections (`pool.status()`); without it no broker gauges are rendered. */
  brokers?: () => BrokerPoolStatus[];
  /** How long one scrape-time query may take, ms. Default 2000. */
  queryTimeoutMs?: number;
  /** Ids of migrations whose final status was counted, kept to count each once (a late ack re-announces). Default 10,000. */
  maxRememberedIds?: number;
}

export interface SwitchyardMetrics {
  /** The registry (tests; more metrics may be added to it). */
  readonly registry: Registry;
  /** A migration change announced by this instance's assignment service. */
  observeMigration(m: Pick<Migration, 'id' | 'channel' | 'status' | 'createdAt' | 'completedAt'>): void;
  /** A shadow request answered: `code` 200 = accepted; `limit` names the limit behind a 429. */
  observeShadow(op: string, origin: string, code: number, limit?: 'rate' | 'in-flight' | 'queue'): void;
  /** An HTTP answer: `route` is the route pattern (`request.routeOptions.url`), undefined when no route matched. */
  observeHttp(method: string, route: string | undefined, statusCode: number): void;
  /** The text exposition of every metric (runs the scrape-time queries). Never rejects. */
  render(): Promise<string>;
}

export function createSwitchyardMetrics(opts: SwitchyardMetricsOptions): SwitchyardMetrics {
  const { db } = opts;
  const log = opts.log.child({ component: 'metrics' });
  const queryTimeoutMs = opts.queryTimeoutMs ?? 2000;
  const maxRememberedIds = opts.maxRememberedIds ?? 10_000;
  const registry = new Registry();

  // --- migrations ---
  const started = registry.counter('switchyard_migrations_started_total', 'Migrations (broker assignments) requested through this instance, by channel.', ['channel']);
  const finished = registry.counter(
    'switchyard_migrations_finished_total',
    'Migrations that reached a final status as seen by this instance (it completed, timed out or superseded them), by status and channel.',
    ['status', 'channel'],
  );
  const duration = registry.histogram(
    'switchyard_migration_duration_seconds',
    'Request to completion (completed_at - created_at) of migrations completed through this instance, seconds.',
    ['channel'],
    MIGRATION_DURATION_BUCKETS,
  );
  const open = registry.gauge('switchyard_migrations_open', 'Open migrations in the database (all instances), by status, read at scrape time.', ['status']);
  for (const channel of ASSIGNMENT_CHANNELS) {
    started.inc([channel], 0);
    for (const status of FINAL_STATUSES) finished.inc([status, channel], 0);
    duration.init([channel]);
  }

  // --- outbox, brokers ---
  const outboxPending = registry.gauge('switchyard_outbox_pending', 'Outbox rows not yet delivered (all instances), read at scrape time.');
  const brokerConnected = registry.gauge('switchyard_broker_connected', "1 when this instance's connection to the broker is up, else 0.", ['broker_id', 'broker_name']);
  const brokerOwner = registry.gauge('switchyard_broker_owner', "1 when this instance owns the broker's request subscriptions, else 0.", ['broker_id', 'broker_name']);

  // --- shadows ---
  const shadowRequests = registry.counter(
    'switchyard_shadow_requests_total',
    'Shadow requests answered by this instance, by op, origin (mqtt, http) and outcome (accepted, rejected).',
    ['op', 'origin', 'outcome'],
  );
  const shadowRejections = registry.counter('switchyard_shadow_rejections_total', 'Rejected shadow requests by op and error code.', ['op', 'code']);
  const shadowThrottled = registry.counter(
    'switchyard_shadow_throttled_total',
    'Shadow requests refused with 429, by the limit that refused them (rate, in_flight: per device; queue: the service is full).',
    ['limit'],
  );
  for (const op of SHADOW_OPS) {
    for (const origin of ['mqtt', 'http']) for (const outcome of ['accepted', 'rejected']) shadowRequests.inc([op, origin, outcome], 0);
  }
  for (const limit of ['rate', 'in_flight', 'queue']) shadowThrottled.inc([limit], 0);

  // --- HTTP, process, the metrics themselves ---
  const httpRequests = registry.counter(
    'switchyard_http_requests_total',
    'HTTP requests answered, by method, route pattern ("unmatched" when no route matched) and status code.',
    ['method', 'route', 'status_code'],
  );
  const httpChildren = new Map<string, CounterChild>();
  registerProcessMetrics(registry);
  const collectorErrors = registry.counter(
    'switchyard_metrics_collector_errors_total',
    'Scrape-time reads that failed or timed out (their gauges were left out of that scrape), by collector.',
    ['collector'],
  );

  // Terminal changes already counted (a command ack may announce a completed row again); bounded, oldest out first.
  const counted = new Set<number>();
  const countFinal = (id: number, status: string, channel: string): boolean => {
    if (counted.has(id)) return false;
    counted.add(id);
    if (counted.size > maxRememberedIds) counted.delete(counted.values().next().value!);
    finished.inc([status, channel]);
    return true;
  };

  function guarded(name: string, fn: () => Promise<void> | void, onError?: () => void): void {
    collectorErrors.inc([name], 0);
    registry.collect(async () => {
      try {
        await fn();
      } catch (err) {
        onError?.();
        collectorErrors.inc([name]);
        log.warn({ err, collector: name }, 'metrics: a scrape-time read failed; its metrics are left out of this scrape');
      }
    });
  }

  guarded(
    'migrations_open',
    async () => {
      const byStatus = await withTimeout(countOpenMigrations(db), queryTimeoutMs);
      open.clear();
      for (const status of OPEN_STATUSES) open.set([status], byStatus.get(status) ?? 0);
    },
    () => open.clear(),
  );
  guarded(
    'outbox',
    async () => outboxPending.set([], await withTimeout(pendingCount(db), queryTimeoutMs)),
    () => outboxPending.clear(),
  );
  if (opts.brokers) {
    const brokers = opts.brokers;
    guarded(
      'brokers',
      () => {
        brokerConnected.clear();
        brokerOwner.clear();
        for (const b of brokers()) {
          brokerConnected.set([String(b.brokerId), b.name], b.connected ? 1 : 0);
          brokerOwner.set([String(b.brokerId), b.name], b.owner ? 1 : 0);
        }
      },
      () => {
        brokerConnected.clear();
        brokerOwner.clear();
      },
    );
  }

  return {
    registry,
    observeMigration(m) {
      if (m.status === 'pending') {
        started.inc([m.channel]);
        return;
      }
      if (!(FINAL_STATUSES as readonly string[]).includes(m.status)) return;
      if (!countFinal(m.id, m.status, m.channel)) return;
      if (m.status === 'completed' && m.completedAt !== null) {
        const seconds = (Date.parse(m.completedAt) - Date.parse(m.createdAt)) / 1000;
        if (seconds >= 0) duration.observe([m.channel], seconds);
      }
    },
    observeShadow(op, origin, code, limit) {
      const accepted = code < 400;
      shadowRequests.inc([op, origin, accepted ? 'accepted' : 'rejected']);
      if (accepted) return;
      shadowRejections.inc([op, SHADOW_CODES.has(code) ? String(code) : 'other']);
      if (limit !== undefined) shadowThrottled.inc([limit === 'in-flight' ? 'in_flight' : limit]);
    },
    observeHttp(method, route, statusCode) {
      // Every HTTP answer passes here: one Map lookup per request once its series exists.
      const k = `${method} ${statusCode} ${route ?? ''}`;
      let child = httpChildren.get(k);
      if (child === undefined) {
        child = httpRequests.labels(HTTP_METHODS.has(method) ? method : 'other', route ?? 'unmatched', String(statusCode));
        httpChildren.set(k, child);
      }
      child.inc();
    },
    render: () => registry.render(),
  };
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the database did not answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
