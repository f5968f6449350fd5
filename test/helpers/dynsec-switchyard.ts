/**
 * A Switchyard server on PostgreSQL whose brokers are Mosquitto processes with the dynamic-security plugin
 * (`startDynsecMosquitto`), registered through the API with `provisioner: 'mosquitto-dynsec'` and the server's own
 * account. Same shape as `startTestSwitchyard` (`TestEnv`), plus the brokers' admin channels and, with
 * `captureLogs`, every log line the server wrote (at debug level) for secret scans.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadConfig } from '../../packages/server/src/config.ts';
import { createLogger, silentLogger } from '../../packages/server/src/log.ts';
import { startSwitchyard } from '../../packages/server/src/serve.ts';
import { startDynsecMosquitto, type DynsecMosquitto } from './mosquitto-dynsec.ts';
import { freePort } from './ports.ts';
import { startPostgres } from './postgres.ts';
import { DeviceClient, TEST_ADMIN_TOKEN, deviceHelpers, dumpForSecretScan, startExtraInstance, testApi, type TestBroker, type TestEnv } from './switchyard.ts';
import { ledgerEnabled, ledgerLogDestination, recordSecrets } from './secret-ledger.ts';

export interface DynsecEnv extends TestEnv {
  /** The brokers' Mosquitto processes, in `brokers` order. */
  dynsec: DynsecMosquitto[];
  /** Every log line of every instance so far (JSON text), when started with `captureLogs`. */
  logs(): string;
}

export async function startDynsecSwitchyard(opts: { brokers?: number; env?: Record<string, string>; captureLogs?: boolean } = {}): Promise<DynsecEnv> {
  const dataDir = await mkdtemp(join(tmpdir(), 'sy-dynsec-test-'));
  const cleanups: Array<() => Promise<void>> = [() => rm(dataDir, { recursive: true, force: true })];
  const stop = async (): Promise<void> => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
  };
  const lines: string[] = [];
  try {
    const pg = await startPostgres();
    cleanups.push(() => pg.stop());
    const env: Record<string, string> = {
      PORT: String(await freePort()),
      HOST: '127.0.0.1',
      DATABASE_URL: pg.url,
      SWITCHYARD_DATA_DIR: dataDir,
      SWITCHYARD_ADMIN_TOKEN: TEST_ADMIN_TOKEN,
      SWITCHYARD_EMBEDDED_BROKERS: 'none',
      LOG_LEVEL: opts.captureLogs ? 'debug' : (process.env.SWITCHYARD_TEST_LOG ?? 'silent'),
      ...opts.env,
    };
    const dynsec: DynsecMosquitto[] = [];
    for (let i = 0; i < (opts.brokers ?? 2); i++) {
      const m = await startDynsecMosquitto();
      cleanups.push(() => m.stop());
      dynsec.push(m);
    }
    const ledgerLog = ledgerLogDestination();
    const log = opts.captureLogs
      ? createLogger({ level: 'debug', destination: { write: (line: string) => void lines.push(line) } })
      : env.LOG_LEVEL !== 'silent'
        ? createLogger({ level: env.LOG_LEVEL })
        : ledgerLog
          ? createLogger({ level: 'info', destination: ledgerLog })
          : silentLogger();
    recordSecrets([TEST_ADMIN_TOKEN]);
    const sy = await startSwitchyard({ config: loadConfig(env), log });
    cleanups.push(() => sy.stop());
    if (ledgerEnabled) cleanups.push(() => dumpForSecretScan(sy, 'postgres + dynsec'));

    const api = testApi(sy.url);

    const brokers: TestBroker[] = [];
    for (const [i, m] of dynsec.entries()) {
      const res = await api('POST', '/api/v1/brokers', {
        name: `dynsec-${i + 1}`,
        protocol: 'mqtt',
        host: m.host,
        port: m.port,
        provisioner: 'mosquitto-dynsec',
        username: m.server.username,
        password: m.server.password,
      });
      if (res.status !== 201) throw new Error(`registering broker failed: ${res.status} ${JSON.stringify(res.body)}`);
      brokers.push({ id: res.body.id, name: res.body.name, host: m.host, port: m.port, mosquitto: m });
    }
    await sy.pool.refresh();
    for (const b of brokers) await sy.pool.waitConnected(b.id, 10_000);

    const clients: DeviceClient[] = [];
    cleanups.push(async () => {
      await Promise.all(clients.map((c) => c.close()));
    });
    let instances = 1;
    return {
      kind: 'postgres',
      sy,
      url: sy.url,
      dataDir,
      adminToken: TEST_ADMIN_TOKEN,
      brokers,
      dynsec,
      api,
      logs: () => lines.join(''),
      ...deviceHelpers(api, brokers, clients),
      async startInstance(o = {}) {
        return startExtraInstance({ env, log, nth: ++instances, brokers, cleanups, ...o });
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
