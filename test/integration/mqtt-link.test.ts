/**
 * The server's own MQTT connection (`packages/server/src/brokers/mqtt-link.ts`) against real brokers: Mosquitto over
 * TCP with MQTT 3.1.1 and 5, Aedes over WebSocket (this Debian Mosquitto has no websockets listener). The peer on
 * the other side is mqtt.js, a client we did not write.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { MqttLink, MqttLinkClosedError, type MqttLinkOptions } from '../../packages/server/src/brokers/mqtt-link.ts';
import { startMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { realServers } from '../helpers/real.ts';
import { waitFor } from '../helpers/wait.ts';

const real = realServers(['mosquitto']);

interface Opened {
  link: MqttLink;
  messages: Array<{ topic: string; payload: string }>;
  errors: Error[];
  closed: Promise<void>;
}

/** Opens a link; resolves once it is connected, rejects with its first error if it closes before. */
function open(o: Partial<MqttLinkOptions> & Pick<MqttLinkOptions, 'port'>): Promise<Opened> {
  return new Promise((resolve, reject) => {
    const messages: Opened['messages'] = [];
    const errors: Error[] = [];
    let closedResolve!: () => void;
    const closed = new Promise<void>((r) => (closedResolve = r));
    let up = false;
    const link: MqttLink = new MqttLink(
      { protocol: 'mqtt', host: '127.0.0.1', version: 4, clientId: `link-test-${Math.random().toString(16).slice(2)}`, keepalive: 30, connectTimeoutMs: 5000, ...o },
      {
        connect: () => {
          up = true;
          resolve({ link, messages, errors, closed });
        },
        message: (topic, payload) => messages.push({ topic, payload: payload.toString() }),
        error: (err) => errors.push(err),
        close: () => {
          closedResolve();
          if (!up) reject(errors[0] ?? new Error('closed before connecting'));
        },
      },
    );
  });
}

describe('MqttLink against Mosquitto', { skip: real.skip, timeout: 60_000 }, () => {
  let broker: TestMosquitto;
  let secured: TestMosquitto;
  before(async () => {
    broker = await startMosquitto();
    secured = await startMosquitto({ users: [{ username: 'server', password: 'right-password' }] });
  });
  after(async () => {
    await broker?.stop();
    await secured?.stop();
  });

  for (const version of [4, 5] as const) {
    it(`MQTT ${version === 4 ? '3.1.1' : '5'}: subscribes, receives QoS 0 and 1, publishes QoS 0 and 1 (resolved on PUBACK), unsubscribes`, async () => {
      const { link, messages } = await open({ port: broker.port, version });
      const device = await mqtt.connectAsync(broker.url, { protocolVersion: version, reconnectPeriod: 0 });
      try {
        await link.subscribe(['dev/+/up', 'dev/+/other'], 1);
        const seen: string[] = [];
        device.on('message', (t, p) => seen.push(`${t} ${p.toString()}`));
        await device.subscribeAsync('dev/+/down', { qos: 1 });
        await device.publishAsync('dev/a/up', 'one', { qos: 1 });
        await device.publishAsync('dev/b/up', Buffer.from('two'), { qos: 0 });
        await waitFor(() => messages.length === 2, { timeoutMs: 5000, message: 'both requests delivered' });
        assert.deepEqual(messages, [{ topic: 'dev/a/up', payload: 'one' }, { topic: 'dev/b/up', payload: 'two' }]);

        // 300 QoS 1 publishes in one turn (they leave in one write): each resolves on its own PUBACK, in order.
        // `post` (no promise) in the same stream: QoS 1 keeps its place among the QoS 1 publishes, nothing fails.
        const postErrors: Error[] = [];
        const published = Promise.all(Array.from({ length: 300 }, (_, i) => (i === 150 ? (link.post('dev/a/down', 'posted', 1, (e) => postErrors.push(e)), undefined) : link.publish('dev/a/down', `r${i}`, 1))));
        await published;
        await link.publish('dev/a/down', 'last', 0);
        await waitFor(() => seen.length === 301, { timeoutMs: 5000, message: 'replies delivered' });
        // In order among themselves; the QoS 0 one may overtake QoS 1 messages the broker still holds for the
        // device (Mosquitto's max_inflight_messages): MQTT orders messages per QoS level only.
        assert.deepEqual(seen.filter((m) => m !== 'dev/a/down last'), Array.from({ length: 300 }, (_, i) => (i === 150 ? 'dev/a/down posted' : `dev/a/down r${i}`)));
        assert.deepEqual(postErrors, []);
        assert.ok(seen.includes('dev/a/down last'));

        await link.unsubscribe(['dev/+/up']);
        await device.publishAsync('dev/c/up', 'after', { qos: 1 });
        await device.publishAsync('dev/c/other', 'still', { qos: 1 });
        await waitFor(() => messages.length === 3, { timeoutMs: 5000, message: 'the remaining subscription delivered' });
        assert.deepEqual(messages[2], { topic: 'dev/c/other', payload: 'still' });
      } finally {
        await device.endAsync();
        await link.end();
      }
    });

    it(`MQTT ${version === 4 ? '3.1.1' : '5'}: a refused CONNECT is an error naming the reason, then close`, async () => {
      await assert.rejects(open({ port: secured.port, version, username: 'server', password: 'wrong-password' }), version === 4 ? /^Error: Connection refused: Not authorized$/ : /^Error: Connection refused: (Not authorized|Bad User Name or Password)$/);
      const { link } = await open({ port: secured.port, version, username: 'server', password: 'right-password' });
      await link.end();
    });
  }

  it("MQTT 5: stays under the broker's Receive Maximum and refuses a publish over its Maximum Packet Size", async () => {
    // Mosquitto announces max_inflight_messages as Receive Maximum and disconnects a client that exceeds it.
    const strict = await startMosquitto({ extraConfig: 'max_inflight_messages 3\nmax_packet_size 1000' });
    const { link, errors } = await open({ port: strict.port, version: 5 });
    const device = await mqtt.connectAsync(strict.url, { protocolVersion: 5, reconnectPeriod: 0 });
    try {
      const seen: string[] = [];
      device.on('message', (_t, p) => seen.push(p.toString()));
      await device.subscribeAsync('strict/down', { qos: 1 });
      await Promise.all(Array.from({ length: 50 }, (_, i) => link.publish('strict/down', `m${i}`, 1)));
      await assert.rejects(link.publish('strict/down', 'x'.repeat(2000), 1), /exceed the broker's Maximum Packet Size of 1000/);
      await assert.rejects(link.publish('strict/down', 'x'.repeat(2000), 0), /Maximum Packet Size/);
      // post: the same rules without a promise — the failure goes to onError, a success calls nothing.
      const posted: string[] = [];
      link.post('strict/down', 'x'.repeat(2000), 1, (err) => posted.push(err.message));
      link.post('strict/down', 'x'.repeat(2000), 0, (err) => posted.push(err.message));
      // A topic MQTT cannot carry (over 65,535 bytes) is an error for its caller, not a throw out of post.
      link.post('t'.repeat(70_000), 'x', 1, (err) => posted.push(err.message));
      link.post('t'.repeat(70_000), 'x', 0, (err) => posted.push(err.message));
      assert.equal(posted.length, 4);
      assert.match(posted[0]!, /Maximum Packet Size/);
      assert.match(posted[1]!, /Maximum Packet Size/);
      assert.match(posted[2]!, /longer than 65,535 bytes/);
      assert.match(posted[3]!, /longer than 65,535 bytes/);
      await link.publish('strict/down', 'still up', 1);
      await waitFor(() => seen.length === 51, { timeoutMs: 5000, message: 'every publish delivered' });
      assert.deepEqual(seen, [...Array.from({ length: 50 }, (_, i) => `m${i}`), 'still up']);
      assert.equal(link.connected, true);
      assert.deepEqual(errors, []);
    } finally {
      await device.endAsync();
      await link.end();
      await strict.stop();
    }
  });

  it('rejects what is pending when the connection goes, and refuses new work after', async () => {
    const { link, closed } = await open({ port: broker.port });
    const pending = link.subscribe(['x/#'], 1); // sent this turn, never acked: the link goes first
    link.destroy();
    await assert.rejects(pending, MqttLinkClosedError);
    await closed;
    await assert.rejects(link.publish('x/1', 'late', 1), MqttLinkClosedError);
    const posted: unknown[] = [];
    link.post('x/1', 'late', 0, (err) => posted.push(err));
    assert.equal(posted.length, 1);
    assert.ok(posted[0] instanceof MqttLinkClosedError);
    assert.equal(link.connected, false);
  });

  it('reports ECONNREFUSED for a port nobody listens on', async () => {
    const stopped = await startMosquitto();
    const port = stopped.port;
    await stopped.stop();
    await assert.rejects(open({ port }), /ECONNREFUSED/);
  });

  it('gives up on a broker that accepts the connection but never answers CONNECT (connack timeout)', async () => {
    const frozen = await startMosquitto();
    const pid = Number((await readFile(join(frozen.configDir, 'server.pid'), 'utf8')).trim());
    process.kill(pid, 'SIGSTOP'); // the kernel still completes the TCP handshake; nobody reads the CONNECT
    try {
      await assert.rejects(open({ port: frozen.port, connectTimeoutMs: 500 }), /^Error: connack timeout$/);
    } finally {
      process.kill(pid, 'SIGCONT');
      await frozen.stop();
    }
  });

  it('notices a broker that stopped answering (keepalive) and closes', async () => {
    const frozen = await startMosquitto();
    try {
      const pid = Number((await readFile(join(frozen.configDir, 'server.pid'), 'utf8')).trim());
      const { errors, closed } = await open({ port: frozen.port, keepalive: 1 });
      process.kill(pid, 'SIGSTOP');
      try {
        await Promise.race([closed, sleep(6000).then(() => assert.fail('no keepalive timeout within 6 s'))]);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      assert.match(errors.map((e) => e.message).join('; '), /keepalive timeout/);
    } finally {
      await frozen.stop();
    }
  });
});

describe('MqttLink against Aedes over WebSocket', { timeout: 30_000 }, () => {
  it('connects with the mqtt subprotocol, subscribes, receives and publishes', async () => {
    const aedes = await Aedes.createBroker();
    const http = createServer();
    const wss = new WebSocketServer({ server: http });
    const protocols: string[] = [];
    wss.on('connection', (ws) => {
      protocols.push(ws.protocol);
      aedes.handle(createWebSocketStream(ws) as never);
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const port = (http.address() as AddressInfo).port;
    try {
      const { link, messages } = await open({ protocol: 'ws', port });
      await link.subscribe(['ws/+/up'], 1);
      const device = await mqtt.connectAsync(`ws://127.0.0.1:${port}`, { reconnectPeriod: 0 });
      const seen: string[] = [];
      device.on('message', (_t, p) => seen.push(p.toString()));
      await device.subscribeAsync('ws/d/down', { qos: 1 });
      await device.publishAsync('ws/d/up', 'over ws', { qos: 1 });
      await waitFor(() => messages.length === 1, { timeoutMs: 5000, message: 'delivered over ws' });
      await link.publish('ws/d/down', 'reply', 1);
      await waitFor(() => seen.length === 1, { timeoutMs: 5000, message: 'reply over ws' });
      assert.deepEqual([messages[0]!.payload, seen[0], protocols[0]], ['over ws', 'reply', 'mqtt']);
      await device.endAsync();
      await link.end();
    } finally {
      wss.close();
      http.close();
      await new Promise<void>((r) => aedes.close(() => r()));
    }
  });
});
