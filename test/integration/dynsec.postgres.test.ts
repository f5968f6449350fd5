/**
 * Device accounts on Mosquitto brokers with dynamic security (provisioner `mosquitto-dynsec`), end to end:
 * PostgreSQL, two real Mosquitto processes with the plugin, the server, and the real agent for the move.
 * - registration provisions the device's broker, and only it;
 * - a move provisions the target BEFORE the device is told (it can log in there when the delta arrives), the real
 *   agent completes it, and afterwards the device can no longer log in to the broker it left;
 * - a rotated token stops working on the API (on every instance) and on every broker when the answer comes;
 * - deletion removes the accounts; accounts Switchyard did not create are never touched;
 * - no token ever shows up in logs, audit rows, outbox errors, credential rows, migrations or shadows.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { createAgent, type Agent } from '../../packages/agent/src/index.ts';
import { credentialChainTail, enqueue } from '../../packages/server/src/outbox/outbox.store.ts';
import { deviceRoleAcls, deviceRoleName } from '../../packages/server/src/provisioning/dynsec-acl.ts';
import { realServers } from '../helpers/real.ts';
import { dynsecMissingReason } from '../helpers/mosquitto-dynsec.ts';
import { startDynsecSwitchyard, type DynsecEnv } from '../helpers/dynsec-switchyard.ts';
import { uniqueId } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

const real = realServers(['postgres', 'mosquitto']);
const skip = real.skip || (dynsecMissingReason() ?? false);

describe('device accounts on Mosquitto with dynamic security', { skip, timeout: 300_000 }, () => {
  let env: DynsecEnv;
  /** Every device token this file saw: none may appear anywhere at the end. */
  const tokens: string[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];

  before(async () => {
    env = await startDynsecSwitchyard({ captureLogs: true });
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    await env?.stop();
  });

  async function device(brokerIndex = 0, uuid = uniqueId('dyn')): Promise<{ uuid: string; token: string }> {
    const d = await env.createDevice({ uuid, brokerIndex });
    tokens.push(d.token);
    return d;
  }
  const login = (i: number, uuid: string, token: string): Promise<boolean> => env.dynsec[i]!.canLogin(uuid, token);
  const stateBase = (uuid: string): string => `iot/device/${uuid}/shadow/name/device-state`;
  const credentials = async (uuid: string): Promise<Array<{ broker_id: number; action: string; state: string; error: string | null }>> =>
    (await env.sy.db.query<any>('SELECT broker_id, action, state, error FROM device_broker_credentials WHERE device_uuid = $1 ORDER BY broker_id', [uuid])).rows;

  it('provisions a registered device on its broker only, with a role of its own and a pinned client id', async () => {
    const d = await device(0);
    assert.equal(await login(0, d.uuid, d.token), true, 'it can log in to its broker when registration answers');
    assert.equal(await login(1, d.uuid, d.token), false, 'and nowhere else');
    assert.equal(await login(0, d.uuid, 'syd_wrong'), false);
    assert.equal(await env.dynsec[0]!.canLogin(d.uuid, d.token, `${d.uuid}-other`), false, 'its client id is pinned to its uuid');
    const [client, role] = await env.dynsec[0]!.control([
      { command: 'getClient', username: d.uuid },
      { command: 'getRole', rolename: deviceRoleName(d.uuid) },
    ]);
    assert.deepEqual(client!.data.client.roles.map((r: { rolename: string }) => r.rolename), [deviceRoleName(d.uuid)]);
    assert.equal(client!.data.client.clientid, d.uuid);
    const key = (a: { acltype: string; topic: string }): string => `${a.acltype} ${a.topic}`;
    assert.deepEqual(role!.data.role.acls.map(key).sort(), deviceRoleAcls(d.uuid).map(key).sort());
    assert.deepEqual(await credentials(d.uuid), [{ broker_id: env.brokers[0]!.id, action: 'provision', state: 'provisioned', error: null }]);
  });

  for (const channel of ['shadow', 'command', 'job'] as const) {
    it(`provisions the target before the device is told to move (${channel}): it can log in there when the notice arrives`, async () => {
      const d = await device(0);
      const [b0, b1] = env.brokers;
      const notice = {
        shadow: `${stateBase(d.uuid)}/update/delta`,
        command: `iot/device/${d.uuid}/command/broker-change`,
        job: `iot/device/${d.uuid}/jobs/notify-next`,
      }[channel];
      assert.equal(await login(1, d.uuid, d.token), false, 'not provisioned on the target before the assignment');
      const plain = await env.connectDevice(d, 0);
      await plain.subscribe([notice]);
      await plain.publish(`iot/device/${d.uuid}/status`, { state: 'online', brokerId: b0!.id, at: new Date().toISOString() });
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}`)).body.connectedBrokerId === b0!.id, { message: 'online on broker 1' });
      // The plugin's answers on the target, as its admin sees them (the server's createClient among them).
      const m1 = env.dynsec[1]!;
      const admin = await mqtt.connectAsync(m1.url, { clientId: `order-${d.uuid}`, username: m1.admin.username, password: m1.admin.password, reconnectPeriod: 0 });
      cleanups.push(() => admin.endAsync(true));
      const events: string[] = [];
      admin.on('message', (_t, payload) => {
        const commands = (JSON.parse(payload.toString()) as { responses: Array<{ command: string }> }).responses.map((r) => r.command);
        if (commands.includes('createClient')) events.push('createClient on the target');
      });
      await admin.subscribeAsync('$CONTROL/dynamic-security/v1/response', { qos: 1 });
      const loginAtNotice = new Promise<boolean>((resolve) => {
        plain.client.on('message', (topic) => {
          if (topic !== notice) return;
          events.push('notice through the current broker');
          // The very moment the device is told: try the target with its credentials.
          resolve(login(1, d.uuid, d.token));
        });
      });
      // Freeze the target broker for a moment (a slow plugin, a busy broker): a notice that did not wait for the
      // account would reach the device through broker 1 before the target could even read the provisioning.
      const pid = Number(await readFile(join(m1.configDir, 'server.pid'), 'utf8'));
      process.kill(pid, 'SIGSTOP');
      const thaw = setTimeout(() => process.kill(pid, 'SIGCONT'), 500);
      try {
        const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b1!.id, channel });
        assert.equal(res.status, 200, JSON.stringify(res.body));
        assert.equal(await loginAtNotice, true, 'the device can log in to the target as soon as it learns of the move');
      } finally {
        clearTimeout(thaw);
        process.kill(pid, 'SIGCONT');
      }
      assert.deepEqual(events.slice(0, 2), ['createClient on the target', 'notice through the current broker']);
      await plain.close();
      await admin.endAsync(true);
    });
  }

  it("links a migration's notifications written by other modules (the jobs engine) to its provisioning row, and chains credential rows per (device, broker)", async () => {
    // In a transaction that is rolled back: the dispatcher never sees these rows.
    await assert.rejects(
      env.sy.db.transaction(async (tx) => {
        const publish = { brokerId: 1, topic: 'iot/device/x/jobs/notify-next', body: '{}', qos: 1 as const };
        const [prov] = await enqueue(tx, [{ kind: 'broker.provision', deviceUuid: 'chain-x', payload: { brokerId: 7, reason: 'assign', migrationId: 4242 } }]);
        const [linked, other, unrelated] = await enqueue(tx, [
          { kind: 'mqtt.publish', deviceUuid: 'chain-x', migrationId: 4242, payload: publish },
          { kind: 'mqtt.publish', deviceUuid: 'chain-x', migrationId: 4243, payload: publish },
          { kind: 'mqtt.publish', deviceUuid: 'chain-x', payload: publish },
        ]);
        const rows = await tx.query<{ id: number; depends_on: number | null }>('SELECT id, depends_on FROM outbox WHERE device_uuid = $1 ORDER BY id', ['chain-x']);
        const dep = new Map(rows.rows.map((r) => [Number(r.id), r.depends_on === null ? null : Number(r.depends_on)]));
        assert.equal(dep.get(linked!), prov, "a notification of migration 4242 waits for 4242's provisioning");
        assert.equal(dep.get(other!), null);
        assert.equal(dep.get(unrelated!), null);
        assert.equal(await credentialChainTail(tx, 'chain-x', 7), prov);
        assert.equal(await credentialChainTail(tx, 'chain-x', 8), null);
        throw new Error('roll back');
      }),
      /roll back/,
    );
  });

  it('completes a move with the real agent; afterwards the device can no longer log in to the broker it left', async () => {
    const d = await device(0);
    const [b0, b1] = env.brokers;
    const stateDir = await mkdtemp(join(tmpdir(), 'sy-dynsec-agent-'));
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
    const agent: Agent = createAgent({
      config: { apiUrl: env.url, deviceUuid: d.uuid, deviceToken: d.token, stateDir, heartbeatMs: 0 },
      migration: { connectTimeoutMs: 5000, verifyTimeoutMs: 5000, backoff: { baseMs: 200, maxMs: 1000 } },
      reconnectBackoff: { baseMs: 100, maxMs: 1000 },
    });
    cleanups.push(() => agent.stop());
    await agent.start();
    await waitFor(() => agent.state().connectedBrokerId === b0!.id, { timeoutMs: 10_000, message: 'agent on broker 1' });
    const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b1!.id });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const migration = await waitFor(
      async () => {
        const m = (await env.api('GET', `/api/v1/migrations/${res.body.migration.id}`)).body;
        return ['completed', 'failed', 'timed_out', 'superseded'].includes(m.status) ? m : null;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: 'the move to end' },
    );
    assert.equal(migration.status, 'completed', JSON.stringify(migration));
    assert.equal(agent.state().connectedBrokerId, b1!.id);
    await waitFor(async () => !(await login(0, d.uuid, d.token)), { timeoutMs: 10_000, message: 'the old broker refusing the device' });
    assert.equal(await login(1, d.uuid, d.token), true, 'the new broker still lets it in');
    const gone = await env.dynsec[0]!.control([{ command: 'getClient', username: d.uuid }, { command: 'getRole', rolename: deviceRoleName(d.uuid) }]);
    assert.deepEqual(gone.map((r) => r.error), ['Client not found', 'Role not found']);
    assert.deepEqual(await credentials(d.uuid), [
      { broker_id: b0!.id, action: 'deprovision', state: 'removed', error: null },
      { broker_id: b1!.id, action: 'provision', state: 'provisioned', error: null },
    ]);
    // Still working where it is: a report through broker 2 is accepted.
    await agent.publish(`iot/device/${d.uuid}/telemetry/check`, JSON.stringify({ ok: true }), { qos: 1 });
    assert.equal(agent.state().connectedBrokerId, b1!.id);
    await agent.stop();
  });

  it('rotates a token: the old one is refused on the API (every instance) and on every broker when the answer comes', async () => {
    const d = await device(0);
    const [b0, b1] = env.brokers;
    // Provisioned on both brokers: assigned to broker 2 while offline (the move cannot complete).
    const moved = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b1!.id, channel: 'poll' });
    assert.equal(moved.status, 200);
    await waitFor(async () => (await credentials(d.uuid)).every((c) => c.state === 'provisioned'), { message: 'provisioned on both brokers' });
    const live = await env.connectDevice(d, 0);
    const closed = new Promise<void>((resolve) => live.client.once('close', () => resolve()));
    const other = await env.startInstance();
    const otherApi = (token: string): Promise<number> =>
      fetch(`${other.url}/api/v1/devices/${d.uuid}`, { headers: { authorization: `Bearer ${token}` } }).then((r) => r.status);
    assert.equal(await otherApi(d.token), 200, 'the other instance knows (and caches) the old token');

    const rotated = await env.api('POST', `/api/v1/devices/${d.uuid}/token`);
    assert.equal(rotated.status, 200, JSON.stringify(rotated.body));
    assert.equal(rotated.headers.get('cache-control'), 'no-store');
    const fresh: string = rotated.body.token;
    tokens.push(fresh);
    assert.match(fresh, /^syd_/);
    assert.notEqual(fresh, d.token);
    assert.deepEqual(
      rotated.body.brokers.map((b: { brokerId: number; state: string }) => [b.brokerId, b.state]),
      [
        [b0!.id, 'provisioned'],
        [b1!.id, 'provisioned'],
      ],
    );
    // Right after the answer, nothing waited for:
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`, undefined, { token: d.token })).status, 401);
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`, undefined, { token: fresh })).status, 200);
    for (const i of [0, 1]) {
      assert.equal(await login(i, d.uuid, d.token), false, `old token refused by broker ${i + 1}`);
      assert.equal(await login(i, d.uuid, fresh), true, `new token accepted by broker ${i + 1}`);
    }
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('the live session with the old token was not dropped')), 2000))]);
    // The other instance hears the NOTIFY of the rotation (no waiting for its 2 s cache).
    await waitFor(async () => (await otherApi(d.token)) === 401, { timeoutMs: 1000, message: 'the other instance refusing the old token' });
    assert.equal(await otherApi(fresh), 200);
    const audit = await env.sy.db.query<{ details: unknown }>("SELECT details FROM audit_log WHERE action = 'device.rotate_token' AND target_id = $1", [d.uuid]);
    assert.equal(audit.rows.length, 1);
    assert.ok(!JSON.stringify(audit.rows).includes('syd_'), 'the audit row holds no token');
    await other.stop();
  });

  it("deletes a device's accounts from every broker and drops its session", async () => {
    const d = await device(0);
    await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id, channel: 'poll' });
    await waitFor(async () => login(1, d.uuid, d.token), { message: 'provisioned on broker 2' });
    const live = await env.connectDevice(d, 0);
    const closed = new Promise<void>((resolve) => live.client.once('close', () => resolve()));
    assert.equal((await env.api('DELETE', `/api/v1/devices/${d.uuid}`)).status, 204);
    await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('session not dropped')), 2000))]);
    for (const i of [0, 1]) {
      assert.equal(await login(i, d.uuid, d.token), false, `broker ${i + 1} refuses the deleted device`);
      const r = await env.dynsec[i]!.control([{ command: 'getClient', username: d.uuid }, { command: 'getRole', rolename: deviceRoleName(d.uuid) }]);
      assert.deepEqual(r.map((x) => x.error), ['Client not found', 'Role not found']);
    }
  });

  it('never touches an account it did not create (the server\'s own, an operator\'s)', async () => {
    const m = env.dynsec[0]!;
    const made = await m.control([{ command: 'createClient', username: 'operator-tool', password: 'operator-secret-1', roles: [] }]);
    assert.equal(made[0]!.error, undefined);
    for (const uuid of ['operator-tool', m.server.username]) {
      const res = await env.api('POST', '/api/v1/devices', { uuid, brokerId: env.brokers[0]!.id });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      tokens.push(res.body.token);
      const [cred] = await credentials(uuid);
      assert.equal(cred?.state, 'failed');
      assert.match(cred?.error ?? '', /Switchyard did not create|server's own account/);
      assert.equal(await login(0, uuid, res.body.token), false, `the device ${uuid} did not take the account over`);
    }
    assert.equal(await m.canLogin('operator-tool', 'operator-secret-1', 'op-1'), true, "the operator's password is unchanged");
    assert.equal(await m.canLogin(m.server.username, m.server.password, 'srv-check'), true, "the server's password is unchanged");
    assert.equal(env.sy.pool.isConnected(env.brokers[0]!.id), true);
  });

  it('refuses to assign a device without a stored secret to a dynsec broker (409, nothing changes), until its token is rotated', async () => {
    const d = await device(0);
    await env.sy.db.query('UPDATE devices SET token_enc = NULL WHERE uuid = $1', [d.uuid]); // as registered before version 6
    const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id });
    assert.equal(res.status, 409);
    assert.equal(res.body.code, 'DEVICE_SECRET_UNAVAILABLE');
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}/migrations`)).body.total, 0);
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}`)).body.brokerId, env.brokers[0]!.id);
    const rotated = await env.api('POST', `/api/v1/devices/${d.uuid}/token`);
    assert.equal(rotated.status, 200);
    tokens.push(rotated.body.token);
    const again = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id });
    assert.equal(again.status, 200, JSON.stringify(again.body));
    await waitFor(async () => login(1, d.uuid, rotated.body.token), { message: 'provisioned after the rotation' });
  });

  it('provisions a batch of devices assigned at once', async () => {
    const devices = await Promise.all(Array.from({ length: 12 }, () => device(0)));
    const answers = await Promise.all(devices.map((d) => env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id })));
    assert.deepEqual(answers.map((a) => a.status), devices.map(() => 200));
    await waitFor(
      async () => {
        const rows = await env.sy.db.query<{ n: number }>(
          "SELECT count(*)::int AS n FROM device_broker_credentials WHERE broker_id = $1 AND state = 'provisioned' AND device_uuid IN (SELECT jsonb_array_elements_text($2::jsonb))",
          [env.brokers[1]!.id, JSON.stringify(devices.map((d) => d.uuid))],
        );
        return rows.rows[0]!.n === devices.length;
      },
      { timeoutMs: 20_000, message: 'all provisioned' },
    );
    for (const d of devices) assert.equal(await login(1, d.uuid, d.token), true);
  });

  it('leaves no device token in logs, audit rows, outbox errors, credential rows, migrations or shadows', async () => {
    assert.ok(tokens.length >= 10);
    const tables = await Promise.all(
      ['audit_log', 'outbox', 'device_broker_credentials', 'broker_migrations', 'device_shadows'].map(async (t) => JSON.stringify((await env.sy.db.query(`SELECT * FROM ${t}`)).rows)),
    );
    const logs = env.logs();
    assert.ok(logs.length > 1000, 'logs were captured');
    for (const token of tokens) {
      assert.ok(!logs.includes(token), 'a token in the logs');
      for (const t of tables) assert.ok(!t.includes(token), 'a token in a table');
    }
    const stored = await env.sy.db.query<{ token_enc: string | null }>('SELECT token_enc FROM devices WHERE token_enc IS NOT NULL');
    assert.ok(stored.rows.length > 0 && stored.rows.every((r) => r.token_enc!.startsWith('v1.')), 'tokens at rest are encrypted');
    for (const r of stored.rows) for (const token of tokens) assert.ok(!r.token_enc!.includes(token.slice(4)));
  });
});
