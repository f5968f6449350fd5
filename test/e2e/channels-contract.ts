/**
 * Issue #4's channel cases, end to end: real `switchyard-agent` processes told of a move through the MQTT command
 * (with acks), the HTTP config poll and long-poll, two channels at once, an expired command, and the MQTT fallback.
 * As in migration-contract.ts, "the device is on B" is checked on the brokers, in the migration row and in the
 * device's own report.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startAgentProcess, type TestProcess } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';
import { uniqueId } from '../helpers/switchyard.ts';
import { startE2E, type E2EEnv } from './e2e-env.ts';

const FINAL = ['completed', 'failed', 'superseded', 'canceled', 'timed_out'];
/** Server-wide command TTL of this suite, seconds. */
const COMMAND_TTL_S = 2;

interface Device {
  uuid: string;
  token: string;
  stateDir: string;
}

export function channelsE2E(kind: 'postgres' | 'embedded', skip: string | false): void {
  describe(`assignment channels, end to end (${kind})`, { skip, timeout: 600_000 }, () => {
    let env: E2EEnv;
    const agents: TestProcess[] = [];
    before(async () => {
      env = await startE2E(kind, { serverEnv: { SWITCHYARD_COMMAND_TTL_S: String(COMMAND_TTL_S) } });
    });
    after(async () => {
      for (const a of agents) a.child.kill('SIGCONT');
      await Promise.all(agents.map((a) => a.stop()));
      await env?.stop();
    });

    async function newDevice(): Promise<Device> {
      const uuid = uniqueId('e2e-ch');
      const res = await env.api('POST', '/api/v1/devices', { uuid, brokerId: env.brokers[0]!.id });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return { uuid, token: res.body.token, stateDir: await env.tmp() };
    }

    function agent(d: Device, extraArgs: string[]): TestProcess {
      const p = startAgentProcess({ apiUrl: env.apiUrl, uuid: d.uuid, token: d.token, stateDir: d.stateDir, extraArgs });
      agents.push(p);
      return p;
    }

    async function onlineOn(uuid: string, brokerIndex: number, p: TestProcess): Promise<void> {
      const id = env.brokers[brokerIndex]!.id;
      await waitFor(
        async () => {
          const dev = (await env.api('GET', `/api/v1/devices/${uuid}`)).body;
          return dev.online && dev.connectedBrokerId === id && (await env.connectedOn(brokerIndex, uuid));
        },
        { timeoutMs: 30_000, intervalMs: 100, message: `device online on broker ${id}` },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- agent output ---\n${p.output().slice(-4000)}`);
      });
    }

    async function assign(uuid: string, brokerIndex: number, channel: string): Promise<{ id: number; version: number }> {
      const res = await env.api('PUT', `/api/v1/devices/${uuid}/broker`, { brokerId: env.brokers[brokerIndex]!.id, channel });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return { id: res.body.migration.id, version: res.body.shadowVersion };
    }

    async function migrationEnds(id: number, p: TestProcess, timeoutMs = 30_000): Promise<any> {
      return waitFor(
        async () => {
          const m = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
          return FINAL.includes(m.status) ? m : null;
        },
        { timeoutMs, intervalMs: 100, message: `migration ${id} to end` },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- agent output ---\n${p.output().slice(-4000)}`);
      });
    }

    async function assertOn(d: Device, brokerIndex: number, o: { otherBrokerDead?: boolean } = {}): Promise<void> {
      assert.equal(await env.connectedOn(brokerIndex, d.uuid), true, `the broker ${brokerIndex} has the device's session`);
      if (!o.otherBrokerDead) {
        await waitFor(async () => !(await env.connectedOn(1 - brokerIndex, d.uuid)), { timeoutMs: 10_000, message: 'the device left the other broker' });
      }
      const shadow = (await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/device-state`)).body;
      assert.equal(shadow.state.reported.mqtt.brokerId, env.brokers[brokerIndex]!.id);
      assert.equal(shadow.state.reported.mqtt.status, 'connected');
      assert.equal(shadow.state.delta, undefined);
      const state = JSON.parse(await readFile(join(d.stateDir, 'agent-state.json'), 'utf8'));
      assert.equal(state.broker.brokerId, env.brokers[brokerIndex]!.id, 'the new broker is persisted');
    }

    /** Moves the agent started: `from → connecting` transitions caused by an assignment, from its debug log. */
    const movesStarted = (p: TestProcess): number => p.logs().filter((l) => l.component === 'migration-runner' && /→ connecting \(assignment\)/.test(String(l.msg))).length;

    /** A config request as the device makes it. */
    async function getConfig(d: Device, o: { etag?: string; wait?: number } = {}): Promise<{ status: number; etag: string | null; body: any }> {
      const res = await fetch(`${env.apiUrl}/api/v1/devices/${d.uuid}/config${o.wait !== undefined ? `?wait=${o.wait}` : ''}`, {
        headers: { authorization: `Bearer ${d.token}`, ...(o.etag ? { 'if-none-match': o.etag } : {}) },
      });
      const text = await res.text();
      return { status: res.status, etag: res.headers.get('etag'), body: text ? JSON.parse(text) : undefined };
    }

    it('moves a device through the MQTT command and records received, then completed, in the migration row', async () => {
      const d = await newDevice();
      const p = agent(d, ['--channels', 'command']);
      await onlineOn(d.uuid, 0, p);
      const { id } = await assign(d.uuid, 1, 'command');
      const m = await migrationEnds(id, p);
      assert.equal(m.status, 'completed', JSON.stringify(m));
      assert.equal(m.channel, 'command');
      assert.match(m.commandId, /^[0-9a-f-]{36}$/);
      const acks = await waitFor(async () => {
        const row = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
        return row.acks.some((a: any) => a.status === 'completed') ? row.acks : null;
      }, { message: 'the completed ack' });
      assert.deepEqual(acks.map((a: any) => a.status), ['received', 'completed']);
      await assertOn(d, 1);
    });

    it('moves a device through plain config polling (--channels poll --poll-interval-ms 500)', async () => {
      const d = await newDevice();
      const p = agent(d, ['--channels', 'poll', '--poll-interval-ms', '500']);
      await onlineOn(d.uuid, 0, p);
      const { id } = await assign(d.uuid, 1, 'poll');
      const m = await migrationEnds(id, p);
      assert.equal(m.status, 'completed', JSON.stringify(m));
      assert.equal(m.channel, 'poll');
      assert.equal(m.notifiedAt, null, 'nothing was published for a poll assignment');
      await assertOn(d, 1);
    });

    it('moves a device through the config long-poll (--channels poll --long-poll-s 10) within a second', async () => {
      const d = await newDevice();
      const p = agent(d, ['--channels', 'poll', '--long-poll-s', '10']);
      await onlineOn(d.uuid, 0, p);
      await sleep(300); // its first (plain) request is answered; the long-poll is held
      const t0 = Date.now();
      const { id } = await assign(d.uuid, 1, 'poll');
      const m = await migrationEnds(id, p);
      assert.equal(m.status, 'completed', JSON.stringify(m));
      assert.ok(Date.parse(m.completedAt) - t0 < 1000, `the move took ${Date.parse(m.completedAt) - t0} ms`);
      await assertOn(d, 1);
    });

    it('wakes a held long-poll within 100 ms of the assignment, and answers 304 once its time is up', async (t) => {
      const d = await newDevice();
      const first = await getConfig(d);
      assert.equal(first.status, 200);
      assert.ok(first.etag);

      // Out of time: 304 after about `wait` seconds, not before.
      const started = Date.now();
      const idle = await getConfig(d, { etag: first.etag!, wait: 1 });
      const took = Date.now() - started;
      assert.equal(idle.status, 304);
      assert.ok(took >= 950 && took < 3000, `a 1 s long-poll answered after ${took} ms`);

      // Woken by the assignment itself.
      const held = getConfig(d, { etag: first.etag!, wait: 10 }).then((r) => ({ ...r, at: Date.now() }));
      await sleep(300);
      const { version } = await assign(d.uuid, 1, 'poll');
      const putAnsweredAt = Date.now();
      const woken = await held;
      const delay = woken.at - putAnsweredAt;
      assert.equal(woken.status, 200);
      assert.equal(woken.body.mqtt.brokerId, env.brokers[1]!.id);
      assert.equal(woken.body.version, version);
      assert.notEqual(woken.etag, first.etag);
      t.diagnostic(`long-poll answered ${delay} ms after the PUT answer; a 1 s long-poll answered 304 after ${took} ms`);
      assert.ok(delay < 100, `the long-poll answered ${delay} ms after the PUT`);
    });

    it('moves once when the assignment arrives on two channels (command and long-poll)', async () => {
      const d = await newDevice();
      const p = agent(d, ['--channels', 'command,poll', '--long-poll-s', '10']);
      await onlineOn(d.uuid, 0, p);
      await sleep(300);
      const { id } = await assign(d.uuid, 1, 'command');
      const m = await migrationEnds(id, p);
      assert.equal(m.status, 'completed', JSON.stringify(m));
      await assertOn(d, 1);
      // Both channels delivered it: the command was acknowledged, and the poller saw the new config.
      await waitFor(async () => (await env.api('GET', `/api/v1/migrations/${id}`)).body.acks.some((a: any) => a.status === 'completed'), { message: 'command completed ack' });
      await waitFor(() => p.logs().some((l) => l.component === 'config-poller' && /config names/.test(String(l.msg))), { message: 'the poller saw the assignment' });
      assert.equal(movesStarted(p), 1, `one move started:\n${p.output().slice(-4000)}`);
    });

    it('acknowledges an expired command as failed: expired, does not act on it, and still converges through the shadow', async () => {
      const d = await newDevice();
      const p = agent(d, ['--channels', 'command']);
      await onlineOn(d.uuid, 0, p);
      // The device is asleep (SIGSTOP) while the command is sent, and wakes after it expired; its session stays
      // open, so the broker delivers the command late.
      p.child.kill('SIGSTOP');
      let id: number;
      try {
        ({ id } = await assign(d.uuid, 1, 'command'));
        await waitFor(async () => (await env.api('GET', `/api/v1/migrations/${id}`)).body.notifiedAt !== null, { message: 'the command was published' });
        await sleep(COMMAND_TTL_S * 1000 + 1000);
      } finally {
        p.child.kill('SIGCONT');
      }
      const m = await migrationEnds(id!, p);
      assert.equal(m.status, 'completed', JSON.stringify(m));
      const acks = await waitFor(async () => {
        const row = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
        return row.acks.some((a: any) => a.status === 'failed') ? row.acks : null;
      }, { message: 'the failed ack' });
      assert.deepEqual(acks.map((a: any) => [a.status, a.error]), [['received', undefined], ['failed', 'expired']]);
      assert.ok(p.logs().some((l) => /command expired/.test(String(l.msg))), 'the agent says it did not act on the command');
      await assertOn(d, 1);
    });

    it('falls back to polling when its broker dies, and moves to the broker the config names', { skip: kind === 'embedded' && 'needs a broker that can be stopped' }, async () => {
      const d = await newDevice();
      const p = agent(d, ['--channels', 'shadow', '--fallback-after-ms', '1000', '--poll-interval-ms', '1000']);
      await onlineOn(d.uuid, 0, p);
      await env.stopBroker(0);
      try {
        const { id } = await assign(d.uuid, 1, 'shadow');
        const m = await migrationEnds(id, p);
        assert.equal(m.status, 'completed', JSON.stringify(m));
        assert.ok(p.logs().some((l) => /polling the config over HTTP/.test(String(l.msg))), 'the agent fell back to polling');
        await assertOn(d, 1, { otherBrokerDead: true });
      } finally {
        await env.startBroker(0);
      }
    });
  });
}
