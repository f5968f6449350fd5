/**
 * A device written only with AWS's v2 device SDK (MQTT 3.1.1, `IotShadowClientv2`) that follows Switchyard's broker
 * assignment: on a delta of its `device-state` shadow carrying `desired.mqtt`, it connects to the new broker, asks
 * for its shadow there (the round trip that proves the new connection), reports `reported.mqtt` through the new
 * broker (which is what completes the move on the server) and closes the old connection. It also asks for its shadow
 * after every connect, so an assignment made while it was away is not missed.
 *
 * Run by `startSdkV2FollowingDevice()` (./aws-sdk-v2.ts). Environment: THING_NAME, BROKER_ID, BROKER_HOST, BROKER_PORT,
 * and MQTT_USERNAME/MQTT_PASSWORD where the broker wants them. Prints one JSON line per event. SIGTERM: closes every
 * SDK handle and exits 0 (explicitly: an aws-crt process with a stream never exits on its own).
 * This is the example of docs/aws-compatibility.md.
 */
import { once } from 'node:events';
import { iotshadow, io, mqtt } from 'aws-iot-device-sdk-v2';

const env = (name: string): string => process.env[name] ?? '';
const thingName = env('THING_NAME');
const shadowName = 'device-state';
interface Target { brokerId: number; broker: string; protocol: string; host: string; port: number }
interface Link { target: Target; conn: mqtt.MqttClientConnection; shadow: iotshadow.IotShadowClientv2; stream?: { close(): void } }
let link: Link | undefined;
let moving = Promise.resolve();
const say = (event: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(event)}\n`);
const failed = (err: unknown): void => say({ event: 'error', error: String(err) });

async function open(target: Target): Promise<Link> {
  const conn = new mqtt.MqttClient().new_connection({
    client_id: thingName, host_name: target.host, port: target.port, clean_session: true, keep_alive: 30,
    disable_metrics: true, // else the SDK appends its metrics to the username
    socket_options: new io.SocketOptions(io.SocketType.STREAM, io.SocketDomain.IPV4, 3000),
    ...(process.env.MQTT_USERNAME ? { username: env('MQTT_USERNAME'), password: env('MQTT_PASSWORD') } : {}),
  });
  await conn.connect();
  const shadow = iotshadow.IotShadowClientv2.newFromMqtt311(conn, { maxRequestResponseSubscriptions: 4, maxStreamingSubscriptions: 2, operationTimeoutInSeconds: 3 });
  return { target, conn, shadow };
}

async function close(l: Link): Promise<void> {
  l.stream?.close();
  l.shadow.close();
  const closed = once(l.conn, 'closed');
  await l.conn.disconnect();
  await closed;
}

/** Reads the shadow and, if `desired.mqtt` names another broker, moves there. */
async function sync(): Promise<void> {
  if (!link) return;
  const previous = link;
  // A delta holds only the leaves that differ: read the whole `desired.mqtt` from the shadow.
  const doc = await previous.shadow.getNamedShadow({ thingName, shadowName }).catch(() => undefined);
  const desired = (doc?.state?.desired as { mqtt?: Target } | undefined)?.mqtt;
  if (!desired || desired.brokerId === previous.target.brokerId) return;
  const next = await open(desired);
  try {
    await next.shadow.getNamedShadow({ thingName, shadowName }); // answered through the new broker: it works
    await next.shadow.updateNamedShadow({
      thingName, shadowName,
      state: { reported: { mqtt: { ...desired, status: 'connected', previousBrokerId: previous.target.brokerId, migratedAt: new Date().toISOString() } } },
    });
  } catch (err) {
    await close(next); // make before break: the old connection stays until the new one has proved itself
    throw err;
  }
  link = next;
  await listen(next);
  await close(previous);
  say({ event: 'moved', from: previous.target.brokerId, to: desired.brokerId });
}

/** Subscribes to the shadow's deltas; resolves once the subscription is in place. */
function listen(l: Link): Promise<void> {
  const stream = l.shadow.createNamedShadowDeltaUpdatedStream({ thingName, shadowName });
  stream.on('incomingPublish', (e) => {
    if (e.message.state && 'mqtt' in e.message.state) moving = moving.then(sync).catch(failed);
  });
  const subscribed = new Promise<void>((resolve) => stream.on('subscriptionStatus', (s) => s.type === 0 && resolve()));
  stream.open();
  l.stream = stream;
  return subscribed;
}

async function start(): Promise<void> {
  const port = Number(env('BROKER_PORT'));
  link = await open({ brokerId: Number(env('BROKER_ID')), broker: `mqtt://${env('BROKER_HOST')}:${port}`, protocol: 'mqtt', host: env('BROKER_HOST'), port });
  await listen(link);
  say({ event: 'connected', brokerId: link.target.brokerId });
  moving = moving.then(sync).catch(failed); // an assignment made while the device was away
}

process.on('SIGTERM', () => {
  void moving.finally(async () => {
    if (link) await close(link).catch(() => undefined);
    process.exit(0);
  });
});
start().catch((err: unknown) => {
  failed(err);
  process.exit(1);
});
