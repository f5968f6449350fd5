/**
 * Issue 2: the shadow protocol driven by an MQTT client we did not write — Mosquitto's `mosquitto_pub` and
 * `mosquitto_sub` — against PostgreSQL + Mosquitto. Each `mosquitto_sub` is started (and its SUBACK seen) before
 * the request is published, exits by itself after `-C n` messages, and is bounded by `-W` seconds.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { findExecutable, findMosquittoBinaries } from '../../scripts/test-servers.mjs';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../helpers/switchyard.ts';
import { withTimeout } from '../helpers/wait.ts';

const real = realServers(['postgres', 'mosquitto', 'mosquitto-clients']);

/** Seconds `mosquitto_sub -W` waits for its messages; the test waits a little longer. */
const SUB_TIMEOUT_S = 20;

interface CliMessage {
  topic: string;
  payload: any;
}

describe('shadow protocol through mosquitto_pub and mosquitto_sub (PostgreSQL + Mosquitto)', { skip: real.skip }, () => {
  let env: TestEnv;
  let host: string;
  let port: string;
  const children = new Set<ChildProcess>();
  const bins = findMosquittoBinaries();
  // mosquitto_sub's stdout (messages and, with -d, the debug lines such as "received SUBACK") is block-buffered
  // into a pipe, so nothing would arrive before it exits: stdbuf (coreutils) makes it line-buffered.
  const stdbuf = findExecutable('stdbuf');

  before(async () => {
    env = await startTestSwitchyard('postgres', { brokers: 1 });
    host = env.brokers[0]!.host;
    port = String(env.brokers[0]!.port);
  });
  after(async () => {
    // A failed test may leave a mosquitto_sub waiting for its -W timeout: end it now.
    await Promise.all(
      [...children].map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        const exited = new Promise((resolve) => child.once('exit', resolve));
        child.kill('SIGKILL');
        await exited;
      }),
    );
    await env?.stop();
  });

  function run(bin: string, args: string[]): ChildProcess {
    const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
  }

  /**
   * Starts `mosquitto_sub -d -v -C count` on `topics` and resolves once Mosquitto has acknowledged the
   * subscription (`-d` prints "received SUBACK"). `messages` resolves with the `count` messages, parsed.
   */
  async function subscribe(topics: string[], count: number): Promise<{ messages: Promise<CliMessage[]> }> {
    const args = ['-h', host, '-p', port, '-i', uniqueId('cli-sub'), '-q', '1', '-v', '-d', '-C', String(count), '-W', String(SUB_TIMEOUT_S)];
    for (const t of topics) args.push('-t', t);
    if (stdbuf === null) throw new Error('stdbuf not found (install coreutils): mosquitto_sub output would stay buffered');
    const child = run(stdbuf, ['-oL', bins.mosquittoSub!, ...args]);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const received: CliMessage[] = [];
    let onSubAck!: () => void;
    const subscribed = new Promise<void>((resolve) => (onSubAck = resolve));
    const lines = createInterface({ input: child.stdout! });
    const linesClosed = new Promise<void>((resolve) => lines.once('close', resolve));
    lines.on('line', (line) => {
      // With -d, Mosquitto's debug lines share stdout with the messages.
      if (line.startsWith('Client ') || line.startsWith('Subscribed (')) {
        if (/received SUBACK/.test(line)) onSubAck();
        return;
      }
      const space = line.indexOf(' ');
      const topic = space < 0 ? line : line.slice(0, space);
      const text = space < 0 ? '' : line.slice(space + 1);
      let payload: unknown;
      try {
        payload = JSON.parse(text);
      } catch {
        payload = text; // asserted on by the test, which then shows the raw text
      }
      received.push({ topic, payload });
    });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    await withTimeout(
      Promise.race([subscribed, exited.then((code) => Promise.reject(new Error(`mosquitto_sub exited (${code}) before SUBACK: ${stderr}`)))]),
      10_000,
      `mosquitto_sub to subscribe to ${topics.join(', ')}`,
    );
    const messages = withTimeout(exited, (SUB_TIMEOUT_S + 5) * 1000, `mosquitto_sub to exit`).then(async (code) => {
      await linesClosed;
      assert.equal(code, 0, `mosquitto_sub got ${received.length} of ${count} message(s) on ${topics.join(', ')}: ${JSON.stringify(received)} ${stderr}`);
      return received;
    });
    messages.catch(() => undefined); // awaited by the test; this only keeps an early failure from going unhandled
    return { messages };
  }

  /** `mosquitto_pub -q 1`; resolves when it exits 0 (after PUBACK). */
  async function publish(topic: string, message: string): Promise<void> {
    const child = run(bins.mosquittoPub!, ['-h', host, '-p', port, '-i', uniqueId('cli-pub'), '-q', '1', '-t', topic, '-m', message]);
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const code = await withTimeout(new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c))), 10_000, `mosquitto_pub on ${topic}`);
    assert.equal(code, 0, `mosquitto_pub failed: ${stderr}`);
  }

  async function newDevice(): Promise<{ uuid: string; named: (name: string) => string; classic: string }> {
    const { uuid } = await env.createDevice({ uuid: uniqueId('cli') });
    return { uuid, named: (name) => `iot/device/${uuid}/shadow/name/${name}`, classic: `iot/device/${uuid}/shadow` };
  }

  const nowS = (): number => Math.floor(Date.now() / 1000);
  function assertRecent(ts: unknown, what: string): void {
    assert.equal(typeof ts, 'number', `${what} is a number`);
    assert.ok(Math.abs((ts as number) - nowS()) <= 60, `${what} (${String(ts)}) is within a minute of now`);
  }

  it('accepts an update with its version, clientToken and per-leaf metadata, and publishes documents', async () => {
    const d = await newDevice();
    const base = d.named('config');
    const sub = await subscribe([`${base}/update/accepted`, `${base}/update/documents`], 2);
    await publish(`${base}/update`, JSON.stringify({ state: { reported: { temp: 21, fw: { v: '1.0.0' } } }, clientToken: 'cli-upd-1' }));
    const messages = await sub.messages;
    const accepted = messages.find((m) => m.topic === `${base}/update/accepted`);
    const documents = messages.find((m) => m.topic === `${base}/update/documents`);
    assert.ok(accepted && documents, JSON.stringify(messages));
    assert.equal(accepted.payload.version, 1);
    assert.equal(accepted.payload.clientToken, 'cli-upd-1');
    assert.deepEqual(accepted.payload.state, { reported: { temp: 21, fw: { v: '1.0.0' } } });
    assertRecent(accepted.payload.timestamp, 'timestamp');
    assertRecent(accepted.payload.metadata.reported.temp.timestamp, 'metadata.reported.temp.timestamp');
    assertRecent(accepted.payload.metadata.reported.fw.v.timestamp, 'metadata.reported.fw.v.timestamp');
    assert.equal(documents.payload.previous, null);
    assert.equal(documents.payload.current.version, 1);
    assert.deepEqual(documents.payload.current.state, { reported: { temp: 21, fw: { v: '1.0.0' } } });
    assert.equal(documents.payload.clientToken, 'cli-upd-1');
  });

  it('publishes a delta after an HTTP desired change, and get returns desired, reported and delta', async () => {
    const d = await newDevice();
    const base = d.named('config');
    const first = await subscribe([`${base}/update/accepted`], 1);
    await publish(`${base}/update`, JSON.stringify({ state: { reported: { led: 'off', rate: 5 } } }));
    assert.equal((await first.messages)[0]!.payload.version, 1);

    const deltaSub = await subscribe([`${base}/update/delta`], 1);
    const res = await env.api('POST', `/api/v1/devices/${d.uuid}/shadows/config`, { state: { desired: { led: 'on', rate: 5 } } });
    assert.equal(res.status, 200);
    const [delta] = await deltaSub.messages;
    assert.equal(delta!.topic, `${base}/update/delta`);
    assert.deepEqual(delta!.payload.state, { led: 'on' }, 'only the leaves that differ from reported');
    assert.equal(delta!.payload.version, 2);
    assertRecent(delta!.payload.metadata.led.timestamp, 'delta metadata.led.timestamp');

    const getSub = await subscribe([`${base}/get/accepted`, `${base}/get/rejected`], 1);
    await publish(`${base}/get`, JSON.stringify({ clientToken: 'cli-get-1' }));
    const [get] = await getSub.messages;
    assert.equal(get!.topic, `${base}/get/accepted`);
    assert.deepEqual(get!.payload.state, { desired: { led: 'on', rate: 5 }, reported: { led: 'off', rate: 5 }, delta: { led: 'on' } });
    assert.equal(get!.payload.version, 2);
    assert.equal(get!.payload.clientToken, 'cli-get-1');
    assertRecent(get!.payload.metadata.desired.led.timestamp, 'metadata.desired.led.timestamp');
    assertRecent(get!.payload.metadata.reported.rate.timestamp, 'metadata.reported.rate.timestamp');
  });

  it('answers a get of a missing shadow with 404 on get/rejected', async () => {
    const d = await newDevice();
    const base = d.named('nothing-here');
    const sub = await subscribe([`${base}/get/accepted`, `${base}/get/rejected`], 1);
    await publish(`${base}/get`, JSON.stringify({ clientToken: 'cli-404' }));
    const [reply] = await sub.messages;
    assert.equal(reply!.topic, `${base}/get/rejected`);
    assert.equal(reply!.payload.code, 404);
    assert.equal(reply!.payload.message, "No shadow exists with name: 'nothing-here'");
    assert.equal(reply!.payload.clientToken, 'cli-404');
    assertRecent(reply!.payload.timestamp, 'timestamp');
  });

  it('rejects a stale version with 409 and accepts the current one', async () => {
    const d = await newDevice();
    const base = d.classic;
    const seed = await subscribe([`${base}/update/accepted`], 1);
    await publish(`${base}/update`, JSON.stringify({ state: { reported: { a: 1 } } }));
    assert.equal((await seed.messages)[0]!.payload.version, 1);

    const stale = await subscribe([`${base}/update/accepted`, `${base}/update/rejected`], 1);
    await publish(`${base}/update`, JSON.stringify({ state: { reported: { a: 2 } }, version: 7, clientToken: 'cli-stale' }));
    const [conflict] = await stale.messages;
    assert.equal(conflict!.topic, `${base}/update/rejected`);
    assert.deepEqual({ code: conflict!.payload.code, message: conflict!.payload.message, clientToken: conflict!.payload.clientToken }, { code: 409, message: 'Version conflict', clientToken: 'cli-stale' });

    const current = await subscribe([`${base}/update/accepted`, `${base}/update/rejected`], 1);
    await publish(`${base}/update`, JSON.stringify({ state: { reported: { a: 3 } }, version: 1, clientToken: 'cli-current' }));
    const [ok] = await current.messages;
    assert.equal(ok!.topic, `${base}/update/accepted`);
    assert.equal(ok!.payload.version, 2);
    assert.equal(ok!.payload.clientToken, 'cli-current');
    const http = await env.api('GET', `/api/v1/devices/${d.uuid}/shadow`);
    assert.deepEqual(http.body.state, { reported: { a: 3 } }, 'the stale update changed nothing');
  });

  it('deletes a shadow and then answers its get with 404', async () => {
    const d = await newDevice();
    const base = d.named('temp');
    const seed = await subscribe([`${base}/update/accepted`], 1);
    await publish(`${base}/update`, JSON.stringify({ state: { desired: { x: 1 } } }));
    await seed.messages;

    const del = await subscribe([`${base}/delete/accepted`, `${base}/delete/rejected`], 1);
    await publish(`${base}/delete`, JSON.stringify({ clientToken: 'cli-del' }));
    const [deleted] = await del.messages;
    assert.equal(deleted!.topic, `${base}/delete/accepted`);
    assert.equal(deleted!.payload.version, 1);
    assert.equal(deleted!.payload.clientToken, 'cli-del');

    const get = await subscribe([`${base}/get/accepted`, `${base}/get/rejected`], 1);
    await publish(`${base}/get`, '');
    const [missing] = await get.messages;
    assert.equal(missing!.topic, `${base}/get/rejected`);
    assert.equal(missing!.payload.code, 404);
  });

  it('rejects a malformed update from the CLI with 400 and no shadow is created', async () => {
    const d = await newDevice();
    const base = d.named('bad');
    const sub = await subscribe([`${base}/update/accepted`, `${base}/update/rejected`], 1);
    await publish(`${base}/update`, '{"state":{"reported":');
    const [reply] = await sub.messages;
    assert.equal(reply!.topic, `${base}/update/rejected`);
    assert.deepEqual({ code: reply!.payload.code, message: reply!.payload.message }, { code: 400, message: 'Invalid JSON' });
    assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/bad`)).status, 404);
  });
});
