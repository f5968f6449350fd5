/**
 * The agent against a whole embedded Switchyard (real PGlite, two real Aedes brokers with device auth, the real
 * HTTP API): first boot from the config endpoint, a make-before-break move with no heartbeat lost, the report
 * that completes the server's migration, persistence across a restart, a dead target broker, and a SIGKILL of
 * the CLI right after an assignment. No mocks: broker-side facts come from Aedes itself.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../../../test/helpers/switchyard.ts';
import { waitFor, withTimeout } from '../../../test/helpers/wait.ts';
import { freePort } from '../../../test/helpers/ports.ts';
import { makeBroker } from '../../../test/helpers/builders.ts';
import { createAgent, type Agent, type AgentOptions } from '../src/index.ts';
import type { MigrationStateEvent } from '../src/migration/migration-types.ts';

const BIN = fileURLToPath(new URL('../bin/switchyard-agent.mjs', import.meta.url));
const log = process.env.SWITCHYARD_TEST_LOG ? pino({ level: process.env.SWITCHYARD_TEST_LOG }) : pino({ level: 'silent' });

/** Fast timings so a failing move shows within a test's time. */
const FAST: Partial<AgentOptions> = {
  migration: { connectTimeoutMs: 2000, verifyTimeoutMs: 2000, switchTimeoutMs: 2000, backoff: { baseMs: 100, maxMs: 400 } },
  reconnectBackoff: { baseMs: 100, maxMs: 500 },
  configBackoff: { baseMs: 100, maxMs: 500 },
  stopTimeoutMs: 1000,
};

/** A second MQTT client of the same device (`uuid/watch-…`), collecting what it receives. */
class Watcher {
  readonly messages: Array<{ topic: string; payload: any }> = [];
  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, raw) => {
      let payload: unknown = raw.toString('utf8');
      try {
        payload = JSON.parse(payload as string);
      } catch {
        // not JSON: kept as text
      }
      this.messages.push({ topic, payload });
    });
  }
  static async connect(env: TestEnv, brokerIndex: number, device: { uuid: string; token: string }, filters: string[]): Promise<Watcher> {
    const b = env.brokers[brokerIndex]!;
    const client = await mqtt.connectAsync(`mqtt://${b.host}:${b.port}`, {
      clientId: `${device.uuid}/watch-${brokerIndex}-${uniqueId('w')}`,
      username: device.uuid,
      password: device.token,
      reconnectPeriod: 0,
      protocolVersion: 4,
      clean: true,
    });
    await client.subscribeAsync(filters, { qos: 1 });
    return new Watcher(client);
  }
  close(): Promise<void> {
    return this.client.endAsync(true).catch(() => undefined);
  }
}

/** Is a client with this id connected to embedded broker `i`? (Aedes' own view.) */
function connectedTo(env: TestEnv, i: number, clientId: string): boolean {
  const broker = env.sy.embeddedBrokers[i]!.broker as unknown as { clients: Record<string, { connected?: boolean }> };
  const c = broker.clients[clientId];
  return c !== undefined && c.connected !== false;
}

async function assign(env: TestEnv, uuid: string, brokerId: number): Promise<void> {
  const res = await env.api('PUT', `/api/v1/devices/${uuid}/broker`, { brokerId });
  assert.equal(res.status, 200, `PUT broker: ${res.status} ${JSON.stringify(res.body)}`);
}

async function shadowMqtt(env: TestEnv, uuid: string): Promise<any> {
  const res = await env.api('GET', `/api/v1/devices/${uuid}/shadows/device-state`);
  return res.status === 200 ? res.body?.state?.reported?.mqtt : undefined;
}

async function readState(dir: string): Promise<any> {
  return JSON.parse(await readFile(join(dir, 'agent-state.json'), 'utf8'));
}

/** Heartbeat seqs of one boot seen by any watcher. */
function seqsSeen(watchers: Watcher[], bootId: string): Set<number> {
  const seen = new Set<number>();
  for (const w of watchers) for (const m of w.messages) if (m.topic.endsWith('/telemetry/heartbeat') && m.payload?.bootId === bootId) seen.add(m.payload.seq);
  return seen;
}

describe('agent (embedded server: PGlite + two Aedes brokers)', () => {
  let env: TestEnv;
  const cleanups: Array<() => Promise<unknown>> = [];
  const tempDir = async (): Promise<string> => {
    const dir = await mkdtemp(join(tmpdir(), 'sy-agent-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    return dir;
  };
  const startAgent = async (device: { uuid: string; token: string }, stateDir: string, extra: Partial<AgentOptions> = {}, heartbeatMs = 0): Promise<Agent> => {
    const agent = createAgent({
      config: { apiUrl: env.url, deviceUuid: device.uuid, deviceToken: device.token, stateDir, heartbeatMs },
      log,
      ...FAST,
      ...extra,
    });
    cleanups.push(() => agent.stop());
    return agent;
  };
  const untilConnected = (agent: Agent, brokerId: number, timeoutMs = 10_000): Promise<unknown> =>
    withTimeout(
      new Promise<void>((resolve) => {
        const on = (info: { brokerId: number }): void => {
          if (info.brokerId === brokerId) {
            agent.off('connected', on);
            resolve();
          }
        };
        agent.on('connected', on);
      }),
      timeoutMs,
      `agent connected to broker ${brokerId}`,
    );

  before(async () => {
    env = await startTestSwitchyard('embedded');
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    await env?.stop();
  });

  it('boots from the config endpoint, moves make-before-break to the assigned broker without losing a heartbeat, and keeps the new broker across a restart', { timeout: 60_000 }, async () => {
    const [b0, b1] = [env.brokers[0]!.id, env.brokers[1]!.id];
    const device = await env.createDevice({ brokerIndex: 0 });
    const filters = [`iot/device/${device.uuid}/telemetry/heartbeat`, `iot/device/${device.uuid}/status`];
    const watchers = [await Watcher.connect(env, 0, device, filters), await Watcher.connect(env, 1, device, filters)];
    cleanups.push(() => Promise.all(watchers.map((w) => w.close())));
    const stateDir = await tempDir();

    const agent = await startAgent(device, stateDir, {}, 20);
    const transitions: MigrationStateEvent[] = [];
    agent.on('migration:state', (e) => transitions.push(e));
    const connected = untilConnected(agent, b0);
    await agent.start();
    await connected;
    assert.equal((await readState(stateDir)).broker.brokerId, b0, 'first boot persisted the broker from the config endpoint');
    assert.ok(connectedTo(env, 0, device.uuid), 'broker 0 sees the agent');
    // Reports what it runs: the shadow is created with reported.mqtt connected on broker 0.
    await waitFor(async () => (await shadowMqtt(env, device.uuid))?.brokerId === b0, { message: 'reported.mqtt on broker 0' });
    await waitFor(() => (agent.state().heartbeat?.seq ?? 0) >= 5, { message: 'a few heartbeats' });

    await assign(env, device.uuid, b1);
    await waitFor(() => transitions.some((t) => t.to === 'idle' && t.brokerId === b1), { timeoutMs: 15_000, message: 'move completed (idle on broker 1)' });
    const names = transitions.map((t) => t.to);
    for (const step of ['connecting', 'verifying', 'switching', 'idle'] as const) assert.ok(names.includes(step), `passed through ${step}: ${names.join(' → ')}`);
    await waitFor(() => connectedTo(env, 1, device.uuid) && !connectedTo(env, 0, device.uuid), { message: 'on broker 1 and gone from broker 0' });
    assert.equal(agent.state().connectedBrokerId, b1);

    const reported = await waitFor(async () => {
      const m = await shadowMqtt(env, device.uuid);
      return m?.status === 'connected' && m.brokerId === b1 ? m : null;
    }, { message: 'reported.mqtt connected on broker 1' });
    assert.equal(reported.previousBrokerId, b0);
    assert.equal(reported.broker, `mqtt://${env.brokers[1]!.host}:${env.brokers[1]!.port}`);
    assert.equal(reported.targetBrokerId, undefined, 'targetBrokerId cleared');
    assert.equal(typeof reported.migratedAt, 'string');
    const migrations = await env.api('GET', `/api/v1/devices/${device.uuid}/migrations`);
    assert.equal(migrations.body.items[0]?.status, 'completed', 'the device report through broker 1 completed the migration');
    assert.equal((await readState(stateDir)).broker.brokerId, b1, 'state file says broker 1');
    // Presence: the old broker heard `offline` from the agent before it left.
    await waitFor(() => watchers[0]!.messages.some((m) => m.topic.endsWith('/status') && m.payload?.state === 'offline' && m.payload?.brokerId === b0), { message: 'offline on broker 0' });

    // A few more beats through broker 1, then stop (which waits for every PUBACK) and count.
    const seqAtMove = agent.state().heartbeat!.seq;
    await waitFor(() => agent.state().heartbeat!.seq >= seqAtMove + 5, { message: 'heartbeats after the move' });
    const bootId = agent.state().heartbeat!.bootId;
    await agent.stop();
    const last = agent.state().heartbeat?.seq ?? 0;
    assert.ok(last >= seqAtMove + 5);
    const seen = await waitFor(() => {
      const s = seqsSeen(watchers, bootId);
      return s.size >= last ? s : null;
    }, { message: 'every heartbeat at the watchers' }).catch(() => seqsSeen(watchers, bootId));
    const missing = Array.from({ length: last }, (_, i) => i + 1).filter((n) => !seen.has(n));
    assert.deepEqual(missing, [], `heartbeat seqs missing across the move (1..${last})`);
    if (process.env.SWITCHYARD_TEST_LOG) console.log({ last, seqAtMove, perBroker: watchers.map((w) => seqsSeen([w], bootId).size) });
    assert.ok([...seqsSeen([watchers[1]!], bootId)].length > 0, 'heartbeats went through broker 1 after the move');
    assert.ok(!connectedTo(env, 1, device.uuid), 'a stopped agent disconnected');

    // Restart: starts on broker 1 from the state file without asking the API.
    let fetched = 0;
    const again = await startAgent(device, stateDir, {
      fetch: async () => {
        fetched++;
        throw new Error('a later boot must not ask the API');
      },
    });
    const back = untilConnected(again, b1);
    await again.start();
    await back;
    assert.equal(fetched, 0);
    assert.ok(connectedTo(env, 1, device.uuid) && !connectedTo(env, 0, device.uuid));
    await again.stop();
  });

  it('stays on its broker and reports status "error" while the target is down, retries with backoff, and follows a newer assignment', { timeout: 60_000 }, async () => {
    const [b0, b1] = [env.brokers[0]!.id, env.brokers[1]!.id];
    const dead = await env.api('POST', '/api/v1/brokers', makeBroker({ port: await freePort() }));
    assert.ok(dead.status === 201 || dead.status === 200, `register broker: ${dead.status} ${JSON.stringify(dead.body)}`);
    const deadId: number = dead.body.id;
    const device = await env.createDevice({ brokerIndex: 0 });
    const stateDir = await tempDir();
    const agent = await startAgent(device, stateDir);
    const transitions: MigrationStateEvent[] = [];
    agent.on('migration:state', (e) => transitions.push(e));
    const connected = untilConnected(agent, b0);
    await agent.start();
    await connected;

    await assign(env, device.uuid, deadId);
    const reported = await waitFor(async () => {
      const m = await shadowMqtt(env, device.uuid);
      return m?.status === 'error' && m.targetBrokerId === deadId ? m : null;
    }, { timeoutMs: 15_000, message: 'reported.mqtt status error' });
    assert.equal(reported.brokerId, b0, 'still reports the broker it is on');
    assert.match(reported.error, /ECONNREFUSED|cannot connect/);
    assert.equal(typeof reported.retryInMs, 'number');
    // Retries: a second attempt starts after the backoff.
    await waitFor(() => transitions.some((t) => t.to === 'connecting' && t.cause === 'backoffElapsed'), { timeoutMs: 10_000, message: 'a retry after backoff' });
    assert.ok(connectedTo(env, 0, device.uuid), 'still connected to broker 0');
    assert.equal((await readState(stateDir)).broker.brokerId, b0, 'the state file still says broker 0');
    const migrations = await env.api('GET', `/api/v1/devices/${device.uuid}/migrations`);
    assert.equal(migrations.body.items[0]?.status, 'migrating');
    assert.ok(migrations.body.items[0]?.attempts >= 1);

    // A newer assignment preempts the failing move.
    await assign(env, device.uuid, b1);
    await waitFor(() => connectedTo(env, 1, device.uuid) && !connectedTo(env, 0, device.uuid), { timeoutMs: 15_000, message: 'moved to broker 1' });
    await waitFor(async () => {
      const m = await shadowMqtt(env, device.uuid);
      return m?.status === 'connected' && m.brokerId === b1 && m.error === undefined;
    }, { message: 'reported connected on broker 1, error cleared' });
    await agent.stop();
  });

  it('holds the "migrating" report of a first attempt: a slow move reports it after the hold, a superseded one never', { timeout: 60_000 }, async () => {
    // A broker that accepts TCP and never answers CONNECT: the move stays in `connecting` until its timeout.
    const sockets = new Set<import('node:net').Socket>();
    const blackHole = net.createServer((s) => {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => sockets.delete(s));
    });
    const port = await freePort();
    await new Promise<void>((resolve) => blackHole.listen(port, '127.0.0.1', resolve));
    cleanups.push(async () => {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => blackHole.close(resolve));
    });
    const silent = await env.api('POST', '/api/v1/brokers', makeBroker({ port }));
    assert.ok(silent.status === 201 || silent.status === 200, `register broker: ${silent.status}`);
    const b0 = env.brokers[0]!.id;
    const device = await env.createDevice({ brokerIndex: 0 });
    // A long connect timeout: the move stays in its first attempt, so only the held report can say `migrating`.
    const agent = await startAgent(device, await tempDir(), { migratingReportDelayMs: 300, migration: { ...FAST.migration, connectTimeoutMs: 30_000 } });
    const transitions: MigrationStateEvent[] = [];
    agent.on('migration:state', (e) => transitions.push(e));
    const connected = untilConnected(agent, b0);
    await agent.start();
    await connected;
    await waitFor(async () => (await shadowMqtt(env, device.uuid))?.status === 'connected', { timeoutMs: 20_000, message: 'reported connected on broker 0' });

    await assign(env, device.uuid, silent.body.id);
    const startedAt = await waitFor(() => transitions.find((t) => t.to === 'connecting')?.at ?? null, { timeoutMs: 20_000, message: 'move started' });
    const m = await waitFor(async () => {
      const r = await shadowMqtt(env, device.uuid);
      return r?.status === 'migrating' ? r : null;
    }, { timeoutMs: 20_000, message: 'reported.mqtt status migrating' });
    assert.equal(m.targetBrokerId, silent.body.id);
    assert.equal(m.brokerId, b0, 'reported through the broker it is on');
    const migrations = await env.api('GET', `/api/v1/devices/${device.uuid}/migrations`);
    assert.equal(migrations.body.items[0]?.status, 'migrating');
    assert.ok(Date.parse(migrations.body.items[0]!.migratingAt) - startedAt >= 250, 'not before the hold ended');

    // A newer assignment (back to where it is) ends the move; nothing held is sent afterwards.
    await assign(env, device.uuid, b0);
    await waitFor(() => transitions.at(-1)?.to === 'idle', { timeoutMs: 20_000, message: 'idle again' }).catch(async (err: Error) => {
      const shadowNow = await env.api('GET', `/api/v1/devices/${device.uuid}/shadows/device-state`);
      throw new Error(`${err.message}; transitions ${JSON.stringify(transitions.map((t) => [t.from, t.to, t.cause, t.version, t.reason]))}; shadow ${JSON.stringify(shadowNow.body)}`);
    });
    await waitFor(async () => (await shadowMqtt(env, device.uuid))?.status === 'connected', { timeoutMs: 20_000, message: 'reported connected again' });
    await agent.stop();
  });

  it('reconnects with backoff when the broker drops it, re-subscribes, and loses no heartbeat', { timeout: 60_000 }, async () => {
    const b0 = env.brokers[0]!.id;
    const b1 = env.brokers[1]!.id;
    const device = await env.createDevice({ brokerIndex: 0 });
    const watcher = await Watcher.connect(env, 0, device, [`iot/device/${device.uuid}/telemetry/heartbeat`]);
    cleanups.push(() => watcher.close());
    const agent = await startAgent(device, await tempDir(), {}, 20);
    const events: string[] = [];
    agent.on('connected', (i) => events.push(`connected:${i.brokerId}`));
    agent.on('disconnected', (i) => events.push(`disconnected:${i.brokerId}:${i.retryInMs}`));
    const connected = untilConnected(agent, b0);
    await agent.start();
    await connected;
    for (let drop = 0; drop < 2; drop++) {
      await waitFor(() => (agent.state().heartbeat?.seq ?? 0) >= 5 * (drop + 1), { message: 'heartbeats' });
      const again = untilConnected(agent, b0);
      const aedes = env.sy.embeddedBrokers[0]!.broker as unknown as { clients: Record<string, { close(): void }> };
      aedes.clients[device.uuid]!.close();
      await again;
    }
    assert.equal(events.filter((e) => e.startsWith('disconnected')).length, 2, events.join(', '));
    // Still subscribed after the reconnects: an assignment arrives and is carried out.
    await assign(env, device.uuid, b1);
    await waitFor(() => connectedTo(env, 1, device.uuid) && !connectedTo(env, 0, device.uuid), { timeoutMs: 15_000, message: 'moved to broker 1 after reconnects' });
    const bootId = agent.state().heartbeat!.bootId;
    await agent.stop();
    const last = agent.state().heartbeat!.seq;
    // The watcher is on broker 0 only: it must have every beat sent before the move (the rest went to broker 1).
    const seen = seqsSeen([watcher], bootId);
    const upTo = Math.max(...seen);
    const missing = Array.from({ length: upTo }, (_, i) => i + 1).filter((n) => !seen.has(n));
    assert.deepEqual(missing, [], `heartbeats lost across reconnects (1..${upTo} of ${last})`);
    assert.ok(upTo >= 10);
  });

  it('the CLI exits 2 with a precise message when the API refuses its token, and never prints it', { timeout: 30_000 }, async () => {
    const device = await env.createDevice({ brokerIndex: 0 });
    const wrong = `${device.token}x`;
    const child = spawn(process.execPath, [BIN, '--api-url', env.url, '--device-uuid', device.uuid, '--state-dir', await tempDir()], {
      env: { ...process.env, SWITCHYARD_DEVICE_TOKEN: wrong },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const code = await withTimeout(new Promise<number | null>((r) => child.once('exit', (c) => r(c))), 20_000, 'CLI exit');
    assert.equal(code, 2, out);
    assert.match(out, /answered 40[13].*check the device token/);
    assert.ok(!out.includes(wrong) && !out.includes(device.token));
  });

  it('the CLI converges on the assigned broker after a SIGKILL right after the assignment, and stops cleanly on SIGTERM', { timeout: 60_000 }, async () => {
    const [b0, b1] = [env.brokers[0]!.id, env.brokers[1]!.id];
    const device = await env.createDevice({ brokerIndex: 0 });
    const stateDir = await tempDir();
    const run = (): ChildProcess => {
      const child = spawn(process.execPath, [BIN, '--api-url', env.url, '--device-uuid', device.uuid, '--state-dir', stateDir, '--log-level', 'warn'], {
        env: { ...process.env, SWITCHYARD_DEVICE_TOKEN: device.token },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      cleanups.push(async () => {
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      });
      return child;
    };
    const first = run();
    await waitFor(() => connectedTo(env, 0, device.uuid), { timeoutMs: 20_000, message: 'CLI agent on broker 0' });
    await assign(env, device.uuid, b1);
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    const second = run();
    let out = '';
    second.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    second.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => connectedTo(env, 1, device.uuid) && !connectedTo(env, 0, device.uuid), { timeoutMs: 20_000, message: 'restarted agent on broker 1' });
    await waitFor(async () => {
      const m = await shadowMqtt(env, device.uuid);
      return m?.status === 'connected' && m.brokerId === b1;
    }, { message: 'reported connected on broker 1' });
    await waitFor(async () => (await env.api('GET', `/api/v1/devices/${device.uuid}/migrations`)).body.items[0]?.status === 'completed', { message: 'migration completed' });
    await waitFor(async () => (await readState(stateDir)).broker.brokerId === b1, { message: 'state file on broker 1' });
    assert.notEqual(b0, b1);

    second.kill('SIGTERM');
    const code = await withTimeout(new Promise<number | null>((r) => second.once('exit', (c) => r(c))), 10_000, 'CLI exit');
    assert.equal(code, 0, `clean exit on SIGTERM; output:\n${out}`);
    assert.ok(!out.includes(device.token), 'the token never appears in the output');
    await waitFor(() => !connectedTo(env, 1, device.uuid), { message: 'disconnected after SIGTERM' });
  });
});
