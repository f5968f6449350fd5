/**
 * The harness's floor for bench/shadow-throughput (`--targets floor`): the same Mosquitto and load generators
 * against a trivial responder in the bench process — it parses each update and answers `…/update/accepted` (QoS 1)
 * and `…/update/documents` (QoS 0) of about the real sizes, with no Switchyard server and no database. What this
 * costs is what the load alone costs the machine; what the real targets cost beyond it is Switchyard's and
 * PostgreSQL's. Uses the bench's minimal MQTT client, so the responder itself is about as cheap as MQTT gets in Node.
 */
import { MiniMqttClient } from './mini-mqtt.ts';

export interface FloorResponder {
  /** Requests answered so far (`batches` = `requests`: one answer per request, nothing batched). */
  stats(): { batches: number; requests: number };
  drain(): Promise<void>;
  close(): Promise<void>;
}

type Json = Record<string, unknown>;

/** `{key: {timestamp}}` for every leaf of `value`, as the shadow service's metadata. */
function metadataOf(value: unknown, ts: number): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return { timestamp: ts };
  return Object.fromEntries(Object.entries(value as Json).map(([k, v]) => [k, metadataOf(v, ts)]));
}

export async function startFloorResponder(host: string, port: number): Promise<FloorResponder> {
  const client = await MiniMqttClient.connect(host, port, `bench-floor-${process.pid}`);
  const versions = new Map<string, { version: number; state: Json }>();
  let requests = 0;
  client.onMessage((topic, payload) => {
    let req: { state?: { reported?: Json }; clientToken?: string };
    try {
      req = JSON.parse(payload.toString('utf8')) as typeof req;
    } catch {
      return;
    }
    requests += 1;
    const ts = Math.floor(Date.now() / 1000);
    const reported = req.state?.reported ?? {};
    const prev = versions.get(topic) ?? { version: 0, state: {} };
    const next = { version: prev.version + 1, state: { ...prev.state, ...reported } };
    versions.set(topic, next);
    const token = req.clientToken === undefined ? {} : { clientToken: req.clientToken };
    const doc = (d: { version: number; state: Json }) => ({ state: { reported: d.state }, metadata: { reported: metadataOf(d.state, ts) }, version: d.version });
    client.publish(`${topic}/accepted`, JSON.stringify({ state: { reported }, metadata: { reported: metadataOf(reported, ts) }, version: next.version, timestamp: ts, ...token }), 1);
    client.publish(`${topic}/documents`, JSON.stringify({ previous: doc(prev), current: doc(next), timestamp: ts, ...token }), 0);
  });
  await client.subscribe(['iot/device/+/shadow/name/+/update'], 1);
  return {
    stats: () => ({ batches: requests, requests }),
    drain: () => Promise.resolve(),
    close: () => client.end(),
  };
}
