/**
 * The baseline device of bench/migration-latency.ts: the original design's agent flow, a small mqtt.js client in
 * the bench process. On an assignment it disconnects, waits 2 s, connects to the new broker (no verification)
 * and reports `connected` there.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { now } from './api.ts';
import { log } from './cli.ts';

export const BASELINE_SLEEP_MS = 2000;

export interface BrokerInfo {
  id: number;
  host: string;
  port: number;
  url: string;
}

/**
 * On a delta touching `desired.mqtt`: `get` the `device-state` shadow (the delta holds only differing leaves),
 * disconnect, wait 2 s, connect to `desired.mqtt`, report `connected` there (and presence). No verification.
 */
export function baselineDevice(o: { uuid: string; token: string; brokers: BrokerInfo[]; onConnack(brokerId: number, at: number): void }) {
  const base = `iot/device/${o.uuid}/shadow/name/device-state`;
  let client: MqttClient | null = null;
  let current: BrokerInfo | null = null;
  let seq = 0;
  let moving = false;
  let stopped = false;

  const report = (c: MqttClient, b: BrokerInfo): void => {
    const mqttState = { status: 'connected', brokerId: b.id, broker: b.url, protocol: 'mqtt', host: b.host, port: b.port };
    c.publish(`${base}/update`, JSON.stringify({ state: { reported: { mqtt: mqttState } }, clientToken: `bl-${++seq}` }), { qos: 1 });
    c.publish(`iot/device/${o.uuid}/status`, JSON.stringify({ state: 'online', brokerId: b.id, at: new Date().toISOString() }), { qos: 1 });
  };

  async function connect(b: BrokerInfo): Promise<void> {
    const c = mqtt.connect(b.url, {
      clientId: o.uuid,
      username: o.uuid,
      password: o.token,
      protocolVersion: 4,
      clean: true,
      reconnectPeriod: 0,
      keepalive: 30,
      will: { topic: `iot/device/${o.uuid}/status`, payload: Buffer.from(JSON.stringify({ state: 'offline', brokerId: b.id })), qos: 1, retain: false },
    });
    await new Promise<void>((resolve, reject) => {
      c.once('connect', () => {
        o.onConnack(b.id, now());
        resolve();
      });
      c.once('error', reject);
    });
    // A reset of the connection being left (it was ended on purpose) is not news.
    c.on('error', (err) => {
      if (c === client && !moving && !stopped) log(`baseline device: ${err.message}`);
    });
    c.on('message', (topic, payload) => onMessage(c, topic, payload));
    client = c;
    current = b;
    c.subscribe([`${base}/update/delta`, `${base}/get/accepted`, `${base}/get/rejected`], { qos: 1 });
    report(c, b);
  }

  function onMessage(c: MqttClient, topic: string, payload: Buffer): void {
    if (c !== client || stopped) return;
    const msg = JSON.parse(payload.toString('utf8')) as Record<string, any>;
    if (topic.endsWith('/update/delta')) {
      if (msg.state?.mqtt !== undefined && !moving) c.publish(`${base}/get`, JSON.stringify({ clientToken: `bl-${++seq}` }), { qos: 1 });
      return;
    }
    if (topic.endsWith('/get/accepted')) {
      const desired = msg.state?.desired?.mqtt as { brokerId?: number } | undefined;
      const target = o.brokers.find((b) => b.id === desired?.brokerId);
      if (!target || target.id === current?.id || moving) return;
      moving = true;
      void (async () => {
        try {
          await c.endAsync(); // disconnect
          await sleep(BASELINE_SLEEP_MS); // wait 2 s
          if (!stopped) await connect(target); // connect to the new broker, report there
        } catch (err) {
          log(`baseline device: move failed: ${(err as Error).message}`);
        } finally {
          moving = false;
        }
      })();
    }
  }

  return {
    start: (b: BrokerInfo) => connect(b),
    async stop() {
      stopped = true;
      await client?.endAsync(true).catch(() => undefined);
    },
  };
}
