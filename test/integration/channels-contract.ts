/**
 * The server side of the assignment channels, with a device played by a plain MQTT client / HTTP client:
 * the `broker-change` command and its acks, `?wait` long-polls of the config endpoint (validation, bounds,
 * clean-up on disconnect, several instances), and `channel: 'job'` without a jobs engine.
 * Run against PGlite + Aedes and PostgreSQL + Mosquitto.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { startTestSwitchyard, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';
import { createAssignmentService } from '../../packages/server/src/assignments/assignment.service.ts';
import { silentLogger } from '../../packages/server/src/log.ts';
import { systemClock } from '../../packages/server/src/clock.ts';

export function channelsContract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`assignment channels, server side (${kind})`, { skip }, () => {
    let env: TestEnv;
    before(async () => {
      // Per-device limits off: one test sends 31 command acks at once to check the bounded ack list.
      env = await startTestSwitchyard(kind, { env: { SWITCHYARD_COMMAND_TTL_S: '30', SWITCHYARD_DEVICE_RATE_LIMIT: '0', SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '0' } });
    });
    after(async () => {
      await env?.stop();
    });

    const config = (uuid: string, token: string, o: { etag?: string; query?: string; signal?: AbortSignal } = {}) =>
      fetch(`${env.url}/api/v1/devices/${uuid}/config${o.query ?? ''}`, {
        headers: { authorization: `Bearer ${token}`, ...(o.etag ? { 'if-none-match': o.etag } : {}) },
        ...(o.signal ? { signal: o.signal } : {}),
      });

    it('publishes the broker-change command through the device broker and records valid acks only', async () => {
      const d = await env.createDevice({ brokerIndex: 0 });
      const client = await env.connectDevice(d, 0);
      const topic = `iot/device/${d.uuid}/command/broker-change`;
      await client.subscribe([topic, `iot/device/${d.uuid}/shadow/name/device-state/update/delta`]);
      await client.publish(`iot/device/${d.uuid}/status`, { state: 'online', brokerId: env.brokers[0]!.id });
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}`)).body.online === true, { message: 'online' });

      const before = Date.now();
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id, channel: 'command' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const { payload: cmd } = await client.waitFor((m) => m.topic === topic, 5000, 'the command');
      assert.equal(cmd.command, 'change-broker');
      assert.equal(cmd.brokerId, env.brokers[1]!.id);
      assert.deepEqual(cmd.broker, { protocol: 'mqtt', host: env.brokers[1]!.host, port: env.brokers[1]!.port });
      assert.equal(cmd.version, res.body.shadowVersion);
      const ttl = Date.parse(cmd.expiresAt) - Date.parse(cmd.timestamp);
      assert.equal(ttl, 30_000);
      assert.ok(Date.parse(cmd.timestamp) >= before - 1000);
      assert.ok(!client.messages.some((m) => m.topic.endsWith('/delta')), 'the command channel sends no delta');

      const id = res.body.migration.id;
      const row = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
      assert.equal(row.channel, 'command');
      assert.equal(row.commandId, cmd.commandId);

      const ack = `${topic}/ack`;
      await client.publish(ack, 'not json');
      await client.publish(ack, { commandId: cmd.commandId, status: 'done' });
      await client.publish(ack, { status: 'received' });
      await client.publish(ack, { commandId: 'another-command', status: 'received' });
      await client.publish(ack, { commandId: cmd.commandId, status: 'received' });
      await client.publish(ack, { commandId: cmd.commandId, status: 'failed', error: 'expired' });
      const acks = await waitFor(async () => {
        const m = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
        return m.acks.length >= 2 ? m : null;
      }, { message: 'acks recorded' });
      assert.deepEqual(acks.acks.map((a: any) => [a.status, a.error, a.brokerId]), [['received', undefined, env.brokers[0]!.id], ['failed', 'expired', env.brokers[0]!.id]]);
      assert.ok(['pending', 'notified'].includes(acks.status), `a failed ack leaves the row open (${acks.status})`);

      // Bounded: a device repeating itself keeps only the newest 20.
      for (let i = 0; i < 25; i++) await client.publish(ack, { commandId: cmd.commandId, status: 'received' }, 1);
      const bounded = await waitFor(async () => {
        const m = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
        return m.acks.length === 20 && m.acks[0].status === 'received' ? m : null;
      }, { message: 'ack list bounded at 20' });
      assert.equal(bounded.acks.length, 20);
    });

    it('refuses a bad ?wait, and answers ?wait=0 at once', async () => {
      const d = await env.createDevice();
      for (const q of ['?wait=61', '?wait=-1', '?wait=abc', '?wait=1.5', '?other=1']) {
        const res = await config(d.uuid, d.token, { query: q });
        assert.equal(res.status, 400, q);
        assert.equal(((await res.json()) as any).code, 'VALIDATION_FAILED', q);
      }
      const first = await config(d.uuid, d.token);
      const etag = first.headers.get('etag')!;
      const t0 = Date.now();
      const now = await config(d.uuid, d.token, { etag, query: '?wait=0' });
      assert.equal(now.status, 304);
      assert.ok(Date.now() - t0 < 500);
      // Without If-None-Match there is nothing to wait on: 200 at once.
      assert.equal((await config(d.uuid, d.token, { query: '?wait=30' })).status, 200);
    });

    it("drops its copy of a device's config when the device reports, and every copy when a broker changes", async () => {
      const d = await env.createDevice();
      const first = await config(d.uuid, d.token);
      const etag = first.headers.get('etag')!;
      assert.equal((await config(d.uuid, d.token, { etag })).status, 304, 'answered from the copy');
      // The device's own report bumps the device-state version (the ETag): seen at once, not after the copy's 10 s.
      const client = await env.connectDevice(d);
      const base = `iot/device/${d.uuid}/shadow/name/device-state`;
      await client.subscribe([`${base}/update/accepted`]);
      await client.publish(`${base}/update`, { state: { reported: { firmware: '1.2.3' } } });
      await waitFor(() => client.messages.some((m) => m.topic === `${base}/update/accepted`), { message: 'update accepted' });
      const after = await config(d.uuid, d.token, { etag });
      assert.equal(after.status, 200);
      const etag2 = after.headers.get('etag')!;
      assert.notEqual(etag2, etag);
      assert.equal(((await after.json()) as any).version, 1);
      // A broker's port edited under a device without an assignment: its config names the new port at once.
      const broker = env.brokers[0]!;
      const body = async () => ((await (await config(d.uuid, d.token)).json()) as any).mqtt;
      assert.equal((await body()).port, broker.port, 'cached with the old port');
      try {
        assert.equal((await env.api('PATCH', `/api/v1/brokers/${broker.id}`, { port: broker.port + 1 })).status, 200);
        assert.equal((await body()).port, broker.port + 1);
      } finally {
        assert.equal((await env.api('PATCH', `/api/v1/brokers/${broker.id}`, { port: broker.port })).status, 200);
      }
      assert.equal((await body()).port, broker.port);
    });

    it('bounds the long-polls of one device and frees a slot when its client disconnects', async () => {
      const d = await env.createDevice();
      const etag = (await config(d.uuid, d.token)).headers.get('etag')!;
      const aborts = Array.from({ length: 4 }, () => new AbortController());
      const held = aborts.map((a) => config(d.uuid, d.token, { etag, query: '?wait=30', signal: a.signal }).catch(() => null));
      await sleep(300);
      const fifth = await config(d.uuid, d.token, { etag, query: '?wait=30' });
      assert.equal(fifth.status, 429);
      assert.equal(((await fifth.json()) as any).code, 'TOO_MANY_REQUESTS');
      for (const a of aborts) a.abort();
      await Promise.all(held);
      await waitFor(async () => {
        const ctl = new AbortController();
        const res = config(d.uuid, d.token, { etag, query: '?wait=1', signal: ctl.signal });
        const first = await Promise.race([res.then((r) => r.status), sleep(300).then(() => 'held')]);
        ctl.abort();
        await res.catch(() => null);
        return first === 'held';
      }, { timeoutMs: 5000, message: 'a slot is free again after the disconnects' });
    });

    it('wakes a long-poll held by another server instance', { skip: kind !== 'postgres' && 'one process on PGlite' }, async () => {
      const other = await env.startInstance();
      const otherUrl = other.url;
      assert.ok(otherUrl && otherUrl !== env.url, 'a second instance with its own HTTP port');
      try {
        const d = await env.createDevice();
        const etag = (await config(d.uuid, d.token)).headers.get('etag')!;
        const held = fetch(`${otherUrl}/api/v1/devices/${d.uuid}/config?wait=20`, { headers: { authorization: `Bearer ${d.token}`, 'if-none-match': etag } }).then(
          async (r) => ({ status: r.status, body: (await r.json()) as any, at: Date.now() }),
        );
        await sleep(300);
        const put = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id, channel: 'poll' });
        const putAt = Date.now();
        assert.equal(put.status, 200);
        const woken = await held;
        assert.equal(woken.status, 200);
        assert.equal(woken.body.mqtt.brokerId, env.brokers[1]!.id);
        assert.ok(woken.at - putAt < 1000, `answered ${woken.at - putAt} ms after the PUT`);
      } finally {
        await other.stop();
      }
    });

    it("refuses channel 'job' when no jobs engine provides the hook", async () => {
      const d = await env.createDevice();
      const service = createAssignmentService({ db: env.sy.db, log: silentLogger(), clock: systemClock });
      await assert.rejects(service.assign(d.uuid, env.brokers[1]!.id, { channel: 'job', actor: 'test' }), (err: any) => {
        assert.equal(err.code, 'VALIDATION_FAILED');
        assert.match(err.message, /channel 'job' needs the device jobs engine/);
        return true;
      });
      const migrations = (await env.api('GET', `/api/v1/devices/${d.uuid}/migrations`)).body;
      assert.equal(migrations.total, 0, 'nothing changed');
    });
  });
}
