/**
 * An in-process MQTT broker (Aedes, MQTT 3.1.1) for the embedded mode and tests.
 *
 * With an `auth` port it enforces the same model as Mosquitto with dynamic security:
 * the server's own account may do anything; a device (username = its uuid, password = its token)
 * may publish only device→server topics of its own namespace and subscribe only inside it.
 * Aedes answers a denied publish by closing the connection (Mosquitto drops it silently).
 */
import { Aedes, type Client } from 'aedes';
import net from 'node:net';
import { isDeviceToServer, parseTopic } from '@switchyard/protocol';
import type { Logger } from '../log.ts';

export interface EmbeddedAuth {
  /** Resolves the principal of a CONNECT, or null to refuse it. */
  authenticate(username: string, password: string): Promise<{ kind: 'server' } | { kind: 'device'; deviceUuid: string } | null>;
}

export interface AedesBrokerHandle {
  host: string;
  port: number;
  url: string;
  broker: Aedes;
  close(): Promise<void>;
}

type Principal = { kind: 'server' } | { kind: 'device'; deviceUuid: string };
const principals = new WeakMap<Client, Principal>();

/**
 * A device's client ids are its uuid, or its uuid + '/' + anything (a second tool of the same device,
 * e.g. a watcher). Uuids never contain '/', so no device can take over another's session.
 */
export function deviceOwnsClientId(deviceUuid: string, clientId: string): boolean {
  return clientId === deviceUuid || clientId.startsWith(`${deviceUuid}/`);
}

/**
 * Closes every session of `deviceUuid` on `broker` (after its token was rotated or the device deleted: the
 * next CONNECT is checked against the registry again and refused with the old token). Returns how many closed.
 */
export function kickDeviceSessions(broker: Aedes, deviceUuid: string): number {
  // Aedes keeps its connected clients in `clients` (id → Client); its typings do not declare it.
  const clients = (broker as unknown as { clients?: Record<string, Client> }).clients ?? {};
  let closed = 0;
  for (const client of Object.values(clients)) {
    const p = principals.get(client);
    if (p?.kind === 'device' && p.deviceUuid === deviceUuid) {
      client.close();
      closed += 1;
    }
  }
  return closed;
}

/** A device may subscribe only inside its own namespaces (wildcards allowed after the prefix). */
export function deviceMaySubscribe(deviceUuid: string, filter: string): boolean {
  for (const prefix of [`iot/device/${deviceUuid}/`, `$aws/things/${deviceUuid}/`]) {
    if (filter.startsWith(prefix) && filter.length > prefix.length) return true;
  }
  return false;
}

/** A device may publish only requests (device→server topics) about itself. */
export function deviceMayPublish(deviceUuid: string, topic: string): boolean {
  const parsed = parseTopic(topic);
  return parsed !== null && parsed.deviceUuid === deviceUuid && isDeviceToServer(parsed);
}

export async function startAedesBroker(opts: {
  port: number;
  host?: string;
  log: Logger;
  auth?: EmbeddedAuth;
  name?: string;
}): Promise<AedesBrokerHandle> {
  const host = opts.host ?? '127.0.0.1';
  const log = opts.log.child({ component: 'aedes', broker: opts.name ?? String(opts.port) });
  const auth = opts.auth;
  const broker = await Aedes.createBroker({
    ...(auth
      ? {
          authenticate: (client, username, password, done) => {
            if (!username || !password) {
              done(Object.assign(new Error('username and password required'), { returnCode: 4 }), false);
              return;
            }
            auth
              .authenticate(username, password.toString('utf8'))
              .then((p) => {
                if (!p) {
                  log.info({ clientId: client.id }, 'refused CONNECT: bad username or password');
                  done(Object.assign(new Error('bad username or password'), { returnCode: 4 }), false);
                  return;
                }
                if (p.kind === 'device' && !deviceOwnsClientId(p.deviceUuid, client.id)) {
                  log.info({ clientId: client.id }, 'refused CONNECT: client id must be the device uuid');
                  done(Object.assign(new Error('client id must be the device uuid'), { returnCode: 2 }), false);
                  return;
                }
                principals.set(client, p);
                done(null, true);
              })
              .catch((err: unknown) => {
                log.error({ err }, 'authentication lookup failed');
                done(Object.assign(new Error('server unavailable'), { returnCode: 3 }), false);
              });
          },
          authorizePublish: (client, packet, callback) => {
            const p = client ? principals.get(client) : undefined;
            if (!client || p?.kind === 'server') return callback(null);
            if (p?.kind === 'device' && deviceMayPublish(p.deviceUuid, packet.topic)) return callback(null);
            log.info({ clientId: client.id, topic: packet.topic }, 'denied publish');
            callback(new Error('publish not authorised'));
          },
          authorizeSubscribe: (client, sub, callback) => {
            const p = principals.get(client);
            if (p?.kind === 'server') return callback(null, sub);
            if (p?.kind === 'device' && deviceMaySubscribe(p.deviceUuid, sub.topic)) return callback(null, sub);
            log.info({ clientId: client.id, topic: sub.topic }, 'denied subscribe');
            callback(null, null); // SUBACK 0x80 for this filter
          },
        }
      : {}),
  });
  broker.on('clientError', (client, err) => log.debug({ clientId: client.id, err: err.message }, 'client error'));
  // noDelay: small MQTT packets must not wait for Nagle (+ delayed ACK ≈ 40 ms per round trip).
  const server = net.createServer({ noDelay: true }, broker.handle as (socket: net.Socket) => void);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  log.info({ host, port }, 'embedded MQTT broker listening');
  return {
    host,
    port,
    url: `mqtt://${host}:${port}`,
    broker,
    async close() {
      await new Promise<void>((resolve) => broker.close(() => resolve()));
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
