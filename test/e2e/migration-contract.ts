/**
 * Issue #3's end-to-end cases: real `switchyard-agent` processes moved between real brokers.
 * Every "the device is on B" is checked on the brokers themselves, in the migration row and in the
 * device's own report — never only in the agent's word.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { startAgentProcess, type TestProcess } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';
import { uniqueId } from '../helpers/switchyard.ts';
import { startE2E, type E2EEnv } from './e2e-env.ts';

const FINAL = ['completed', 'failed', 'superseded', 'canceled', 'timed_out'];

export function migrationE2E(kind: 'postgres' | 'embedded', skip: string | false): void {
  describe(`moving a device, end to end (${kind})`, { skip, timeout: 600_000 }, () => {
    let env: E2EEnv;
    const agents: TestProcess[] = [];
    before(async () => {
      env = await startE2E(kind);
    });
    after(async () => {
      if (process.env.SWITCHYARD_E2E_DEBUG) for (const a of agents) process.stderr.write(`--- agent output ---\n${a.output()}\n`);
      await Promise.all(agents.map((a) => a.stop()));
      await env?.stop();
    });

    async function newDevice(): Promise<{ uuid: string; token: string; stateDir: string }> {
      const uuid = uniqueId('e2e');
      const res = await env.api('POST', '/api/v1/devices', { uuid, brokerId: env.brokers[0]!.id });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return { uuid, token: res.body.token, stateDir: await env.tmp() };
    }

    function agent(d: { uuid: string; token: string; stateDir: string }, heartbeatMs?: number): TestProcess {
      const p = startAgentProcess({ apiUrl: env.apiUrl, uuid: d.uuid, token: d.token, stateDir: d.stateDir, ...(heartbeatMs ? { heartbeatMs } : {}) });
      agents.push(p);
      return p;
    }

    async function onlineOn(uuid: string, brokerIndex: number, what = 'device online'): Promise<void> {
      const id = env.brokers[brokerIndex]!.id;
      await waitFor(
        async () => {
          const dev = (await env.api('GET', `/api/v1/devices/${uuid}`)).body;
          return dev.online && dev.connectedBrokerId === id && (await env.connectedOn(brokerIndex, uuid));
        },
        { timeoutMs: 30_000, intervalMs: 100, message: `${what} on broker ${id}` },
      ).catch((err: Error) => {
        const last = agents[agents.length - 1];
        throw new Error(`${err.message}\n--- last agent's output ---\n${last?.output().slice(-4000) ?? '(none)'}`);
      });
    }

    async function assign(uuid: string, brokerIndex: number): Promise<number> {
      const res = await env.api('PUT', `/api/v1/devices/${uuid}/broker`, { brokerId: env.brokers[brokerIndex]!.id });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body.migration.id;
    }

    async function migrationEnds(id: number, timeoutMs = 30_000): Promise<any> {
      return waitFor(
        async () => {
          const m = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
          return FINAL.includes(m.status) ? m : null;
        },
        { timeoutMs, intervalMs: 100, message: `migration ${id} to end` },
      ).catch(async (err: Error) => {
        // Say everything the next reader needs: the row, its siblings, the shadow and the agent's own account.
        const m = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
        const all = (await env.api('GET', `/api/v1/devices/${m.deviceUuid}/migrations`)).body;
        const shadow = (await env.api('GET', `/api/v1/devices/${m.deviceUuid}/shadows/device-state`)).body;
        const last = agents[agents.length - 1];
        throw new Error(
          `${err.message}\n--- migrations ---\n${JSON.stringify(all)}\n--- shadow ---\n${JSON.stringify(shadow)}` +
            `\n--- last agent's output ---\n${last?.output().slice(-6000) ?? '(none)'}`,
        );
      });
    }

    async function assertOn(uuid: string, brokerIndex: number, stateDir: string): Promise<void> {
      const other = 1 - brokerIndex;
      assert.equal(await env.connectedOn(brokerIndex, uuid), true, `the broker ${brokerIndex} has the device's session`);
      await waitFor(async () => !(await env.connectedOn(other, uuid)), { timeoutMs: 10_000, message: `the device left broker ${other}` });
      const shadow = (await env.api('GET', `/api/v1/devices/${uuid}/shadows/device-state`)).body;
      assert.equal(shadow.state.reported.mqtt.brokerId, env.brokers[brokerIndex]!.id);
      assert.equal(shadow.state.reported.mqtt.status, 'connected');
      assert.equal(shadow.state.delta, undefined);
      const state = JSON.parse(await readFile(join(stateDir, 'agent-state.json'), 'utf8'));
      assert.equal(state.broker.brokerId, env.brokers[brokerIndex]!.id, 'the new broker is persisted');
    }

    it('1. completes a move: the broker B has the device, A does not, reported.mqtt says B, the row is completed', async () => {
      const d = await newDevice();
      agent(d);
      await onlineOn(d.uuid, 0);
      const id = await assign(d.uuid, 1);
      const m = await migrationEnds(id);
      assert.equal(m.status, 'completed', JSON.stringify(m));
      await assertOn(d.uuid, 1, d.stateDir);
    });

    it('2. loses no heartbeat across a move (20 ms, subscribed on both brokers)', async () => {
      const d = await newDevice();
      const seen = new Map<number, string>();
      const watchers = await Promise.all(
        env.brokers.map(async (b, i) => {
          const opts = env.kind === 'embedded' ? { clientId: `${d.uuid}/watch${i}`, username: d.uuid, password: d.token } : { clientId: `watch-${d.uuid}-${i}` };
          const c = await mqtt.connectAsync(`mqtt://${b.host}:${b.port}`, { ...opts, reconnectPeriod: 0 });
          c.on('message', (_t, payload) => {
            const msg = JSON.parse(payload.toString());
            seen.set(msg.seq, String(b.id));
          });
          await c.subscribeAsync(`iot/device/${d.uuid}/telemetry/heartbeat`, { qos: 1 });
          return c;
        }),
      );
      try {
        agent(d, 20);
        await onlineOn(d.uuid, 0);
        await waitFor(() => seen.size >= 10, { message: 'heartbeats before the move' });
        const id = await assign(d.uuid, 1);
        assert.equal((await migrationEnds(id)).status, 'completed');
        const countAtMove = seen.size;
        await waitFor(() => seen.size >= countAtMove + 10, { message: 'heartbeats after the move' });
        const seqs = [...seen.keys()].sort((a, b) => a - b);
        const missing: number[] = [];
        for (let s = seqs[0]!; s <= seqs[seqs.length - 1]!; s++) if (!seen.has(s)) missing.push(s);
        assert.deepEqual(missing, [], `no sequence number is missing (saw ${seqs.length}, ${seqs[0]}…${seqs[seqs.length - 1]})`);
        assert.ok([...seen.values()].includes(String(env.brokers[1]!.id)), 'heartbeats arrive through B after the move');
      } finally {
        await Promise.all(watchers.map((w) => w.endAsync()));
      }
    });

    it('3. stays on A while B is down, shows the reason, and completes once B is back without another request', async () => {
      const d = await newDevice();
      agent(d);
      await onlineOn(d.uuid, 0);
      await env.stopBroker(1);
      try {
        const id = await assign(d.uuid, 1);
        const failing = await waitFor(
          async () => {
            const m = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
            return m.error ? m : null;
          },
          { timeoutMs: 30_000, message: 'the migration shows the failure reason' },
        );
        assert.equal(failing.status, 'migrating');
        assert.ok(failing.attempts >= 1);
        assert.equal(await env.connectedOn(0, d.uuid), true, 'still on A');
        const shadow = (await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/device-state`)).body;
        // Between attempts it reports `error`; while retrying, `migrating` — never `connected` on B.
        assert.ok(['error', 'migrating'].includes(shadow.state.reported.mqtt.status), shadow.state.reported.mqtt.status);
        assert.equal(shadow.state.reported.mqtt.brokerId, env.brokers[0]!.id);
      } finally {
        await env.startBroker(1);
      }
      const m = await migrationEnds((await env.api('GET', `/api/v1/devices/${d.uuid}/migrations`)).body.items[0].id, 90_000);
      assert.equal(m.status, 'completed');
      await assertOn(d.uuid, 1, d.stateDir);
    });

    it('4. converges when the device was offline during the assignment', async () => {
      const d = await newDevice();
      const first = agent(d);
      await onlineOn(d.uuid, 0);
      assert.equal(await first.stop(), 0, 'the agent stops cleanly');
      await waitFor(async () => !(await env.connectedOn(0, d.uuid)), { message: 'agent gone' });
      const id = await assign(d.uuid, 1);
      agent(d);
      const m = await migrationEnds(id);
      assert.equal(m.status, 'completed');
      await assertOn(d.uuid, 1, d.stateDir);
    });

    it('4b. confirms an assignment away and straight back made while the device was offline', async () => {
      const d = await newDevice();
      const first = agent(d);
      await onlineOn(d.uuid, 0);
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/device-state`)).body.state?.reported?.mqtt?.status === 'connected', {
        message: 'the device reports connected on A',
      });
      assert.equal(await first.stop(), 0, 'the agent stops cleanly');
      await waitFor(async () => !(await env.connectedOn(0, d.uuid)), { message: 'agent gone' });
      const away = await assign(d.uuid, 1);
      const back = await assign(d.uuid, 0);
      // The device still reports A, yet the server cannot know it never left: only its report completes the row.
      assert.ok(!FINAL.includes((await env.api('GET', `/api/v1/migrations/${back}`)).body.status), 'open until the device reports');
      agent(d);
      const m = await migrationEnds(back);
      assert.equal(m.status, 'completed');
      assert.equal((await env.api('GET', `/api/v1/migrations/${away}`)).body.status, 'superseded');
      await assertOn(d.uuid, 0, d.stateDir);
    });

    it('5. A→B→A→B within a second ends on B with the middle rows superseded', async () => {
      const d = await newDevice();
      agent(d);
      await onlineOn(d.uuid, 0);
      const ids = [await assign(d.uuid, 1), await assign(d.uuid, 0), await assign(d.uuid, 1)];
      const last = await migrationEnds(ids[2]!);
      assert.equal(last.status, 'completed');
      // A move that finished before the next PUT landed stays completed; every other earlier row is superseded.
      const earlier = await Promise.all(ids.slice(0, 2).map(async (id) => (await env.api('GET', `/api/v1/migrations/${id}`)).body.status));
      for (const status of earlier) assert.ok(['superseded', 'completed'].includes(status), `earlier row is ${status}`);
      await assertOn(d.uuid, 1, d.stateDir);
    });

    it('6. converges after a server crash between the commit and the publish', { skip: kind === 'embedded' && 'the embedded server runs in the test process' }, async () => {
      const d = await newDevice();
      agent(d);
      await onlineOn(d.uuid, 0);
      const { outboxRows } = await env.crashServerAfterCommit!(d.uuid, env.brokers[1]!.id);
      assert.ok(outboxRows >= 1, 'the notification was left in the outbox');
      const id = (await env.api('GET', `/api/v1/devices/${d.uuid}/migrations`)).body.items[0].id;
      const m = await migrationEnds(id);
      assert.equal(m.status, 'completed');
      await assertOn(d.uuid, 1, d.stateDir);
    });

    it('7. converges after the agent is killed mid-move, and keeps the new broker across another restart', async () => {
      const d = await newDevice();
      const first = agent(d);
      await onlineOn(d.uuid, 0);
      await env.stopBroker(1);
      let id: number;
      try {
        id = await assign(d.uuid, 1);
        await waitFor(async () => (await env.api('GET', `/api/v1/migrations/${id}`)).body.error, { timeoutMs: 30_000, message: 'mid-move (retrying)' });
        await first.kill();
      } finally {
        await env.startBroker(1);
      }
      const second = agent(d);
      const m = await migrationEnds(id!, 60_000);
      assert.equal(m.status, 'completed');
      await assertOn(d.uuid, 1, d.stateDir);
      assert.equal(await second.stop(), 0);
      agent(d);
      await onlineOn(d.uuid, 1, 'after another restart');
      assert.equal(await env.connectedOn(0, d.uuid), false);
    });
  });
}
