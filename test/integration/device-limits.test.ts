/**
 * Issue 5, limits: one noisy device cannot slow the others (PostgreSQL + Mosquitto, default limits: 20 requests/s
 * per device with a burst of 20, at most 10 in flight).
 *
 * A device that floods the shadow service with 500 requests at once gets most of them answered 429 at once (each
 * echoing its clientToken), while a quiet device's requests, sent during the flood, are all accepted, correctly
 * and promptly. The same holds over HTTP with a device token (operators are not limited per device) and for jobs
 * requests over MQTT (`RequestThrottled`).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

const { skip } = realServers(['postgres', 'mosquitto']);

describe('per-device limits (PostgreSQL + Mosquitto, defaults)', { skip, timeout: 120_000 }, () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestSwitchyard('postgres', { brokers: 1 });
  });
  after(async () => {
    await env?.stop();
  });

  async function device(filters: (uuid: string) => string[]): Promise<{ uuid: string; token: string; client: DeviceClient }> {
    const d = await env.createDevice();
    const client = await env.connectDevice(d);
    await client.subscribe(filters(d.uuid));
    return { ...d, client };
  }

  it('answers a flood of 500 shadow updates with 429s beyond the limits while a quiet device is served promptly', async () => {
    const shadowReplies = (u: string) => [`iot/device/${u}/shadow/name/+/update/accepted`, `iot/device/${u}/shadow/name/+/update/rejected`, `iot/device/${u}/shadow/name/+/get/+`];
    const noisy = await device(shadowReplies);
    const quiet = await device(shadowReplies);
    const noisyBase = `iot/device/${noisy.uuid}/shadow/name/flood`;
    const quietBase = `iot/device/${quiet.uuid}/shadow/name/calm`;
    const statsBefore = env.sy.shadows.limiterStats();

    const started = Date.now();
    const tokens = Array.from({ length: 500 }, (_, i) => `n${i}`);
    // All 500 leave the client without waiting for PUBACKs.
    const flood = Promise.all(tokens.map((clientToken, i) => noisy.client.publish(`${noisyBase}/update`, { state: { reported: { i } }, clientToken })));

    // Meanwhile the quiet device works one request after another; each must be accepted, correctly and promptly.
    const latencies: number[] = [];
    for (let i = 1; i <= 5; i++) {
      const t0 = Date.now();
      const upd = await quiet.client.request(quietBase, 'update', { state: { reported: { step: i } } }, 10_000);
      latencies.push(Date.now() - t0);
      assert.equal(upd.topic, `${quietBase}/update/accepted`, JSON.stringify(upd.payload));
      assert.equal(upd.payload.version, i);
    }
    const get = await quiet.client.request(quietBase, 'get', {}, 10_000);
    assert.equal(get.topic, `${quietBase}/get/accepted`);
    assert.deepEqual(get.payload.state.reported, { step: 5 });
    // Generous bound (a shared, loaded machine): without the in-flight bound the quiet device's requests would
    // queue behind up to 500 of the noisy device's in the same lane.
    assert.ok(Math.max(...latencies) < 3000, `quiet device latencies ${latencies.join(', ')} ms`);

    await flood;
    const replies = () => noisy.client.messages.filter((m) => m.topic.startsWith(`${noisyBase}/update/`));
    await waitFor(() => replies().length >= 500, { timeoutMs: 20_000, message: '500 replies to the noisy device' });
    const elapsedS = (Date.now() - started) / 1000;
    await sleep(200); // no reply may come twice
    const got = replies();
    assert.equal(got.length, 500, 'every request is answered exactly once');
    assert.deepEqual(got.map((m) => m.payload.clientToken).sort(), [...tokens].sort());
    const accepted = got.filter((m) => m.topic.endsWith('/accepted'));
    const rejected = got.filter((m) => m.topic.endsWith('/rejected'));
    assert.ok(rejected.length > 0, 'some requests are refused');
    for (const r of rejected) {
      assert.equal(r.payload.code, 429);
      assert.equal(r.payload.message, 'Too many requests');
      assert.equal(typeof r.payload.timestamp, 'number');
    }
    // Never more than the burst plus the rate over the time the flood took.
    assert.ok(accepted.length >= 1 && accepted.length <= 20 + Math.ceil(20 * elapsedS), `${accepted.length} accepted in ${elapsedS.toFixed(2)} s`);
    // Every accepted update was applied once: the versions are exactly 1..n.
    assert.deepEqual(accepted.map((m) => m.payload.version).sort((a, b) => a - b), accepted.map((_, i) => i + 1));
    const stored = await env.api('GET', `/api/v1/devices/${noisy.uuid}/shadows/flood`);
    assert.equal(stored.body.version, accepted.length);
    const stats = env.sy.shadows.limiterStats();
    assert.ok(stats.refusedInFlight - statsBefore.refusedInFlight > 0, 'the in-flight bound refused some requests');
    assert.equal(stats.refusedRate + stats.refusedInFlight - statsBefore.refusedRate - statsBefore.refusedInFlight, rejected.length);

    // After a quiet second the noisy device is served again.
    await sleep(1100);
    const again = await noisy.client.request(noisyBase, 'update', { state: { reported: { again: true } } }, 10_000);
    assert.equal(again.topic, `${noisyBase}/update/accepted`);
  });

  it('answers 429 TOO_MANY_REQUESTS over HTTP to a device token beyond its limits, never to an operator', async () => {
    const d = await env.createDevice();
    const path = `/api/v1/devices/${d.uuid}/shadows/http`;
    const asDevice = await Promise.all(Array.from({ length: 60 }, (_, i) => env.api('POST', path, { state: { reported: { i } } }, { token: d.token })));
    const statuses = asDevice.map((r) => r.status);
    assert.deepEqual([...new Set(statuses)].sort(), [200, 429], `statuses ${statuses.join(',')}`);
    for (const r of asDevice.filter((x) => x.status === 429)) {
      assert.deepEqual(r.body, { error: 'Too Many Requests', message: 'Too many requests', code: 'TOO_MANY_REQUESTS' });
      assert.equal(r.headers.get('retry-after'), '1', 'the limits are per second: try again in one');
    }
    const ok = statuses.filter((s) => s === 200).length;
    assert.equal((await env.api('GET', path)).body.version, ok, 'refused requests changed nothing');

    const asAdmin = await Promise.all(Array.from({ length: 60 }, (_, i) => env.api('POST', path, { state: { desired: { i } } })));
    assert.deepEqual([...new Set(asAdmin.map((r) => r.status))], [200]);
    assert.equal((await env.api('GET', path)).body.version, ok + 60);
  });

  it('throttles a flood of jobs requests with RequestThrottled while a quiet device is answered', async () => {
    const noisy = await device((u) => [`iot/device/${u}/jobs/get/+`]);
    const quiet = await device((u) => [`iot/device/${u}/jobs/get/+`]);
    const n = 200;
    await Promise.all(Array.from({ length: n }, (_, i) => noisy.client.publish(`iot/device/${noisy.uuid}/jobs/get`, { clientToken: `j${i}` })));
    const quietReply = await quiet.client.request(`iot/device/${quiet.uuid}/jobs`, 'get', {}, 10_000);
    assert.equal(quietReply.topic, `iot/device/${quiet.uuid}/jobs/get/accepted`);
    assert.deepEqual(quietReply.payload.queuedJobs, []);

    const replies = () => noisy.client.messages.filter((m) => m.topic.startsWith(`iot/device/${noisy.uuid}/jobs/get/`));
    await waitFor(() => replies().length >= n, { timeoutMs: 20_000, message: `${n} jobs replies` });
    const throttled = replies().filter((m) => m.topic.endsWith('/rejected'));
    assert.ok(throttled.length > 0 && throttled.length < n, `${throttled.length} of ${n} throttled`);
    for (const r of throttled) {
      assert.equal(r.payload.code, 'RequestThrottled');
      assert.match(r.payload.message, /retry later/);
      assert.match(r.payload.clientToken, /^j\d+$/);
    }
  });
});
