/**
 * One shadow-service suite, run against every implementation pair:
 * PGlite + Aedes (shadow.embedded.test.ts) and PostgreSQL + Mosquitto (shadow.postgres.test.ts).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestSwitchyard, type TestEnv, type DeviceClient } from '../helpers/switchyard.ts';

export function shadowContract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`shadow service (${kind})`, { skip }, () => {
    let env: TestEnv;
    before(async () => {
      // Per-device limits off: one test sends 120 concurrent requests for one device (serialisation, not
      // throttling, is under test here; test/integration/device-limits.test.ts covers the limits).
      env = await startTestSwitchyard(kind, { env: { SWITCHYARD_DEVICE_RATE_LIMIT: '0', SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '0' } });
    });
    after(async () => {
      await env?.stop();
    });

    async function device(): Promise<{ uuid: string; token: string; client: DeviceClient; base: (name?: string) => string }> {
      const d = await env.createDevice();
      const client = await env.connectDevice(d);
      await client.subscribe([`iot/device/${d.uuid}/shadow/#`]);
      const base = (name = 'config'): string => (name === '' ? `iot/device/${d.uuid}/shadow` : `iot/device/${d.uuid}/shadow/name/${name}`);
      return { ...d, client, base };
    }

    it('rejects a get of a missing shadow with 404 and echoes the clientToken', async () => {
      const d = await device();
      const reply = await d.client.request(d.base(), 'get');
      assert.equal(reply.topic, `${d.base()}/get/rejected`);
      assert.equal(reply.payload.code, 404);
      assert.match(reply.payload.message, /No shadow exists with name/);
      assert.equal(typeof reply.payload.timestamp, 'number');
    });

    it('accepts a reported update, publishes documents, and serves it over HTTP', async () => {
      const d = await device();
      const reply = await d.client.request(d.base(), 'update', { state: { reported: { fw: '1.0.0', temp: 21 } } });
      assert.equal(reply.topic, `${d.base()}/update/accepted`);
      assert.equal(reply.payload.version, 1);
      assert.deepEqual(reply.payload.state, { reported: { fw: '1.0.0', temp: 21 } });
      assert.equal(typeof reply.payload.metadata.reported.fw.timestamp, 'number');
      const docs = await d.client.waitFor((m) => m.topic === `${d.base()}/update/documents`);
      assert.equal(docs.payload.previous, null);
      assert.equal(docs.payload.current.version, 1);
      const http = await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/config`);
      assert.equal(http.status, 200);
      assert.deepEqual(http.body.state, { reported: { fw: '1.0.0', temp: 21 } });
      assert.equal(http.body.version, 1);
    });

    it('publishes a delta to the device when desired changes over HTTP', async () => {
      const d = await device();
      await d.client.request(d.base(), 'update', { state: { reported: { led: 'off' } } });
      const res = await env.api('POST', `/api/v1/devices/${d.uuid}/shadows/config`, { state: { desired: { led: 'on' } } });
      assert.equal(res.status, 200);
      assert.equal(res.body.version, 2);
      const delta = await d.client.waitFor((m) => m.topic === `${d.base()}/update/delta`);
      assert.deepEqual(delta.payload.state, { led: 'on' });
      assert.equal(delta.payload.version, 2);
      const get = await d.client.request(d.base(), 'get');
      assert.deepEqual(get.payload.state.delta, { led: 'on' });
      // The device catches up: the delta disappears.
      await d.client.request(d.base(), 'update', { state: { reported: { led: 'on' } } });
      const get2 = await d.client.request(d.base(), 'get');
      assert.equal(get2.payload.state.delta, undefined);
      assert.equal(get2.payload.version, 3);
    });

    it('rejects a stale version with 409 and changes nothing', async () => {
      const d = await device();
      await d.client.request(d.base(), 'update', { state: { reported: { a: 1 } } });
      const conflict = await d.client.request(d.base(), 'update', { state: { reported: { a: 2 } }, version: 7 });
      assert.equal(conflict.topic, `${d.base()}/update/rejected`);
      assert.equal(conflict.payload.code, 409);
      assert.equal(conflict.payload.message, 'Version conflict');
      const ok = await d.client.request(d.base(), 'update', { state: { reported: { a: 3 } }, version: 1 });
      assert.equal(ok.payload.version, 2);
      const http = await env.api('POST', `/api/v1/devices/${d.uuid}/shadows/config`, { state: { reported: { a: 4 } }, version: 1 });
      assert.equal(http.status, 409);
      assert.equal(http.body.code, 'SHADOW_VERSION_CONFLICT');
    });

    it('serves the classic shadow beside named ones and lists the names', async () => {
      const d = await device();
      const classic = await d.client.request(d.base(''), 'update', { state: { reported: { on: true } } });
      assert.equal(classic.topic, `${d.base('')}/update/accepted`);
      await d.client.request(d.base('a'), 'update', { state: { reported: { x: 1 } } });
      await d.client.request(d.base('b'), 'update', { state: { reported: { x: 2 } } });
      const http = await env.api('GET', `/api/v1/devices/${d.uuid}/shadow`);
      assert.deepEqual(http.body.state, { reported: { on: true } });
      const names = await env.api('GET', `/api/v1/devices/${d.uuid}/shadows`);
      assert.deepEqual(names.body.results, ['a', 'b']);
    });

    it('deletes a shadow and keeps its version numbering', async () => {
      const d = await device();
      await d.client.request(d.base(), 'update', { state: { reported: { a: 1 } } });
      await d.client.request(d.base(), 'update', { state: { reported: { a: 2 } } });
      const del = await d.client.request(d.base(), 'delete');
      assert.equal(del.topic, `${d.base()}/delete/accepted`);
      assert.equal(del.payload.version, 2);
      const get = await d.client.request(d.base(), 'get');
      assert.equal(get.payload.code, 404);
      const again = await d.client.request(d.base(), 'update', { state: { reported: { a: 3 } } });
      assert.equal(again.payload.version, 3);
      const httpDel = await env.api('DELETE', `/api/v1/devices/${d.uuid}/shadows/config`);
      assert.equal(httpDel.status, 200);
      const missing = await env.api('DELETE', `/api/v1/devices/${d.uuid}/shadows/config`);
      assert.equal(missing.status, 404);
      assert.equal(missing.body.code, 'SHADOW_NOT_FOUND');
    });

    it('rejects a device write of desired.mqtt with 403', async () => {
      const d = await device();
      const reply = await d.client.request(d.base('device-state'), 'update', { state: { desired: { mqtt: { brokerId: 9 } } } });
      assert.equal(reply.payload.code, 403);
      const http = await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/device-state`);
      assert.equal(http.status, 404);
    });

    it('rejects malformed documents with the AWS code and message', async () => {
      const d = await device();
      const cases: Array<[string, number, RegExp]> = [
        ['{not json', 400, /Invalid JSON/],
        ['{"clientToken":"x"}', 400, /Missing required node: state/],
        ['{"state":[]}', 400, /State node must be an object/],
        ['{"state":{"delta":{"a":1}}}', 400, /invalid node/],
        ['{"state":{"reported":{"a":1}},"version":"x"}', 400, /Invalid version/],
      ];
      for (const [payload, code, message] of cases) {
        const wait = d.client.waitFor((m) => m.topic === `${d.base()}/update/rejected` && m.payload.code === code && message.test(m.payload.message), 5000, payload);
        await d.client.publish(`${d.base()}/update`, payload);
        await wait;
      }
      const http = await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/config`);
      assert.equal(http.status, 404, 'no malformed request created the shadow');
      const raw = await env.api('POST', `/api/v1/devices/${d.uuid}/shadows/config`, undefined, { raw: '{"state":' });
      assert.equal(raw.status, 400);
      assert.equal(raw.body.code, 'INVALID_JSON');
      const big = await env.api('POST', `/api/v1/devices/${d.uuid}/shadows/config`, { state: { reported: { blob: 'x'.repeat(9000) } } });
      assert.equal(big.status, 413);
      assert.equal(big.body.code, 'PAYLOAD_TOO_LARGE');
    });

    it('answers 404 Thing not found for an unregistered device over HTTP', async () => {
      const res = await env.api('GET', '/api/v1/devices/nobody-here/shadows/config');
      assert.equal(res.status, 404);
      assert.equal(res.body.code, 'DEVICE_NOT_FOUND');
    });

    it("publishes a device's replies in the order its updates were applied, each documents message with its own before and after", async () => {
      // Replies leave after their batch's commit, at the end of the turn (shadow.service.ts, replySoon): in order.
      const d = await device();
      const n = 60;
      const replies = await Promise.all(Array.from({ length: n }, (_, i) => d.client.request(d.base('ordered'), 'update', { state: { reported: { i } } }, 15_000)));
      assert.deepEqual(replies.map((r) => r.payload.version), Array.from({ length: n }, (_, i) => i + 1));
      const accepted = d.client.messages.filter((m) => m.topic === `${d.base('ordered')}/update/accepted`).map((m) => m.payload.version);
      assert.deepEqual(accepted, Array.from({ length: n }, (_, i) => i + 1), 'accepted messages arrived in version order');
      await d.client.waitFor((m) => m.topic === `${d.base('ordered')}/update/documents` && m.payload.current.version === n);
      const documents = d.client.messages.filter((m) => m.topic === `${d.base('ordered')}/update/documents`).map((m) => m.payload);
      assert.deepEqual(documents.map((m) => m.current.version), Array.from({ length: n }, (_, i) => i + 1));
      // Each documents message carries the state before and after its own update, whatever the batch it was in.
      documents.forEach((m, i) => {
        assert.deepEqual(m.previous?.state.reported ?? null, i === 0 ? null : { i: i - 1 });
        assert.deepEqual(m.current.state.reported, { i });
      });
    });

    it('applies concurrent updates one at a time, each version exactly once', async () => {
      const d = await device();
      const n = 120;
      const versions = new Set<number>();
      const mqttReplies = Array.from({ length: n / 2 }, (_, i) => d.client.request(d.base(), 'update', { state: { reported: { [`k${i % 7}`]: i } } }, 15_000));
      const httpReplies = Array.from({ length: n / 2 }, (_, i) => env.api('POST', `/api/v1/devices/${d.uuid}/shadows/config`, { state: { desired: { [`h${i % 5}`]: i } } }));
      for (const r of await Promise.all(mqttReplies)) {
        assert.equal(r.topic, `${d.base()}/update/accepted`);
        versions.add(r.payload.version);
      }
      for (const r of await Promise.all(httpReplies)) {
        assert.equal(r.status, 200);
        versions.add(r.body.version);
      }
      assert.equal(versions.size, n, 'every update got its own version');
      assert.deepEqual([...versions].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i + 1));
      const final = await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/config`);
      assert.equal(final.body.version, n);
    });
  });
}
