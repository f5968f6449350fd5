/**
 * Environments for the end-to-end move tests: real agent processes against
 *  - `postgres`: PostgreSQL + two Mosquitto processes + the `switchyard serve` process;
 *  - `embedded`: the embedded mode (PGlite + two Aedes brokers) in this process.
 * "Is the device connected to broker X?" is answered by the broker itself: Mosquitto's log, Aedes' client list.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../helpers/ports.ts';
import { startPostgres } from '../helpers/postgres.ts';
import { startMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { mosquittoConnectedClients, startServerProcess, type TestProcess } from '../helpers/processes.ts';
import { secretsOfExchange, recordSecrets } from '../helpers/secret-ledger.ts';
import { startTestSwitchyard, TEST_ADMIN_TOKEN, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';
import { createPgDb } from '../../packages/server/src/db/pg-db.ts';
import { silentLogger } from '../../packages/server/src/log.ts';
import { systemClock } from '../../packages/server/src/clock.ts';
import { createAssignmentService } from '../../packages/server/src/assignments/assignment.service.ts';
import { startAedesBroker, type AedesBrokerHandle } from '../../packages/server/src/embedded/aedes-broker.ts';
import { createEmbeddedAuth } from '../../packages/server/src/embedded/embedded-auth.ts';
import { loadOrCreateSecretKey } from '../../packages/server/src/crypto/secret-box.ts';

export interface E2EBroker {
  id: number;
  host: string;
  port: number;
}

export interface E2EEnv {
  kind: 'postgres' | 'embedded';
  apiUrl: string;
  brokers: E2EBroker[];
  api<T = any>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** Whether the broker itself has a session for this client id. */
  connectedOn(brokerIndex: number, clientId: string): Promise<boolean>;
  stopBroker(brokerIndex: number): Promise<void>;
  startBroker(brokerIndex: number): Promise<void>;
  /** Postgres only: SIGKILL the server, commit an assignment as a server that died before publishing, restart. */
  crashServerAfterCommit?(uuid: string, brokerId: number): Promise<{ outboxRows: number }>;
  tmp(): Promise<string>;
  stop(): Promise<void>;
}

async function api(url: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}${path}`, {
    method,
    headers: { authorization: `Bearer ${TEST_ADMIN_TOKEN}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  const answer = text ? JSON.parse(text) : undefined;
  recordSecrets(secretsOfExchange(body, answer)); // device tokens, broker passwords: for the whole-suite secret scan
  return { status: res.status, body: answer };
}

/** `serverEnv`: extra variables of the server (e.g. `SWITCHYARD_COMMAND_TTL_S`). */
export async function startE2E(kind: 'postgres' | 'embedded', o: { serverEnv?: Record<string, string> } = {}): Promise<E2EEnv> {
  const cleanups: Array<() => Promise<unknown>> = [];
  const dirs: string[] = [];
  const tmp = async (): Promise<string> => {
    const d = await mkdtemp(join(tmpdir(), 'sy-e2e-'));
    dirs.push(d);
    return d;
  };
  const stop = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  };
  try {
    if (kind === 'embedded') {
      const env: TestEnv = await startTestSwitchyard('embedded', { env: { SWITCHYARD_MIGRATION_TIMEOUT_S: '120', ...o.serverEnv } });
      // Brokers this test stopped and started again (the server's own handles are closed by then).
      const restarted: Record<number, AedesBrokerHandle> = {};
      cleanups.push(async () => {
        await Promise.all(Object.values(restarted).map((h) => h.close()));
        await env.stop();
      });
      return {
        kind,
        apiUrl: env.url,
        brokers: env.brokers.map((b) => ({ id: b.id, host: b.host, port: b.port })),
        api: (m, p, b) => api(env.url, m, p, b),
        async connectedOn(i, clientId) {
          const broker = (restarted[i] ?? env.sy.embeddedBrokers[i]!).broker as unknown as { clients: Record<string, unknown> };
          return Boolean(broker.clients[clientId]);
        },
        async stopBroker(i) {
          await (restarted[i] ?? env.sy.embeddedBrokers[i]!).close();
          delete restarted[i];
        },
        async startBroker(i) {
          // The same broker again, on the same port, with the same device registry behind its auth hooks.
          const key = await loadOrCreateSecretKey({ dataDir: env.dataDir });
          const handle = await startAedesBroker({ port: env.brokers[i]!.port, host: '127.0.0.1', log: silentLogger(), auth: createEmbeddedAuth(env.sy.db, key) });
          restarted[i] = handle;
        },
        tmp,
        stop,
      };
    }

    const pg = await startPostgres();
    cleanups.push(() => pg.stop());
    const mosquittos: TestMosquitto[] = [await startMosquitto(), await startMosquitto()];
    cleanups.push(() => Promise.all(mosquittos.map((m) => m.stop())));
    const dataDir = await tmp();
    const port = await freePort();
    const serverEnv = {
      PORT: String(port),
      HOST: '127.0.0.1',
      DATABASE_URL: pg.url,
      SWITCHYARD_EMBEDDED_BROKERS: 'none',
      SWITCHYARD_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      SWITCHYARD_SECRET: 'e2e-secret-0123456789abcdef',
      SWITCHYARD_DATA_DIR: dataDir,
      SWITCHYARD_MIGRATION_TIMEOUT_S: '120',
      LOG_LEVEL: 'info',
      ...o.serverEnv,
    };
    let server: TestProcess & { url: string } = await startServerProcess(serverEnv);
    cleanups.push(async () => {
      if (process.env.SWITCHYARD_E2E_DEBUG) process.stderr.write(`--- server output ---\n${server.output()}\n`);
      await server.stop();
    });
    const url = server.url;
    const brokers: E2EBroker[] = [];
    for (const [i, m] of mosquittos.entries()) {
      const res = await api(url, 'POST', '/api/v1/brokers', { name: `mosquitto-${i + 1}`, protocol: 'mqtt', host: m.host, port: m.port });
      if (res.status !== 201) throw new Error(`registering broker: ${res.status} ${JSON.stringify(res.body)}`);
      brokers.push({ id: res.body.id, host: m.host, port: m.port });
    }
    await waitFor(async () => (await fetch(`${url}/readyz`)).status === 200, { timeoutMs: 20_000, message: 'server ready' });
    return {
      kind,
      apiUrl: url,
      brokers,
      api: (m, p, b) => api(url, m, p, b),
      async connectedOn(i, clientId) {
        return (await mosquittoConnectedClients(mosquittos[i]!.logFile)).has(clientId);
      },
      async stopBroker(i) {
        await mosquittos[i]!.stop();
      },
      async startBroker(i) {
        mosquittos[i] = await startMosquitto({ port: brokers[i]!.port });
      },
      async crashServerAfterCommit(uuid, brokerId) {
        await server.kill();
        // This process plays a server instance that commits the assignment and dies before its
        // dispatcher delivers anything: the outbox row is all that is left.
        const db = await createPgDb(pg.url);
        try {
          const assignments = createAssignmentService({ db, log: silentLogger(), clock: systemClock, timeoutSeconds: 120 });
          await assignments.assign(uuid, brokerId, { channel: 'shadow', actor: 'test:crashed-server' });
          const { rows } = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox WHERE device_uuid = $1', [uuid]);
          return { outboxRows: Number(rows[0]!.n) };
        } finally {
          await db.close();
          server = await startServerProcess(serverEnv);
        }
      },
      tmp,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
