/**
 * Per-device isolation over MQTT, on the embedded Aedes brokers and on Mosquitto with dynamic security (one
 * suite, two stacks). Device A attacks device B and the server's topics; each attempt must be refused AND change
 * nothing of B (shadows, presence, migrations).
 *
 * Under MQTT 3.1.1 a PUBACK proves nothing (Mosquitto acknowledges a denied publish and drops it; Aedes closes the
 * connection), so every "refused" is proven by what did not happen, next to a positive control that shows the same
 * check would have seen it: a witness subscribed to the victim's topics (B itself, or the server's own account)
 * receives the genuine message that follows and never the attacker's; B's own update changes its version where A's
 * did not; A's own status changes A's presence where the spoof of B's did not.
 */
import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { loadOrCreateSecretKey } from '../../packages/server/src/crypto/secret-box.ts';
import { EMBEDDED_SERVER_USERNAME, embeddedServerPassword } from '../../packages/server/src/embedded/embedded-auth.ts';
import { startTestSwitchyard, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';
import { startDynsecSwitchyard, type DynsecEnv } from '../helpers/dynsec-switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

export type IsolationStack = 'embedded' | 'dynsec';

const MARK = 'spoofed-by-device-A';
/** Time for a message that slipped through to arrive somewhere, after the round trip that follows it. */
const SETTLE_MS = 300;

export function isolationContract(stack: IsolationStack, skip: string | false): void {
  describe(`MQTT isolation between devices (${stack})`, { skip, timeout: 180_000 }, () => {
    let env: TestEnv;
    let serverAccount: { username: string; password: string };
    const open: MqttClient[] = [];
    let a: { uuid: string; token: string };
    let b: { uuid: string; token: string; client: DeviceClient };

    before(async () => {
      if (stack === 'embedded') {
        env = await startTestSwitchyard('embedded');
        const key = await loadOrCreateSecretKey({ dataDir: env.dataDir });
        serverAccount = { username: EMBEDDED_SERVER_USERNAME, password: embeddedServerPassword(key) };
      } else {
        const d: DynsecEnv = await startDynsecSwitchyard();
        env = d;
        serverAccount = d.dynsec[0]!.server;
      }
    });
    after(async () => {
      await Promise.all(open.map((c) => c.endAsync(true).catch(() => undefined)));
      await env?.stop();
    });

    const broker0 = (): { host: string; port: number; id: number } => env.brokers[0]!;
    const stateBase = (uuid: string, ns: 'iot' | 'aws' = 'iot'): string =>
      `${ns === 'iot' ? `iot/device/${uuid}` : `$aws/things/${uuid}`}/shadow/name/device-state`;

    async function connect(o: { clientId: string; username: string; password: string }): Promise<MqttClient> {
      const c = await mqtt.connectAsync(`mqtt://${broker0().host}:${broker0().port}`, { ...o, reconnectPeriod: 0, protocolVersion: 4, connectTimeout: 5000 });
      c.on('error', () => undefined); // refusals are asserted on, not thrown into the void
      open.push(c);
      return c;
    }
    const asA = (clientId = a.uuid): Promise<MqttClient> => connect({ clientId, username: a.uuid, password: a.token });

    /** A witness with the server's own account, recording every message on `filters`. */
    async function witness(filters: string[]): Promise<{ seen: Array<{ topic: string; body: string }>; close(): Promise<void> }> {
      const c = await connect({ clientId: `witness-${Date.now()}-${Math.random().toString(36).slice(2)}`, ...serverAccount });
      const seen: Array<{ topic: string; body: string }> = [];
      c.on('message', (topic, payload) => seen.push({ topic, body: payload.toString('utf8') }));
      await c.subscribeAsync(filters, { qos: 1 });
      return { seen, close: () => c.endAsync(true) };
    }

    /** What an attack on B must leave alone. */
    async function snapshotB(): Promise<unknown> {
      const shadows = await env.sy.db.query('SELECT shadow_name, desired, reported, version, deleted FROM device_shadows WHERE device_uuid = $1 ORDER BY shadow_name', [b.uuid]);
      const presence = await env.sy.db.query('SELECT online, connected_broker_id FROM devices WHERE uuid = $1', [b.uuid]);
      const migrations = await env.sy.db.query('SELECT id, status, to_broker_id FROM broker_migrations WHERE device_uuid = $1 ORDER BY id', [b.uuid]);
      return { shadows: shadows.rows, presence: presence.rows, migrations: migrations.rows };
    }

    /** A's own shadow get, answered: the server has handled what A sent before (same connection order), and A is let in. */
    async function roundTripAsA(): Promise<void> {
      const c = await asA();
      const reply = new Promise<string>((resolve) => c.on('message', (topic) => resolve(topic)));
      await c.subscribeAsync([`${stateBase(a.uuid)}/get/accepted`, `${stateBase(a.uuid)}/get/rejected`], { qos: 1 });
      await c.publishAsync(`${stateBase(a.uuid)}/get`, JSON.stringify({ clientToken: 'rt' }), { qos: 1 });
      assert.match(await Promise.race([reply, sleep(5000).then(() => 'timeout')]), /\/get\/(accepted|rejected)$/, 'A is answered');
      await c.endAsync(true);
    }

    /** Publishes as A (a fresh connection: Aedes closes it on a denied publish), then proves the server is past it. */
    async function publishAsA(topic: string, body: unknown): Promise<void> {
      const c = await asA();
      await new Promise<void>((resolve) => c.publish(topic, JSON.stringify(body), { qos: 0 }, () => resolve()));
      await sleep(20);
      await c.endAsync(true).catch(() => undefined);
      await roundTripAsA();
      await sleep(SETTLE_MS);
    }

    beforeEach(async () => {
      a = await env.createDevice();
      const dB = await env.createDevice();
      const client = await env.connectDevice(dB, 0);
      await client.subscribe([`iot/device/${dB.uuid}/#`, `$aws/things/${dB.uuid}/#`]);
      await client.publish(`iot/device/${dB.uuid}/status`, { state: 'online', brokerId: broker0().id, at: new Date().toISOString() });
      await client.request(stateBase(dB.uuid), 'update', { state: { reported: { app: 'b' } } });
      b = { ...dB, client };
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${dB.uuid}`)).body.online === true, { message: 'B online' });
    });

    it("refuses A's subscriptions to B's topics, and B's messages never reach A", async () => {
      const before = await snapshotB();
      const c = await asA();
      const got: string[] = [];
      c.on('message', (topic) => got.push(topic));
      for (const filter of [
        `iot/device/${b.uuid}/#`,
        `${stateBase(b.uuid)}/update/delta`,
        `$aws/things/${b.uuid}/shadow/name/device-state/update/delta`,
        `iot/device/+/status`,
        `iot/device/+/shadow/name/device-state/update/delta`,
        '#',
        '$aws/things/+/shadow/#',
      ]) {
        const granted = await c.subscribeAsync(filter, { qos: 1 }).then(
          (g) => g.map((x) => x.qos),
          () => [0x80],
        );
        assert.deepEqual(granted, [0x80], `SUBACK for ${filter}`);
      }
      // Positive control: the genuine delta for B reaches B; then A has had every chance to see it.
      const res = await env.api('POST', `/api/v1/devices/${b.uuid}/shadows/device-state`, { state: { desired: { app: 'probe-1' } } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await b.client.waitFor((m) => m.topic === `${stateBase(b.uuid)}/update/delta` && m.payload?.state?.app === 'probe-1', 5000, 'delta at B');
      await sleep(SETTLE_MS);
      assert.deepEqual(got, [], 'A received nothing of B');
      const afterProbe = (await snapshotB()) as { shadows: Array<{ version: number }> };
      assert.notDeepEqual(afterProbe, before, 'the control changed B (the snapshot sees changes)');
    });

    it("drops A's publishes on B's shadow, status and jobs topics: B is unchanged", async () => {
      const before = await snapshotB();
      b.client.messages.length = 0;
      const attacks: Array<[string, unknown]> = [
        [`${stateBase(b.uuid)}/update`, { state: { reported: { app: MARK } } }],
        [`iot/device/${b.uuid}/shadow/update`, { state: { reported: { app: MARK } } }],
        [`${stateBase(b.uuid, 'aws')}/update`, { state: { reported: { app: MARK } } }],
        [`$aws/things/${b.uuid}/shadow/update`, { state: { desired: { app: MARK } } }],
        [`${stateBase(b.uuid)}/delete`, { clientToken: MARK }],
        [`iot/device/${b.uuid}/status`, { state: 'offline', brokerId: broker0().id, at: new Date().toISOString() }],
        [`iot/device/${b.uuid}/jobs/start-next`, { clientToken: MARK }],
        [`iot/device/${b.uuid}/command/broker-change/ack`, { commandId: MARK, status: 'completed' }],
      ];
      for (const [topic, body] of attacks) await publishAsA(topic, body);
      assert.deepEqual(await snapshotB(), before, "B's shadows, presence and migrations are unchanged");
      assert.ok(!b.client.messages.some((m) => m.raw.toString('utf8').includes(MARK)), 'nothing of the attack reached B');

      // Positive controls: the same requests from their owners do change things.
      await b.client.request(stateBase(b.uuid), 'update', { state: { reported: { app: 'b2' } } });
      assert.notDeepEqual(await snapshotB(), before, "B's own update changes B");
      const ownStatus = await asA();
      await ownStatus.publishAsync(`iot/device/${a.uuid}/status`, JSON.stringify({ state: 'online', brokerId: broker0().id, at: new Date().toISOString() }), { qos: 1 });
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${a.uuid}`)).body.online === true, { message: "A's own status is taken" });
      await ownStatus.endAsync(true);
    });

    it('never delivers what A publishes on server→device topics, even its own', async () => {
      const w = await witness([`iot/device/${a.uuid}/#`, `$aws/things/${a.uuid}/#`, `iot/device/${b.uuid}/#`]);
      const own = (ns: 'iot' | 'aws'): string => stateBase(a.uuid, ns);
      const spoofs = [
        `${own('iot')}/update/delta`,
        `${own('iot')}/update/accepted`,
        `${own('iot')}/update/documents`,
        `${own('iot')}/get/accepted`,
        `iot/device/${a.uuid}/shadow/update/delta`,
        `iot/device/${a.uuid}/command/broker-change`,
        `iot/device/${a.uuid}/jobs/notify-next`,
        `iot/device/${a.uuid}/jobs/notify`,
        `iot/device/${a.uuid}/jobs/get/accepted`,
        `${own('aws')}/update/delta`,
        `${own('aws')}/get/accepted`,
        `$aws/things/${a.uuid}/jobs/notify-next`,
        `${stateBase(b.uuid)}/update/delta`,
        `iot/device/${b.uuid}/command/broker-change`,
      ];
      for (const topic of spoofs) await publishAsA(topic, { state: { mqtt: { brokerId: 999, host: MARK } }, version: 1, marker: MARK });
      // Positive control: the server's genuine delta for A is seen by the witness.
      const res = await env.api('POST', `/api/v1/devices/${a.uuid}/shadows/device-state`, { state: { desired: { app: 'probe-2' } } });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      await waitFor(() => w.seen.some((m) => m.topic === `${own('iot')}/update/delta` && m.body.includes('probe-2')), { message: 'the genuine delta at the witness' });
      assert.deepEqual(w.seen.filter((m) => m.body.includes(MARK)).map((m) => m.topic), [], 'no spoofed message was delivered');
      assert.ok(!b.client.messages.some((m) => m.raw.toString('utf8').includes(MARK)), 'nothing reached B');
      await w.close();
    });

    it("answers 403 when A writes, nulls or deletes its own desired.mqtt (iot and $aws); its assignment stays", async () => {
      const before = await snapshotB();
      // An assignment A has not followed yet (poll channel: nothing is published).
      const assigned = await env.api('PUT', `/api/v1/devices/${a.uuid}/broker`, { brokerId: env.brokers[1]!.id, channel: 'poll' });
      assert.equal(assigned.status, 200, JSON.stringify(assigned.body));
      const c = await env.connectDevice(a, 0);
      await c.subscribe([`iot/device/${a.uuid}/#`, `$aws/things/${a.uuid}/#`]);
      const read = async (): Promise<unknown> => ({
        shadows: (await env.sy.db.query('SELECT shadow_name, desired, version, deleted FROM device_shadows WHERE device_uuid = $1', [a.uuid])).rows,
        migrations: (await env.sy.db.query('SELECT id, status, to_broker_id FROM broker_migrations WHERE device_uuid = $1', [a.uuid])).rows,
      });
      const shadowBefore = await read();
      for (const ns of ['iot', 'aws'] as const) {
        for (const desired of [{ mqtt: { brokerId: env.brokers[0]!.id, host: MARK } }, { mqtt: null }, { other: 1, mqtt: { port: 1 } }, null]) {
          const reply = await c.request(stateBase(a.uuid, ns), 'update', { state: { desired } });
          assert.equal(reply.topic, `${stateBase(a.uuid, ns)}/update/rejected`, `${ns} desired ${JSON.stringify(desired)}`);
          assert.equal(reply.payload.code, 403);
        }
        const del = await c.request(stateBase(a.uuid, ns), 'delete');
        assert.equal(del.topic, `${stateBase(a.uuid, ns)}/delete/rejected`, `${ns} delete of the shadow holding the assignment`);
        assert.equal(del.payload.code, 403);
      }
      assert.deepEqual(await read(), shadowBefore, "A's shadow and migration are unchanged");
      const reported = await c.request(stateBase(a.uuid), 'update', { state: { reported: { app: 'a' } } });
      assert.equal(reported.topic, `${stateBase(a.uuid)}/update/accepted`, 'A may still write its reported state');
      assert.deepEqual(await snapshotB(), before);
      await c.close();
    });

    it("refuses A's CONNECT as B (B's client id or username) and B's session survives", async () => {
      const before = await snapshotB();
      const attempts = [
        { clientId: b.uuid, username: a.uuid, password: a.token },
        { clientId: b.uuid, username: b.uuid, password: a.token },
        { clientId: a.uuid, username: b.uuid, password: a.token },
        { clientId: `${b.uuid}/x`, username: a.uuid, password: a.token },
      ];
      for (const o of attempts) {
        const ok = await connect(o).then(
          () => true,
          () => false,
        );
        assert.equal(ok, false, `CONNECT ${JSON.stringify({ clientId: o.clientId, username: o.username })} is refused`);
      }
      const reply = await b.client.request(stateBase(b.uuid), 'get');
      assert.equal(reply.topic, `${stateBase(b.uuid)}/get/accepted`, "B's session is still up");
      assert.deepEqual(await snapshotB(), before);
    });
  });
}
