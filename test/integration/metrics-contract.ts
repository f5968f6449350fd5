/**
 * `GET /metrics` on a whole server (PGlite + Aedes, PostgreSQL + Mosquitto): public, a valid Prometheus text
 * exposition line by line, and its counters move with real traffic — shadow requests over HTTP and MQTT, a broker
 * move completed by the device through the target broker, a superseded assignment, HTTP route patterns — while no
 * device uuid ever appears in it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestSwitchyard, type TestEnv } from '../helpers/switchyard.ts';
import { parseExposition, type Exposition } from '../helpers/prometheus.ts';
import { waitFor } from '../helpers/wait.ts';

export function metricsContract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`GET /metrics (${kind})`, { skip }, () => {
    let env: TestEnv;
    const uuids: string[] = [];
    before(async () => {
      env = await startTestSwitchyard(kind);
    });
    after(async () => {
      await env?.stop();
    });

    async function scrape(): Promise<{ m: Exposition; text: string }> {
      const res = await fetch(`${env.url}/metrics`); // no token: public like /healthz
      assert.equal(res.status, 200);
      assert.equal(res.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
      assert.equal(res.headers.get('cache-control'), 'no-store');
      const text = await res.text();
      return { m: parseExposition(text), text };
    }

    const stateBase = (uuid: string): string => `iot/device/${uuid}/shadow/name/device-state`;

    it('answers without a token with a valid exposition: HELP and TYPE per family, the brokers up, the process basics', async () => {
      const { m } = await scrape();
      for (const f of m.families.values()) {
        assert.match(f.name, /^switchyard_/);
        assert.ok(f.help.length > 0, `${f.name} has a HELP text`);
        if (f.type === 'counter') assert.match(f.name, /_total$/);
      }
      for (const b of env.brokers) {
        const labels = { broker_id: String(b.id), broker_name: b.name };
        assert.equal(m.value('switchyard_broker_connected', labels), 1, b.name);
        // Ownership (the broker's advisory lock) follows the connection by a moment: the only instance takes it.
        await waitFor(async () => (await scrape()).m.value('switchyard_broker_owner', labels) === 1, { message: `owner of ${b.name}` });
      }
      for (const status of ['pending', 'notified', 'migrating']) assert.equal(typeof m.value('switchyard_migrations_open', { status }), 'number', status);
      assert.equal(typeof m.value('switchyard_outbox_pending'), 'number');
      assert.ok(m.value('switchyard_process_resident_memory_bytes')! > 1e6);
      assert.equal(m.sum('switchyard_metrics_collector_errors_total'), 0);
    });

    it('counts shadow requests by op, origin and outcome (HTTP and MQTT), and HTTP answers by route pattern', async () => {
      const before = (await scrape()).m;
      const d = await env.createDevice();
      uuids.push(d.uuid);
      const path = `/api/v1/devices/${d.uuid}/shadows/config`;
      assert.equal((await env.api('POST', path, { state: { desired: { interval: 5 } } })).status, 200);
      assert.equal((await env.api('POST', path, { state: { desired: { interval: 6 } }, version: 999 })).status, 409);
      const client = await env.connectDevice(d, 0);
      await client.subscribe([`iot/device/${d.uuid}/shadow/name/config/#`]);
      const reply = await client.request(`iot/device/${d.uuid}/shadow/name/config`, 'update', { state: { reported: { interval: 5 } } });
      assert.match(reply.topic, /\/update\/accepted$/);
      await client.close();

      const after = (await scrape()).m;
      const delta = (name: string, labels: Record<string, string>): number => (after.value(name, labels) ?? 0) - (before.value(name, labels) ?? 0);
      assert.equal(delta('switchyard_shadow_requests_total', { op: 'update', origin: 'http', outcome: 'accepted' }), 1);
      assert.equal(delta('switchyard_shadow_requests_total', { op: 'update', origin: 'http', outcome: 'rejected' }), 1);
      assert.equal(delta('switchyard_shadow_requests_total', { op: 'update', origin: 'mqtt', outcome: 'accepted' }), 1);
      assert.equal(delta('switchyard_shadow_rejections_total', { op: 'update', code: '409' }), 1);
      const route = '/api/v1/devices/:uuid/shadows/:name';
      assert.equal(delta('switchyard_http_requests_total', { method: 'POST', route, status_code: '200' }), 1);
      assert.equal(delta('switchyard_http_requests_total', { method: 'POST', route, status_code: '409' }), 1);
      assert.ok(delta('switchyard_http_requests_total', { method: 'GET', route: '/metrics', status_code: '200' }) >= 1);
    });

    it('counts a move from request to completion with its duration, and a superseded assignment', async () => {
      const [a, b] = env.brokers;
      const before = (await scrape()).m;
      const d = await env.createDevice({ brokerIndex: 0 });
      uuids.push(d.uuid);
      const client = await env.connectDevice(d, 0);
      await client.subscribe([`${stateBase(d.uuid)}/#`]);
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b!.id });
      assert.equal(res.status, 200);
      const migrationId = res.body.migration.id;

      const during = (await scrape()).m;
      assert.equal((during.value('switchyard_migrations_started_total', { channel: 'shadow' }) ?? 0) - (before.value('switchyard_migrations_started_total', { channel: 'shadow' }) ?? 0), 1);
      assert.ok(during.sum('switchyard_migrations_open') >= 1, 'the move is open in the database');

      // The device moves: connected through the target broker completes the migration.
      await client.close();
      const onB = await env.connectDevice(d, 1);
      await onB.subscribe([`${stateBase(d.uuid)}/#`]);
      const done = await onB.request(stateBase(d.uuid), 'update', {
        state: { reported: { mqtt: { status: 'connected', brokerId: b!.id, previousBrokerId: a!.id, broker: res.body.broker.url, protocol: 'mqtt', host: b!.host, port: b!.port } } },
      });
      assert.match(done.topic, /\/update\/accepted$/);
      await waitFor(async () => (await env.api('GET', `/api/v1/migrations/${migrationId}`)).body.status === 'completed', { message: 'migration completed' });
      await onB.close();

      // Another device, assigned twice in a row: the first migration is superseded by the second.
      const e = await env.createDevice({ brokerIndex: 0 });
      uuids.push(e.uuid);
      assert.equal((await env.api('PUT', `/api/v1/devices/${e.uuid}/broker`, { brokerId: b!.id })).status, 200);
      assert.equal((await env.api('PUT', `/api/v1/devices/${e.uuid}/broker`, { brokerId: a!.id })).status, 200);

      const { m: after, text } = await scrape();
      const delta = (name: string, labels: Record<string, string>): number => (after.value(name, labels) ?? 0) - (before.value(name, labels) ?? 0);
      assert.equal(delta('switchyard_migrations_started_total', { channel: 'shadow' }), 3);
      assert.equal(delta('switchyard_migrations_finished_total', { status: 'completed', channel: 'shadow' }), 1);
      assert.equal(delta('switchyard_migrations_finished_total', { status: 'superseded', channel: 'shadow' }), 1);
      assert.equal(delta('switchyard_migrations_finished_total', { status: 'timed_out', channel: 'shadow' }), 0);
      assert.equal(delta('switchyard_migration_duration_seconds_count', { channel: 'shadow' }), 1);
      const took = delta('switchyard_migration_duration_seconds_sum', { channel: 'shadow' });
      assert.ok(took > 0 && took < 30, `duration ${took} s`);
      assert.equal(delta('switchyard_http_requests_total', { method: 'PUT', route: '/api/v1/devices/:uuid/broker', status_code: '200' }), 3);
      // Scraped again, nothing is counted twice.
      const again = (await scrape()).m;
      assert.equal(again.value('switchyard_migrations_finished_total', { status: 'superseded', channel: 'shadow' }), after.value('switchyard_migrations_finished_total', { status: 'superseded', channel: 'shadow' }));
      for (const uuid of uuids) assert.ok(!text.includes(uuid), `no device uuid in /metrics (${uuid})`);
      assert.ok(!text.includes(env.adminToken));
    });

    it('is listed in the OpenAPI document as a public probe', async () => {
      const doc = await env.api('GET', '/openapi.json', undefined, { token: null });
      const op = doc.body.paths['/metrics']?.get;
      assert.ok(op, '/metrics is documented');
      assert.deepEqual(op.security, []);
    });
  });
}
