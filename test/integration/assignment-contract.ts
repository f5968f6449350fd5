/**
 * The server side of a broker move, with a device played by a plain MQTT client: the assignment
 * transaction, the notification through the broker the device is on, presence, and a migration row
 * that only the device's own report — through the target broker — completes.
 * Run against PGlite + Aedes and PostgreSQL + Mosquitto.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestSwitchyard, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

/** Reads `GET /events` as a stream of {event, data}. */
async function openEvents(url: string, token: string): Promise<{ events: Array<{ event: string; data: any }>; close(): void }> {
  const ctrl = new AbortController();
  const res = await fetch(url, { headers: { authorization: `Bearer ${token}` }, signal: ctrl.signal });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /text\/event-stream/);
  const events: Array<{ event: string; data: any }> = [];
  const reader = res.body!.getReader();
  let buf = '';
  void (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buf += Buffer.from(value).toString('utf8');
        let i: number;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const ev = /^event: (.*)$/m.exec(block)?.[1];
          const data = /^data: (.*)$/m.exec(block)?.[1];
          if (ev && data) events.push({ event: ev, data: JSON.parse(data) });
        }
      }
    } catch {
      // aborted by close()
    }
  })();
  return { events, close: () => ctrl.abort() };
}

export function assignmentContract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`broker assignment (${kind})`, { skip }, () => {
    let env: TestEnv;
    before(async () => {
      env = await startTestSwitchyard(kind, { env: { SWITCHYARD_MIGRATION_TIMEOUT_S: '3', SWITCHYARD_MIGRATION_SWEEP_MS: '200' } });
    });
    after(async () => {
      await env?.stop();
    });

    const stateBase = (uuid: string): string => `iot/device/${uuid}/shadow/name/device-state`;

    async function onlineDevice(brokerIndex = 0): Promise<{ uuid: string; token: string; client: DeviceClient }> {
      const d = await env.createDevice({ brokerIndex });
      const client = await env.connectDevice(d, brokerIndex);
      await client.subscribe([`${stateBase(d.uuid)}/#`]);
      await client.publish(`iot/device/${d.uuid}/status`, { state: 'online', brokerId: env.brokers[brokerIndex]!.id, at: new Date().toISOString() });
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}`)).body.online === true, { timeoutMs: 5000, message: 'presence online' });
      return { ...d, client };
    }

    function report(client: DeviceClient, uuid: string, mqtt: Record<string, unknown>) {
      return client.request(stateBase(uuid), 'update', { state: { reported: { mqtt } } });
    }

    it('assigns in one transaction, notifies through the current broker, and completes only on the device report through the target', async () => {
      const [a, b] = env.brokers;
      const d = await onlineDevice(0);
      const stream = await openEvents(`${env.url}/api/v1/events?types=migration`, env.adminToken);
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b!.id });
      assert.equal(res.status, 200);
      assert.equal(res.body.success, true);
      assert.equal(res.body.shadowUpdated, true);
      assert.equal(res.body.broker.id, b!.id);
      assert.equal(res.body.broker.url, `mqtt://${b!.host}:${b!.port}`);
      assert.ok(res.body.shadowVersion >= 1);
      assert.equal(res.body.migration.status, 'pending');
      const migrationId = res.body.migration.id;

      const delta = await d.client.waitFor((m) => m.topic === `${stateBase(d.uuid)}/update/delta`);
      assert.equal(delta.payload.state.mqtt.brokerId, b!.id);
      assert.equal(delta.payload.version, res.body.shadowVersion);
      await waitFor(async () => (await env.api('GET', `/api/v1/migrations/${migrationId}`)).body.status === 'notified', { message: 'notified' });

      // The device says it is moving, then claims "connected" — but through the OLD broker: not a completion.
      await report(d.client, d.uuid, { status: 'migrating', brokerId: a!.id, targetBrokerId: b!.id });
      assert.equal((await env.api('GET', `/api/v1/migrations/${migrationId}`)).body.status, 'migrating');
      await report(d.client, d.uuid, { status: 'connected', brokerId: b!.id });
      assert.equal((await env.api('GET', `/api/v1/migrations/${migrationId}`)).body.status, 'migrating');

      // The real thing: connected through B.
      await d.client.close();
      const onB = await env.connectDevice(d, 1);
      await onB.subscribe([`${stateBase(d.uuid)}/#`]);
      const done = await report(onB, d.uuid, { status: 'connected', brokerId: b!.id, previousBrokerId: a!.id, broker: res.body.broker.url, protocol: 'mqtt', host: b!.host, port: b!.port });
      assert.equal(done.topic, `${stateBase(d.uuid)}/update/accepted`);
      const m = (await env.api('GET', `/api/v1/migrations/${migrationId}`)).body;
      assert.equal(m.status, 'completed');
      assert.equal(m.fromBrokerId, a!.id);
      assert.equal(m.toBrokerId, b!.id);
      assert.ok(m.completedAt);
      const shadow = await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/device-state`);
      assert.equal(shadow.body.state.delta, undefined, 'reported caught up with desired');
      const seen = await waitFor(() => {
        const steps = stream.events.filter((e) => e.data.id === migrationId).map((e) => e.data.status);
        return steps.includes('completed') ? steps : null;
      }, { message: 'migration events' });
      assert.deepEqual(seen, ['pending', 'notified', 'migrating', 'completed']);
      stream.close();

      const again = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b!.id });
      assert.equal(again.status, 200);
      assert.equal(again.body.changed, false);
      assert.equal(again.body.shadowUpdated, false);
      assert.match(again.body.message, /already on broker/);
      const list = await env.api('GET', `/api/v1/devices/${d.uuid}/migrations`);
      assert.equal(list.body.total, 1);
    });

    it('publishes the whole desired.mqtt in the delta even where the device already reports it (assigned back mid-move)', async () => {
      const [a, b] = env.brokers;
      const d = await onlineDevice(0);
      const here = { brokerId: a!.id, broker: `mqtt://${a!.host}:${a!.port}`, protocol: 'mqtt', host: a!.host, port: a!.port };
      await report(d.client, d.uuid, { ...here, status: 'connected' });
      assert.equal((await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b!.id })).status, 200);
      await d.client.waitFor((m) => m.topic === `${stateBase(d.uuid)}/update/delta` && m.payload.state.mqtt.brokerId === b!.id);
      await report(d.client, d.uuid, { ...here, status: 'migrating', targetBrokerId: b!.id });
      // Back to A: desired.mqtt now equals what the device reports, leaf for leaf. AWS's delta would be empty.
      const back = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: a!.id });
      assert.equal(back.status, 200);
      const delta = await d.client.waitFor((m) => m.topic === `${stateBase(d.uuid)}/update/delta` && m.payload.version === back.body.shadowVersion);
      assert.deepEqual(delta.payload.state.mqtt, here);
      assert.deepEqual(Object.keys(delta.payload.metadata.mqtt).sort(), Object.keys(here).sort());
      await d.client.close();
    });

    it('refuses bad assignments with specific errors and changes nothing', async () => {
      const d = await env.createDevice();
      const cases: Array<[unknown, number, string]> = [
        [{}, 400, 'VALIDATION_FAILED'],
        [{ brokerId: '2' }, 400, 'VALIDATION_FAILED'],
        [{ brokerId: 0 }, 400, 'VALIDATION_FAILED'],
        [{ brokerId: 1.5 }, 400, 'VALIDATION_FAILED'],
        [{ brokerId: 999_999 }, 404, 'BROKER_NOT_FOUND'],
      ];
      for (const [body, status, code] of cases) {
        const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, body);
        assert.equal(res.status, status, JSON.stringify(body));
        assert.equal(res.body.code, code);
      }
      const missing = await env.api('PUT', '/api/v1/devices/no-such-device/broker', { brokerId: env.brokers[0]!.id });
      assert.equal(missing.status, 404);
      assert.equal(missing.body.code, 'DEVICE_NOT_FOUND');
      const drained = await env.api('POST', '/api/v1/brokers', { name: `draining-${d.uuid}`, protocol: 'mqtt', host: '127.0.0.1', port: 9, status: 'draining' });
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: drained.body.id });
      assert.equal(res.status, 409);
      assert.equal(res.body.code, 'BROKER_NOT_ACTIVE');
      const list = await env.api('GET', `/api/v1/devices/${d.uuid}/migrations`);
      assert.equal(list.body.total, 0);
      assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/device-state`)).status, 404);
    });

    it('supersedes open migrations: A→B→A→B leaves one open row', async () => {
      const [a, b] = env.brokers;
      const d = await onlineDevice(0);
      const ids: number[] = [];
      for (const target of [b, a, b]) {
        const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: target!.id });
        assert.equal(res.status, 200);
        ids.push(res.body.migration.id);
      }
      const rows = (await env.api('GET', `/api/v1/devices/${d.uuid}/migrations`)).body.items;
      const byId = new Map(rows.map((r: any) => [r.id, r.status]));
      assert.equal(byId.get(ids[0]), 'superseded');
      assert.equal(byId.get(ids[1]), 'superseded');
      assert.notEqual(byId.get(ids[2]), 'superseded');
      const filtered = await env.api('GET', `/api/v1/migrations?status=superseded&deviceUuid=${d.uuid}`);
      assert.equal(filtered.body.total, 2);
    });

    it('times out an assignment the device never completes', async () => {
      const d = await onlineDevice(0);
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id });
      const id = res.body.migration.id;
      const m = await waitFor(
        async () => {
          const row = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
          return row.status === 'timed_out' ? row : null;
        },
        { timeoutMs: 10_000, intervalMs: 200, message: 'timed_out' },
      );
      assert.match(m.error, /did not report/);
      assert.ok(m.finishedAt);
    });

    it('serves the device its config with an ETag, and 304 when unchanged', async () => {
      const d = await env.createDevice();
      const other = await env.createDevice();
      const res = await env.api('GET', `/api/v1/devices/${d.uuid}/config`, undefined, { token: d.token });
      assert.equal(res.status, 200);
      assert.equal(res.body.mqtt.brokerId, env.brokers[0]!.id);
      const etag = res.headers.get('etag')!;
      assert.ok(etag);
      const same = await fetch(`${env.url}/api/v1/devices/${d.uuid}/config`, { headers: { authorization: `Bearer ${d.token}`, 'if-none-match': etag } });
      assert.equal(same.status, 304);
      assert.equal(await same.text(), '');
      const forbidden = await env.api('GET', `/api/v1/devices/${d.uuid}/config`, undefined, { token: other.token });
      assert.equal(forbidden.status, 403);
      await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id });
      const changed = await fetch(`${env.url}/api/v1/devices/${d.uuid}/config`, { headers: { authorization: `Bearer ${d.token}`, 'if-none-match': etag } });
      assert.equal(changed.status, 200);
      assert.equal(((await changed.json()) as any).mqtt.brokerId, env.brokers[1]!.id);
    });

    it('ignores a status that names another broker, and an offline will from a broker the device left', async () => {
      const [a, b] = env.brokers;
      const d = await onlineDevice(0);
      await d.client.publish(`iot/device/${d.uuid}/status`, { state: 'online', brokerId: b!.id });
      await d.client.publish(`iot/device/${d.uuid}/status`, { state: 'offline', brokerId: 424242 });
      const onB = await env.connectDevice({ uuid: d.uuid, token: d.token }, 1);
      {
        await onB.subscribe([`iot/device/${d.uuid}/shadow/name/probe/#`]);
        await onB.publish(`iot/device/${d.uuid}/status`, { state: 'online', brokerId: b!.id });
        await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}`)).body.connectedBrokerId === b!.id, { message: 'on B' });
        // A late offline from A must not mark the device offline.
        const watcher = await env.connectDevice({ uuid: d.uuid, token: d.token }, 0);
        await watcher.publish(`iot/device/${d.uuid}/status`, { state: 'offline', brokerId: a!.id });
        await onB.request(`iot/device/${d.uuid}/shadow/name/probe`, 'get'); // a round trip after the status
        const dev = (await env.api('GET', `/api/v1/devices/${d.uuid}`)).body;
        assert.equal(dev.online, true);
        assert.equal(dev.connectedBrokerId, b!.id);
      }
    });
  });
}
