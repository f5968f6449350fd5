/**
 * What a bench runs against, all on 127.0.0.1: a throwaway PostgreSQL cluster (durable settings; one per bench
 * process, started on first use and stopped at cleanup) with a fresh database per run, Mosquitto brokers
 * (test/helpers/mosquitto.ts), and the Switchyard server as a child process (`switchyard serve`, as in test/e2e) with
 * the bench's admin token — the brokers registered with it. Everything is on the cleanup stack and on the run's
 * {@link RunStops}.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { createDatabase, freePort, startPgCluster, withClient, type PgCluster } from '../../scripts/test-servers.mjs';
import { startMosquitto, type StartMosquittoOptions, type TestMosquitto } from '../../test/helpers/mosquitto.ts';
import { startServerProcess, type TestProcess } from '../../test/helpers/processes.ts';
import { ADMIN_TOKEN, apiOf, registerBroker, until, type Api } from './api.ts';
import { track, type RunStops } from './cleanup.ts';
import { log } from './cli.ts';

export const BENCH_SECRET = 'bench-secret-0123456789abcdef';

let cluster: PgCluster | null = null;

/** The pid in the first line of a pid file (postmaster.pid, Mosquitto's server.pid). */
export async function readPid(file: string): Promise<number> {
  return Number((await readFile(file, 'utf8')).split('\n', 1)[0]!.trim());
}

/**
 * A throwaway cluster starts with one WAL segment, and PostgreSQL creates each next one — 16 MB written with zeros
 * and fsynced, 60–80 ms on this machine's disk — while the commit that needs it (and every commit behind it) waits:
 * at 5,000 updates/s every ≈ 3 s, a stall a cluster in service does not have, as it recycles the segments its
 * checkpoints retire. So the bench's cluster writes ≈ 700 MB of WAL once (a table created and dropped), keeps up to
 * 2 GB of retired segments for reuse (`min_wal_size`), and each run starts with a CHECKPOINT ({@link recycleWal}) that
 * retires the previous runs' segments for the next one. Checkpoints otherwise come as usual (`max_wal_size` 1 GB).
 */
async function prepareWal(url: string): Promise<void> {
  await withClient(url, async (c: pg.Client) => {
    await c.query(`ALTER SYSTEM SET min_wal_size = '2GB'`);
    await c.query('SELECT pg_reload_conf()');
    await c.query(`CREATE TABLE bench_wal_fill AS SELECT repeat('x', 1000) AS x FROM generate_series(1, 600000)`);
    await c.query('DROP TABLE bench_wal_fill');
    await c.query('CHECKPOINT');
  });
}

/** Retires the WAL segments written so far, for reuse by the next run (see {@link prepareWal}). */
const recycleWal = (url: string): Promise<void> => withClient(url, (c: pg.Client) => c.query('CHECKPOINT').then(() => undefined));

/** A fresh database in the bench's PostgreSQL cluster, and the cluster's postmaster pid (for its CPU). */
export async function benchDatabase(): Promise<{ url: string; postmasterPid: number }> {
  if (cluster === null) {
    const c = await startPgCluster();
    cluster = c;
    track(() => c.stop());
    const t0 = Date.now();
    await prepareWal(c.url);
    log(`PostgreSQL: ${Date.now() - t0} ms to write the WAL segments the runs will recycle`);
  } else {
    await recycleWal(cluster.url);
  }
  const postmasterPid = await readPid(join(cluster.dir, 'data', 'postmaster.pid'));
  return { url: (await createDatabase(cluster.url)).url, postmasterPid };
}

/** A Mosquitto broker and its pid, stopped with the run. */
export async function benchMosquitto(stops: RunStops, options?: StartMosquittoOptions): Promise<{ mosquitto: TestMosquitto; pid: number }> {
  const mosquitto = await startMosquitto(options);
  stops.track(() => mosquitto.stop());
  return { mosquitto, pid: await readPid(join(mosquitto.configDir, 'server.pid')) };
}

/** A temp dir (`<tmp>/<prefix>XXXXXX`) removed with the run. */
export async function benchTempDir(stops: RunStops, prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  stops.track(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Broker name `i` of `count` registered with the server. */
export const brokerName = (i: number, count: number): string => (count === 1 ? 'bench-mosquitto' : `bench-mosquitto-${i + 1}`);

export interface StackOptions {
  /** `postgres`: a fresh database in the bench's cluster; `pglite`: the server's embedded database in its data dir. */
  database: 'postgres' | 'pglite';
  mosquittos: number;
  /** Prefix of the server's temp data dir. */
  dataDirPrefix: string;
  /** More server environment (e.g. `SWITCHYARD_DEMO_DEVICES`). */
  env?: Record<string, string>;
  /** Called once per broker as it starts: the address the server registers it at (default its own; channels: a counting proxy). */
  brokerAddress?: (m: TestMosquitto, i: number) => Promise<{ host: string; port: number }>;
  /** How long to wait for the server's /readyz after registering the brokers. Default 20 s. */
  readyTimeoutMs?: number;
}

export interface Stack {
  server: TestProcess & { url: string };
  api: Api;
  databaseUrl: string | null;
  postmasterPid: number | null;
  mosquittos: TestMosquitto[];
  mosquittoPids: number[];
  /** The registered brokers' ids, in the order of `mosquittos`. */
  brokerIds: number[];
}

/** Database, `mosquittos` brokers, the server (LOG_LEVEL warn unless set), the brokers registered, /readyz. */
export async function startStack(stops: RunStops, o: StackOptions): Promise<Stack> {
  const db = o.database === 'postgres' ? await benchDatabase() : null;
  const mosquittos: TestMosquitto[] = [];
  const mosquittoPids: number[] = [];
  const addresses: Array<{ host: string; port: number }> = [];
  for (let i = 0; i < o.mosquittos; i++) {
    const { mosquitto, pid } = await benchMosquitto(stops);
    mosquittos.push(mosquitto);
    mosquittoPids.push(pid);
    addresses.push(o.brokerAddress ? await o.brokerAddress(mosquitto, i) : mosquitto);
  }
  const dataDir = await benchTempDir(stops, o.dataDirPrefix);
  const server = await startServerProcess({
    PORT: String(await freePort()),
    HOST: '127.0.0.1',
    ...(db ? { DATABASE_URL: db.url } : {}),
    SWITCHYARD_EMBEDDED_BROKERS: 'none',
    SWITCHYARD_ADMIN_TOKEN: ADMIN_TOKEN,
    SWITCHYARD_SECRET: BENCH_SECRET,
    SWITCHYARD_DATA_DIR: dataDir,
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn',
    ...o.env,
  });
  stops.track(() => server.stop());
  const api = apiOf(server.url);
  const brokerIds: number[] = [];
  for (const [i, a] of addresses.entries()) brokerIds.push(await registerBroker(api, brokerName(i, o.mosquittos), a.host, a.port));
  await until(async () => (await fetch(`${server.url}/readyz`)).status === 200, o.readyTimeoutMs ?? 20_000, 'server /readyz');
  return { server, api, databaseUrl: db?.url ?? null, postmasterPid: db?.postmasterPid ?? null, mosquittos, mosquittoPids, brokerIds };
}
