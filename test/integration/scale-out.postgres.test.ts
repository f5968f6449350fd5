/**
 * Several server instances on one PostgreSQL and one Mosquitto: each broker's request subscriptions are owned by
 * one instance at a time (an advisory lock per broker), so every device request is answered once, and a standby
 * takes over within seconds when the owner stops or loses its lock session.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { LOCK_SESSION_CLASS } from '../../packages/server/src/db/db.ts';
import type { Switchyard } from '../../packages/server/src/serve.ts';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

const { skip } = realServers(['postgres', 'mosquitto']);

describe('scale-out: two instances on one database and one broker (PostgreSQL + Mosquitto)', { skip }, () => {
  let env: TestEnv;
  let first: Switchyard;
  let second: Switchyard;
  let brokerId: number;

  before(async () => {
    // Per-device limits off: the bursts of 100 updates of one device check that each is answered exactly once.
    env = await startTestSwitchyard('postgres', { brokers: 1, env: { SWITCHYARD_DEVICE_RATE_LIMIT: '0', SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '0' } });
    first = env.sy;
    second = await env.startInstance();
    brokerId = env.brokers[0]!.id;
  });
  after(async () => {
    await env?.stop();
  });

  const owners = (...instances: Switchyard[]) => instances.map((sy) => sy.pool.status().find((s) => s.brokerId === brokerId)?.owner === true);

  /** A device that sends `n` shadow updates at once and collects every reply; checks that each is answered once. */
  async function updateBurst(client: DeviceClient, shadow: string, n: number): Promise<number[]> {
    const base = `iot/device/${client.uuid}/shadow/name/${shadow}`;
    const replies = () => client.messages.filter((m) => m.topic === `${base}/update/accepted` || m.topic === `${base}/update/rejected`);
    const before = replies().length;
    const tokens = Array.from({ length: n }, (_, i) => `${shadow}-${before}-${i}`);
    await Promise.all(tokens.map((clientToken, i) => client.publish(`${base}/update`, { state: { reported: { i } }, clientToken })));
    await waitFor(() => replies().length >= before + n, { timeoutMs: 10_000, message: `${n} replies` });
    await sleep(500); // a duplicate from a second instance would arrive within this
    const got = replies().slice(before);
    assert.equal(got.length, n, `exactly ${n} replies, got ${got.length}`);
    assert.deepEqual(
      got.map((m) => m.topic),
      tokens.map(() => `${base}/update/accepted`),
    );
    assert.deepEqual(got.map((m) => m.payload.clientToken).sort(), [...tokens].sort(), 'each request answered once');
    return got.map((m) => m.payload.version as number).sort((a, b) => a - b);
  }

  async function lockHolderPid(): Promise<number | undefined> {
    const { rows } = await first.db.query<{ pid: number }>(
      // pg_locks spans every database of the cluster, and other test files share it (each with its own database
      // and its own broker 1): only this database's lock holder may be terminated.
      `SELECT pid FROM pg_locks
        WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND objsubid = 2 AND granted
          AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
      [LOCK_SESSION_CLASS, brokerId],
    );
    return rows[0]?.pid;
  }

  it('gives the broker to one instance; the other stays connected for publishing, and both say so in /readyz', async () => {
    assert.deepEqual(owners(first, second), [true, false]);
    assert.equal(second.pool.isConnected(brokerId), true);
    for (const [sy, owner] of [[first, true], [second, false]] as const) {
      const res = await fetch(`${sy.url}/readyz`);
      assert.equal(res.status, 200, 'a standby is ready too');
      const body = (await res.json()) as { brokers: Array<{ brokerId: number; connected: boolean; owner: boolean }> };
      assert.deepEqual(
        body.brokers.map((b) => [b.brokerId, b.connected, b.owner]),
        [[brokerId, true, owner]],
      );
    }
    assert.ok((await lockHolderPid()) !== undefined, 'the lock is held in PostgreSQL');
  });

  it('answers each of 100 shadow updates exactly once (versions 1..100) and records presence once', async () => {
    const device = await env.createDevice();
    const client = await env.connectDevice(device);
    await client.subscribe([`iot/device/${device.uuid}/shadow/name/burst/update/+`]);
    const versions = await updateBurst(client, 'burst', 100);
    assert.deepEqual(versions, Array.from({ length: 100 }, (_, i) => i + 1));
    const shadow = await env.api('GET', `/api/v1/devices/${device.uuid}/shadows/burst`);
    assert.equal(shadow.body.version, 100);

    // Each instance's subscribers get the event exactly once: the owner's from its own bus at once (and not again
    // when its NOTIFY comes back), the other's through NOTIFY.
    const presence: unknown[][] = [[], []];
    const unsubscribe = [first, second].map((sy, i) =>
      sy.events.subscribe((e) => {
        if (e.type === 'presence' && (e.data as { deviceUuid?: string }).deviceUuid === device.uuid) presence[i]!.push(e);
      }),
    );
    try {
      await client.publish(`iot/device/${device.uuid}/status`, { state: 'online', brokerId, at: new Date().toISOString() });
      await waitFor(() => presence[0]!.length >= 1 && presence[1]!.length >= 1, { message: 'a presence event on both instances' });
      await sleep(500); // a second handler, or an event handed out twice, would show here
      assert.deepEqual(presence.map((p) => p.length), [1, 1], 'presence handled by one instance, seen once on each');
      assert.deepEqual(presence[0], presence[1], 'the same event (and time) on both');
    } finally {
      unsubscribe.forEach((u) => u());
    }
    assert.equal((await env.api('GET', `/api/v1/devices/${device.uuid}`)).body.online, true);
  });

  it('ends a rotated device token on every instance when the NOTIFY arrives, not when a cache runs out', async () => {
    const device = await env.createDevice();
    const config = (url: string, token: string) => fetch(`${url}/api/v1/devices/${device.uuid}/config`, { headers: { authorization: `Bearer ${token}` } });
    // Both instances have the token in their caches (each asked twice).
    for (const sy of [first, second]) for (let i = 0; i < 2; i++) assert.equal((await config(sy.url, device.token)).status, 200);
    const rotated = await env.api('POST', `/api/v1/devices/${device.uuid}/token`);
    assert.equal(rotated.status, 200);
    const started = Date.now();
    assert.equal((await config(first.url, device.token)).status, 401, 'the instance that rotated it: at once');
    await waitFor(async () => (await config(second.url, device.token)).status === 401, { timeoutMs: 5_000, intervalMs: 20, message: 'the old token refused on the other instance' });
    assert.ok(Date.now() - started < 5_000, 'well before the cache entry (60 s) would have expired');
    for (const sy of [first, second]) assert.equal((await config(sy.url, rotated.body.token)).status, 200, 'the new token works everywhere');
  });

  it('hands the broker to the standby within seconds when the owner loses its lock session (pg_terminate_backend)', async (t) => {
    const device = await env.createDevice();
    const client = await env.connectDevice(device);
    await client.subscribe([`iot/device/${device.uuid}/shadow/name/abrupt/update/+`]);
    assert.deepEqual(await updateBurst(client, 'abrupt', 5), [1, 2, 3, 4, 5]);

    const pid = await lockHolderPid();
    assert.ok(pid !== undefined);
    const started = Date.now();
    await second.db.query('SELECT pg_terminate_backend($1)', [pid]);
    // Bounds for a loaded CI machine; on a quiet one the drop is immediate and the takeover ≈ 1 s (diagnostic).
    await waitFor(() => owners(first)[0] === false, { timeoutMs: 5000, message: 'the old owner to drop the broker' });
    await waitFor(() => owners(second)[0] === true, { timeoutMs: 10_000, message: 'the standby to take over' });
    const tookMs = Date.now() - started;
    t.diagnostic(`took over in ${tookMs} ms`);
    assert.ok(tookMs < 10_000, `took over in ${tookMs} ms`);

    assert.deepEqual(await updateBurst(client, 'abrupt', 20), Array.from({ length: 20 }, (_, i) => i + 6));
    // The old owner re-opens a session and waits as standby; it never takes the broker back while it is held.
    await sleep(2500);
    assert.deepEqual(owners(first, second), [false, true]);
  });

  it('hands the broker back within seconds when the owner stops', async (t) => {
    const device = await env.createDevice();
    const client = await env.connectDevice(device);
    await client.subscribe([`iot/device/${device.uuid}/shadow/name/stop/update/+`]);
    assert.deepEqual(owners(first, second), [false, true]);
    const started = Date.now();
    await second.stop();
    await waitFor(() => owners(first)[0] === true, { timeoutMs: 10_000, message: 'the remaining instance to take over' });
    const tookMs = Date.now() - started;
    t.diagnostic(`took over in ${tookMs} ms`);
    assert.ok(tookMs < 10_000, `took over in ${tookMs} ms`);
    assert.deepEqual(await updateBurst(client, 'stop', 10), Array.from({ length: 10 }, (_, i) => i + 1));
  });
});
