/**
 * A whole Switchyard server for integration tests, on real parts:
 *  - `embedded`: PGlite in a temp data dir + two in-process Aedes brokers (with device auth);
 *  - `postgres`: a fresh PostgreSQL database + two Mosquitto processes, registered through the API.
 * Plus small clients: `api()` over real HTTP and `connectDevice()` over real MQTT.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { loadConfig } from '../../packages/server/src/config.ts';
import { silentLogger, createLogger } from '../../packages/server/src/log.ts';
import { startSwitchyard, type Switchyard } from '../../packages/server/src/serve.ts';
import { freePort } from './ports.ts';
import { startPostgres } from './postgres.ts';
import { startMosquitto, type TestMosquitto } from './mosquitto.ts';
import { ledgerEnabled, ledgerLogDestination, recordScanned, recordSecrets, secretsOfExchange } from './secret-ledger.ts';

export type TestKind = 'embedded' | 'postgres';

export interface TestBroker {
  id: number;
  name: string;
  host: string;
  port: number;
  mosquitto?: TestMosquitto;
}

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface TestEnv {
  kind: TestKind;
  sy: Switchyard;
  url: string;
  /** The server's data directory (secret key, admin token, PGlite). */
  dataDir: string;
  adminToken: string;
  brokers: TestBroker[];
  api<T = any>(method: string, path: string, body?: unknown, opts?: { token?: string | null; raw?: string | Buffer; contentType?: string }): Promise<ApiResponse<T>>;
  createDevice(opts?: { uuid?: string; brokerIndex?: number }): Promise<{ uuid: string; token: string }>;
  connectDevice(device: { uuid: string; token: string }, brokerIndex?: number): Promise<DeviceClient>;
  /**
   * `postgres` only: starts one more server instance on the same database and brokers (same data dir, so the same
   * secret key, as instances sharing one configuration), connected to every broker. Its `stop()` may be called
   * early (once counts); `stop()` of the env stops it too.
   */
  startInstance(opts?: { ownershipRetryMs?: number }): Promise<Switchyard>;
  stop(): Promise<void>;
}

export const TEST_ADMIN_TOKEN = 'sya_test-admin-token-0123456789abcdef';

let seq = 0;
export const uniqueId = (prefix = 'dev'): string => `${prefix}-${process.pid}-${Date.now().toString(36)}-${++seq}`;

export async function startTestSwitchyard(
  kind: TestKind,
  opts: {
    brokers?: number;
    env?: Record<string, string>;
    /** Every log line of the server (and of instances started later), as written, at `level` (default `debug`). */
    captureLog?: { lines: string[]; level?: string };
  } = {},
): Promise<TestEnv> {
  const brokerCount = opts.brokers ?? 2;
  const dataDir = await mkdtemp(join(tmpdir(), 'sy-test-'));
  const cleanups: Array<() => Promise<void>> = [() => rm(dataDir, { recursive: true, force: true })];
  const stop = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  };
  try {
    const env: Record<string, string> = {
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      SWITCHYARD_DATA_DIR: dataDir,
      SWITCHYARD_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      LOG_LEVEL: process.env.SWITCHYARD_TEST_LOG ?? 'silent',
      ...opts.env,
    };
    const mosquittos: TestMosquitto[] = [];
    if (kind === 'embedded') {
      const ports: number[] = [];
      for (let i = 0; i < brokerCount; i++) ports.push(await freePort());
      env.SWITCHYARD_EMBEDDED_BROKERS = ports.join(',');
    } else {
      const pg = await startPostgres();
      cleanups.push(() => pg.stop());
      env.DATABASE_URL = pg.url;
      env.SWITCHYARD_EMBEDDED_BROKERS = 'none';
      for (let i = 0; i < brokerCount; i++) {
        const m = await startMosquitto();
        cleanups.push(() => m.stop());
        mosquittos.push(m);
      }
    }
    const capture = opts.captureLog;
    const ledgerLog = ledgerLogDestination();
    const log = capture
      ? createLogger({ level: capture.level ?? 'debug', destination: { write: (line: string) => void capture.lines.push(line) } })
      : env.LOG_LEVEL !== 'silent'
        ? createLogger({ level: env.LOG_LEVEL })
        : ledgerLog
          ? createLogger({ level: 'info', destination: ledgerLog })
          : silentLogger();
    recordSecrets([TEST_ADMIN_TOKEN]);
    let instances = 1;
    let config = loadConfig(env);
    let sy: Switchyard;
    for (let attempt = 1; ; attempt += 1) {
      try {
        sy = await startSwitchyard({ config, log });
        break;
      } catch (err) {
        // freePort() cannot reserve a port: another test process may bind it first. The failed start has stopped
        // what it started; try again on new ports.
        if (attempt >= 3 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw err;
        env.PORT = String(await freePort());
        if (kind === 'embedded') {
          const ports: number[] = [];
          for (let i = 0; i < brokerCount; i++) ports.push(await freePort());
          env.SWITCHYARD_EMBEDDED_BROKERS = ports.join(',');
        }
        config = loadConfig(env);
      }
    }
    cleanups.push(() => sy.stop());
    // Runs before the server stops (cleanups run in reverse): what the whole-suite secret scan reads.
    if (ledgerEnabled) cleanups.push(() => dumpForSecretScan(sy, kind));
    const url = sy.url;

    const api = testApi(url);

    const brokers: TestBroker[] = [];
    if (kind === 'embedded') {
      for (const b of sy.embeddedBrokers) brokers.push({ id: b.id, name: b.name, host: b.host, port: b.port });
    } else {
      for (const [i, m] of mosquittos.entries()) {
        const res = await api('POST', '/api/v1/brokers', { name: `mosquitto-${i + 1}`, protocol: 'mqtt', host: m.host, port: m.port });
        if (res.status !== 201 && res.status !== 200) throw new Error(`registering broker failed: ${res.status} ${JSON.stringify(res.body)}`);
        brokers.push({ id: res.body.id, name: res.body.name, host: m.host, port: m.port, mosquitto: m });
      }
      await sy.pool.refresh();
    }
    for (const b of brokers) await sy.pool.waitConnected(b.id, 10_000);

    const clients: DeviceClient[] = [];
    cleanups.push(async () => {
      await Promise.all(clients.map((c) => c.close()));
    });

    return {
      kind,
      sy,
      url,
      dataDir,
      adminToken: TEST_ADMIN_TOKEN,
      brokers,
      api,
      ...deviceHelpers(api, brokers, clients),
      async startInstance(o = {}) {
        if (kind !== 'postgres') throw new Error('startInstance needs the postgres kind (PGlite has one process)');
        return startExtraInstance({ env, log, nth: ++instances, brokers, cleanups, ...o });
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** A minimal MQTT device for tests: collects every message it receives, by topic. */
/**
 * The API client of a test environment: the admin token unless `o.token` (null: none), JSON bodies (or `o.raw`),
 * answers parsed when JSON. Records secrets and error bodies for the whole-suite secret scan.
 */
/**
 * `createDevice` (registered through the API on one of `brokers`) and `connectDevice` (a {@link DeviceClient} with the
 * device's own credentials, closed with the environment through `clients`).
 */
export function deviceHelpers(api: TestEnv['api'], brokers: TestBroker[], clients: DeviceClient[]): Pick<TestEnv, 'createDevice' | 'connectDevice'> {
  return {
    async createDevice(o = {}) {
      const broker = brokers[o.brokerIndex ?? 0]!;
      const res = await api('POST', '/api/v1/devices', { uuid: o.uuid ?? uniqueId(), brokerId: broker.id });
      if (res.status !== 201) throw new Error(`creating device failed: ${res.status} ${JSON.stringify(res.body)}`);
      return { uuid: res.body.uuid, token: res.body.token };
    },
    async connectDevice(device, brokerIndex = 0) {
      const b = brokers[brokerIndex]!;
      const client = await DeviceClient.connect(`mqtt://${b.host}:${b.port}`, device.uuid, device.token);
      clients.push(client);
      return client;
    },
  };
}

export function testApi(url: string): TestEnv['api'] {
  return async (method, path, body, o = {}) => {
    const headers: Record<string, string> = {};
    const token = o.token === undefined ? TEST_ADMIN_TOKEN : o.token;
    if (token !== null) headers.authorization = `Bearer ${token}`;
    const payload = o.raw ?? (body !== undefined ? JSON.stringify(body) : undefined);
    if (payload !== undefined) headers['content-type'] = o.contentType ?? 'application/json';
    const res = await fetch(`${url}${path}`, { method, headers, ...(payload !== undefined ? { body: payload } : {}) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text; // non-JSON answers (e.g. /docs) are returned as text
    }
    if (ledgerEnabled) {
      recordSecrets(secretsOfExchange(body, parsed));
      if (res.status >= 400) recordScanned(`error body of ${method} ${path} (${res.status})`, text);
    }
    return { status: res.status, body: parsed as any, headers: res.headers };
  };
}

/** The tables the whole-suite secret scan reads (see secret-ledger.ts), as JSON. */
export async function dumpForSecretScan(sy: Switchyard, kind: string): Promise<void> {
  for (const table of ['audit_log', 'device_shadows', 'broker_migrations', 'outbox']) {
    const { rows } = await sy.db.query(`SELECT * FROM ${table}`);
    recordScanned(`${table} (${kind})`, JSON.stringify(rows));
  }
}

/**
 * Another server instance on the same database and brokers (scale-out tests): its `stop` is idempotent and
 * registered in `cleanups`; resolves once it is connected to every broker.
 */
export async function startExtraInstance(o: {
  env: Record<string, string>;
  log: ReturnType<typeof createLogger>;
  nth: number;
  brokers: readonly { id: number }[];
  cleanups: Array<() => Promise<unknown>>;
  ownershipRetryMs?: number;
}): Promise<Switchyard> {
  const other = await startSwitchyard({
    config: loadConfig({ ...o.env, PORT: String(await freePort()) }),
    log: o.log.child({ instance: o.nth }),
    ...(o.ownershipRetryMs !== undefined ? { ownershipRetryMs: o.ownershipRetryMs } : {}),
  });
  let stopping: Promise<void> | undefined;
  const stopOnce = other.stop;
  other.stop = () => (stopping ??= stopOnce());
  o.cleanups.push(() => other.stop());
  for (const b of o.brokers) await other.pool.waitConnected(b.id, 10_000);
  return other;
}

export class DeviceClient {
  readonly messages: Array<{ topic: string; payload: any; raw: Buffer }> = [];
  #waiters: Array<{ match: (m: { topic: string; payload: any }) => boolean; resolve: (m: any) => void }> = [];

  private constructor(readonly client: MqttClient, readonly uuid: string) {
    client.on('message', (topic, raw) => {
      let payload: unknown;
      try {
        payload = JSON.parse(raw.toString('utf8'));
      } catch {
        payload = raw.toString('utf8');
      }
      const m = { topic, payload, raw };
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => {
        if (!w.match(m)) return true;
        w.resolve(m);
        return false;
      });
    });
  }

  static async connect(url: string, uuid: string, token: string): Promise<DeviceClient> {
    const client = await mqtt.connectAsync(url, { clientId: uuid, username: uuid, password: token, reconnectPeriod: 0, clean: true, protocolVersion: 4 });
    return new DeviceClient(client, uuid);
  }

  async subscribe(filters: string[]): Promise<void> {
    await this.client.subscribeAsync(filters, { qos: 1 });
  }

  /** Resolves with the first message (already received or future) that matches. */
  waitFor(match: (m: { topic: string; payload: any }) => boolean, timeoutMs = 5000, what = 'message'): Promise<{ topic: string; payload: any }> {
    const found = this.messages.find(match);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; got: ${this.messages.map((m) => m.topic).join(', ')}`));
      }, timeoutMs);
      const done = (m: any): void => {
        clearTimeout(timer);
        resolve(m);
      };
      this.#waiters.push({ match, resolve: done });
    });
  }

  async publish(topic: string, payload: unknown, qos: 0 | 1 = 1): Promise<void> {
    const body = typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload);
    await this.client.publishAsync(topic, body, { qos });
  }

  /** Publishes a request carrying a fresh clientToken and waits for the reply that echoes it. */
  async request(base: string, op: 'get' | 'update' | 'delete', body: Record<string, unknown> = {}, timeoutMs = 5000): Promise<{ topic: string; payload: any }> {
    const clientToken = `t${++seq}`;
    const reply = this.waitFor(
      (m) => (m.topic === `${base}/${op}/accepted` || m.topic === `${base}/${op}/rejected`) && m.payload?.clientToken === clientToken,
      timeoutMs,
      `${op} reply ${clientToken}`,
    );
    await this.publish(`${base}/${op}`, { ...body, clientToken });
    return reply;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true).catch(() => undefined);
  }
}
