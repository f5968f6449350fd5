/**
 * Device token rotation and deletion on the embedded stack (PGlite + two in-process Aedes brokers, provisioner
 * `embedded`): the brokers check every CONNECT against the registry, and the server drops the device's live
 * sessions itself — so the old token is refused on the API and on both brokers when the answer comes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { startTestSwitchyard, type TestEnv } from '../helpers/switchyard.ts';

describe('device credentials (embedded brokers)', { timeout: 120_000 }, () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestSwitchyard('embedded');
  });
  after(async () => {
    await env?.stop();
  });

  async function canLogin(brokerIndex: number, uuid: string, token: string): Promise<boolean> {
    const b = env.brokers[brokerIndex]!;
    try {
      const c = await mqtt.connectAsync(`mqtt://${b.host}:${b.port}`, { clientId: `${uuid}/probe`, username: uuid, password: token, reconnectPeriod: 0, connectTimeout: 5000 });
      await c.endAsync(true);
      return true;
    } catch {
      return false;
    }
  }

  function closedWithin(client: { client: mqtt.MqttClient }, ms: number, what: string): Promise<void> {
    if (!client.client.connected) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${what}: the session was not dropped within ${ms} ms`)), ms);
      client.client.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  it('rotates a token: the old one is refused on the API and on both brokers when the answer comes, live sessions are dropped', async () => {
    const d = await env.createDevice();
    const sessions = [await env.connectDevice(d, 0), await env.connectDevice(d, 1)];
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`, undefined, { token: d.token })).status, 200, 'cached by the auth hook now');
    const dropped = sessions.map((s, i) => closedWithin(s, 2000, `broker ${i + 1}`));

    const rotated = await env.api('POST', `/api/v1/devices/${d.uuid}/token`);
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    const fresh: string = rotated.body.token;
    assert.match(fresh, /^syd_/);
    assert.deepEqual(rotated.body.brokers, [], 'embedded brokers hold no accounts of their own');
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`, undefined, { token: d.token })).status, 401);
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`, undefined, { token: fresh })).status, 200);
    await Promise.all(dropped);
    for (const i of [0, 1]) {
      assert.equal(await canLogin(i, d.uuid, d.token), false, `broker ${i + 1} refuses the old token`);
      assert.equal(await canLogin(i, d.uuid, fresh), true, `broker ${i + 1} takes the new one`);
    }
    const audit = await env.sy.db.query<{ actor: string; details: unknown }>("SELECT actor, details FROM audit_log WHERE action = 'device.rotate_token' AND target_id = $1", [d.uuid]);
    assert.equal(audit.rows.length, 1);
    assert.ok(!JSON.stringify(audit.rows).includes(fresh) && !JSON.stringify(audit.rows).includes(d.token));
    const stored = await env.sy.db.query<{ token_enc: string }>('SELECT token_enc FROM devices WHERE uuid = $1', [d.uuid]);
    assert.match(stored.rows[0]!.token_enc, /^v1\./, 'the token is kept encrypted');
    assert.ok(!stored.rows[0]!.token_enc.includes(fresh.slice(4)));
  });

  it('answers 404 for an unknown device and 403 for a device token (even its own), changing nothing', async () => {
    const missing = await env.api('POST', '/api/v1/devices/no-such-device/token');
    assert.equal(missing.status, 404);
    assert.equal(missing.body.code, 'DEVICE_NOT_FOUND');
    const bad = await env.api('POST', '/api/v1/devices/bad%2Fuuid/token');
    assert.equal(bad.status, 400);
    const d = await env.createDevice();
    const self = await env.api('POST', `/api/v1/devices/${d.uuid}/token`, undefined, { token: d.token });
    assert.equal(self.status, 403);
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`, undefined, { token: d.token })).status, 200, 'the token still works');
    assert.ok(!JSON.stringify([missing.body, bad.body, self.body]).includes(d.token));
  });

  it('drops the live sessions of a deleted device and refuses its token everywhere', async () => {
    const d = await env.createDevice();
    const session = await env.connectDevice(d, 0);
    const dropped = closedWithin(session, 2000, 'broker 1');
    assert.equal((await env.api('DELETE', `/api/v1/devices/${d.uuid}`)).status, 204);
    await dropped;
    assert.equal(await canLogin(0, d.uuid, d.token), false);
    assert.equal(await canLogin(1, d.uuid, d.token), false);
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`, undefined, { token: d.token })).status, 401);
  });
});
