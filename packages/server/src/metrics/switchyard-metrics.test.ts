import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseExposition } from '../../../../test/helpers/prometheus.ts';
import type { Queryable } from '../db/db.ts';
import { createLogger } from '../log.ts';
import { createSwitchyardMetrics } from './switchyard-metrics.ts';

/** A database that is down: every scrape-time read fails (what the metrics must survive). */
const downDb: Queryable = {
  query: () => Promise.reject(new Error('connection refused')),
};

function setup(o: { brokers?: boolean } = {}) {
  const lines: string[] = [];
  const log = createLogger({ level: 'warn', destination: { write: (l: string) => void lines.push(l) } });
  const metrics = createSwitchyardMetrics({
    db: downDb,
    log,
    ...(o.brokers ? { brokers: () => [{ brokerId: 1, name: 'broker-a', connected: true, owner: true }, { brokerId: 2, name: 'b "two"', connected: false, owner: false }] } : {}),
  });
  return { metrics, lines, scrape: async () => parseExposition(await metrics.render()) };
}

const T0 = Date.UTC(2025, 0, 1);
const iso = (ms: number): string => new Date(T0 + ms).toISOString();
const migration = (id: number, status: string, channel: 'shadow' | 'command' | 'job' | 'poll' = 'shadow', tookMs = 250) => ({
  id,
  channel,
  status: status as never,
  createdAt: iso(0),
  completedAt: status === 'completed' ? iso(tookMs) : null,
});

describe('switchyard metrics', () => {
  it('counts started and finished migrations by channel and status, each final status once, with the duration', async () => {
    const { metrics, scrape } = setup();
    metrics.observeMigration(migration(1, 'pending', 'command'));
    metrics.observeMigration(migration(1, 'notified', 'command'));
    metrics.observeMigration(migration(1, 'completed', 'command', 1500));
    // A command ack recorded after the move ended announces the completed row again: not a second completion.
    metrics.observeMigration(migration(1, 'completed', 'command', 1500));
    metrics.observeMigration(migration(2, 'pending', 'shadow'));
    metrics.observeMigration(migration(2, 'timed_out', 'shadow'));
    const m = await scrape();
    assert.equal(m.value('switchyard_migrations_started_total', { channel: 'command' }), 1);
    assert.equal(m.value('switchyard_migrations_started_total', { channel: 'shadow' }), 1);
    assert.equal(m.value('switchyard_migrations_started_total', { channel: 'poll' }), 0, 'every channel renders from the start');
    assert.equal(m.value('switchyard_migrations_finished_total', { status: 'completed', channel: 'command' }), 1);
    assert.equal(m.value('switchyard_migrations_finished_total', { status: 'timed_out', channel: 'shadow' }), 1);
    assert.equal(m.value('switchyard_migrations_finished_total', { status: 'canceled', channel: 'job' }), 0);
    assert.equal(m.sum('switchyard_migrations_finished_total'), 2);
    assert.equal(m.value('switchyard_migration_duration_seconds_count', { channel: 'command' }), 1);
    assert.equal(m.value('switchyard_migration_duration_seconds_sum', { channel: 'command' }), 1.5);
    assert.equal(m.value('switchyard_migration_duration_seconds_bucket', { channel: 'command', le: '1' }), 0);
    assert.equal(m.value('switchyard_migration_duration_seconds_bucket', { channel: 'command', le: '2.5' }), 1);
    assert.equal(m.value('switchyard_migration_duration_seconds_bucket', { channel: 'shadow', le: '+Inf' }), 0, 'a timeout is no duration');
  });

  it('counts shadow answers by op, origin and outcome, rejections by code and 429s by limit', async () => {
    const { metrics, scrape } = setup();
    metrics.observeShadow('update', 'mqtt', 200);
    metrics.observeShadow('update', 'mqtt', 409);
    metrics.observeShadow('get', 'http', 404);
    metrics.observeShadow('get', 'mqtt', 429, 'rate');
    metrics.observeShadow('get', 'mqtt', 429, 'in-flight');
    metrics.observeShadow('delete', 'http', 429, 'queue');
    metrics.observeShadow('delete', 'http', 418);
    const m = await scrape();
    assert.equal(m.value('switchyard_shadow_requests_total', { op: 'update', origin: 'mqtt', outcome: 'accepted' }), 1);
    assert.equal(m.value('switchyard_shadow_requests_total', { op: 'update', origin: 'mqtt', outcome: 'rejected' }), 1);
    assert.equal(m.value('switchyard_shadow_requests_total', { op: 'get', origin: 'mqtt', outcome: 'rejected' }), 2);
    assert.equal(m.value('switchyard_shadow_rejections_total', { op: 'update', code: '409' }), 1);
    assert.equal(m.value('switchyard_shadow_rejections_total', { op: 'get', code: '429' }), 2);
    assert.equal(m.value('switchyard_shadow_rejections_total', { op: 'delete', code: 'other' }), 1);
    assert.equal(m.value('switchyard_shadow_throttled_total', { limit: 'rate' }), 1);
    assert.equal(m.value('switchyard_shadow_throttled_total', { limit: 'in_flight' }), 1);
    assert.equal(m.value('switchyard_shadow_throttled_total', { limit: 'queue' }), 1);
  });

  it('counts HTTP answers by method, route pattern and status, with bounded labels', async () => {
    const { metrics, scrape } = setup();
    metrics.observeHttp('GET', '/api/v1/devices/:uuid', 200);
    metrics.observeHttp('GET', '/api/v1/devices/:uuid', 200);
    metrics.observeHttp('GET', undefined, 404);
    metrics.observeHttp('BREW', undefined, 404);
    const m = await scrape();
    assert.equal(m.value('switchyard_http_requests_total', { method: 'GET', route: '/api/v1/devices/:uuid', status_code: '200' }), 2);
    assert.equal(m.value('switchyard_http_requests_total', { method: 'GET', route: 'unmatched', status_code: '404' }), 1);
    assert.equal(m.value('switchyard_http_requests_total', { method: 'other', route: 'unmatched', status_code: '404' }), 1);
  });

  it('renders broker gauges per broker and the process basics', async () => {
    const { scrape } = setup({ brokers: true });
    const m = await scrape();
    assert.equal(m.value('switchyard_broker_connected', { broker_id: '1', broker_name: 'broker-a' }), 1);
    assert.equal(m.value('switchyard_broker_connected', { broker_id: '2', broker_name: 'b "two"' }), 0);
    assert.equal(m.value('switchyard_broker_owner', { broker_id: '1', broker_name: 'broker-a' }), 1);
    assert.ok(m.value('switchyard_process_resident_memory_bytes')! > 1e6);
    assert.ok(m.value('switchyard_process_uptime_seconds')! > 0);
    assert.ok(m.value('switchyard_process_cpu_seconds_total')! > 0);
    assert.ok(m.value('switchyard_event_loop_active_seconds_total')! >= 0);
  });

  it('still answers when the database is down: its gauges are left out and each failed read is counted and logged', async () => {
    const { metrics, scrape, lines } = setup();
    metrics.observeMigration(migration(7, 'pending'));
    const first = await scrape();
    assert.equal(first.families.get('switchyard_migrations_open')?.samples.length, 0);
    assert.equal(first.families.get('switchyard_outbox_pending')?.samples.length, 0);
    for (const c of ['migrations_open', 'outbox']) {
      assert.equal(first.value('switchyard_metrics_collector_errors_total', { collector: c }), 1, c);
    }
    assert.ok(lines.some((l) => l.includes('scrape-time read failed') && l.includes('connection refused')));
    const second = await scrape(); // tried again at every scrape
    assert.equal(second.value('switchyard_metrics_collector_errors_total', { collector: 'migrations_open' }), 2);
    assert.equal(second.value('switchyard_migrations_started_total', { channel: 'shadow' }), 1);
  });
});
