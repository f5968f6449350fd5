/**
 * Child process that runs AWS's v2 device SDK (`aws-iot-device-sdk-v2`, native `aws-crt`) for the tests, driven
 * over IPC by `./aws-sdk-v2.ts`. Not a test file: started with `node --import tsx aws-sdk-v2-host.ts`.
 *
 * Why a child process: in aws-crt 1.33.1 a streaming operation (`createShadowDeltaUpdatedStream`,
 * `createNextJobExecutionChangedStream`, …) holds its JS callbacks in N-API thread-safe functions that are released
 * only when the JS wrapper is garbage-collected, and those callbacks keep the wrapper alive: once a stream was
 * opened, the process never exits on its own, even after `close()` of the stream, the client and the connection
 * (measured). Running the SDK here keeps the test process clean; `exit` closes everything and calls
 * `process.exit(0)`, which ends this process promptly.
 *
 * Messages in: `{id, op: 'connect'|'request'|'stream'|'closeStream'|'disconnect'|'exit', …}`; out: `{id, ok, value}`
 * or `{id, ok: false, error: {message, modeledError?, internalError?}}`, and stream events
 * `{event: 'stream', stream, kind: 'status'|'publish'|'error', data}`.
 */
import { once } from 'node:events';
import { iotjobs, iotshadow, io, mqtt, mqtt5 } from 'aws-iot-device-sdk-v2';
import { JOBS_REQUESTS, JOBS_STREAMS, SHADOW_REQUESTS, SHADOW_STREAMS, type SdkConnectOptions } from './aws-sdk-v2.ts';

type Stream = { close(): void };
interface Device {
  stop(): Promise<void>;
  shadow: iotshadow.IotShadowClientv2;
  jobs: iotjobs.IotJobsClientv2;
  streams: Map<number, Stream>;
}

const devices = new Map<string, Device>();

function send(message: unknown, then?: () => void): void {
  process.send?.(message, undefined, {}, () => then?.());
}

function describeError(err: unknown): { message: string; modeledError?: unknown; internalError?: string } {
  const e = err as { message?: string; modeledError?: unknown; internalError?: unknown };
  return {
    message: typeof e?.message === 'string' ? e.message : String(err),
    ...(e?.modeledError !== undefined ? { modeledError: e.modeledError } : {}),
    ...(e?.internalError !== undefined ? { internalError: String(e.internalError) } : {}),
  };
}

async function connect(o: SdkConnectOptions): Promise<Device> {
  const rr = { maxRequestResponseSubscriptions: 8, maxStreamingSubscriptions: 8, operationTimeoutInSeconds: o.operationTimeoutSeconds };
  if (o.protocol === 'mqtt311') {
    const conn = new mqtt.MqttClient().new_connection({
      client_id: o.clientId,
      host_name: o.host,
      port: o.port,
      clean_session: true,
      keep_alive: 30,
      // Both SDKs put a metrics string into the username unless told not to (it would break username/password auth).
      disable_metrics: true,
      socket_options: new io.SocketOptions(io.SocketType.STREAM, io.SocketDomain.IPV4, 3000),
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: o.password } : {}),
    });
    await conn.connect();
    return {
      shadow: iotshadow.IotShadowClientv2.newFromMqtt311(conn, rr),
      jobs: iotjobs.IotJobsClientv2.newFromMqtt311(conn, rr),
      streams: new Map(),
      async stop() {
        const closed = once(conn, 'closed');
        await conn.disconnect();
        await closed;
      },
    };
  }
  const client = new mqtt5.Mqtt5Client({
    hostName: o.host,
    port: o.port,
    disableMetrics: true,
    connectProperties: {
      clientId: o.clientId,
      keepAliveIntervalSeconds: 30,
      ...(o.username !== undefined ? { username: o.username } : {}),
      ...(o.password !== undefined ? { password: Buffer.from(o.password) } : {}),
    },
  });
  const outcome = Promise.race([
    once(client, 'connectionSuccess').then(() => null),
    once(client, 'connectionFailure').then(([event]) => event as { error: Error }),
  ]);
  client.start();
  const failure = await outcome;
  if (failure) {
    client.stop();
    client.close();
    throw failure.error;
  }
  return {
    shadow: iotshadow.IotShadowClientv2.newFromMqtt5(client, rr),
    jobs: iotjobs.IotJobsClientv2.newFromMqtt5(client, rr),
    streams: new Map(),
    async stop() {
      const stopped = once(client, 'stopped');
      client.stop();
      await stopped;
      client.close();
    },
  };
}

async function disconnect(key: string): Promise<void> {
  const d = devices.get(key);
  if (!d) return;
  devices.delete(key);
  for (const s of d.streams.values()) s.close();
  d.shadow.close();
  d.jobs.close();
  await d.stop();
}

function deviceOf(key: string): Device {
  const d = devices.get(key);
  if (!d) throw new Error(`no connected device ${key}`);
  return d;
}

function allowed(list: readonly string[], method: string): void {
  if (!list.includes(method)) throw new Error(`method ${method} is not one of ${list.join(', ')}`);
}

async function handle(msg: any): Promise<unknown> {
  switch (msg.op) {
    case 'connect':
      if (devices.has(msg.device)) throw new Error(`device ${msg.device} is already connected`);
      devices.set(msg.device, await connect(msg.options as SdkConnectOptions));
      return null;
    case 'request': {
      const d = deviceOf(msg.device);
      allowed(msg.service === 'shadow' ? SHADOW_REQUESTS : JOBS_REQUESTS, msg.method);
      const client = (msg.service === 'shadow' ? d.shadow : d.jobs) as unknown as Record<string, (r: unknown) => Promise<unknown>>;
      return client[msg.method]!.call(client, msg.request);
    }
    case 'stream': {
      const d = deviceOf(msg.device);
      allowed(msg.service === 'shadow' ? SHADOW_STREAMS : JOBS_STREAMS, msg.method);
      const client = (msg.service === 'shadow' ? d.shadow : d.jobs) as unknown as Record<string, (r: unknown) => any>;
      const stream = client[msg.method]!.call(client, msg.request);
      const id: number = msg.stream;
      stream.on('subscriptionStatus', (e: { type: number; error?: unknown }) =>
        send({ event: 'stream', stream: id, kind: 'status', data: { type: e.type, ...(e.error ? { error: String(e.error) } : {}) } }),
      );
      stream.on('incomingPublish', (e: { message: unknown }) => send({ event: 'stream', stream: id, kind: 'publish', data: e.message }));
      stream.on('incomingPublishError', (e: { error: unknown }) => send({ event: 'stream', stream: id, kind: 'error', data: describeError(e.error) }));
      d.streams.set(id, stream);
      stream.open();
      return null;
    }
    case 'closeStream': {
      const d = deviceOf(msg.device);
      d.streams.get(msg.stream)?.close();
      d.streams.delete(msg.stream);
      return null;
    }
    case 'disconnect':
      await disconnect(msg.device);
      return null;
    case 'exit':
      for (const key of [...devices.keys()]) await disconnect(key);
      return null;
    default:
      throw new Error(`unknown op ${JSON.stringify(msg.op)}`);
  }
}

process.on('message', (msg: any) => {
  handle(msg).then(
    (value) => {
      // `exit`: leave once the reply is written (process.send is asynchronous).
      send({ id: msg.id, ok: true, value }, msg.op === 'exit' ? () => process.exit(0) : undefined);
    },
    (err: unknown) => send({ id: msg.id, ok: false, error: describeError(err) }),
  );
});
// The test process went away without saying goodbye: do not linger (the SDK would keep this process alive).
process.on('disconnect', () => process.exit(1));
send({ event: 'ready' });
