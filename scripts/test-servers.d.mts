// Types for test-servers.mjs (plain JS so that scripts/run-tests.mjs can use it without tsx).

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number>;

/** Parent of the helpers' temp dirs: SWITCHYARD_TEST_TMPDIR (one per `npm test` run) or the OS temp dir. */
export function testTempRoot(): string;

/** Kills servers still running from temp dirs under `root`; returns their dirs. */
export function reapServersUnder(root: string): string[];

/** Absolute path of an executable found in $PATH or the sbin directories, or null. */
export function findExecutable(name: string, extraDirs?: string[]): string | null;

/** Directory holding initdb, pg_ctl and postgres (override: SWITCHYARD_TEST_PG_BIN), or null. */
export function findPostgresBinDir(): string | null;

/** Paths of mosquitto, mosquitto_pub and mosquitto_sub (override: SWITCHYARD_TEST_MOSQUITTO_BIN), null where missing. */
export function findMosquittoBinaries(): {
  mosquitto: string | null;
  mosquittoPub: string | null;
  mosquittoSub: string | null;
};

export function isRoot(): boolean;

/** uid and gid of a system user, or null if it does not exist. */
export function systemUser(name: string): { uid: number; gid: number } | null;

export interface PgCluster {
  /** Superuser URL to the cluster's `postgres` database (trust auth, no password). */
  url: string;
  port: number;
  /** Temp dir holding the data directory, the unix socket and `postgres.log`; removed by stop(). */
  dir: string;
  binDir: string;
  /** Stops the server (fast shutdown) and removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** Synchronous immediate shutdown, for process-exit hooks. Idempotent. */
  stopSync(): void;
}

export interface PgClusterOptions {
  /** Directory with initdb/pg_ctl/postgres. Default: findPostgresBinDir(). */
  binDir?: string | null;
  /** `max_connections` of the cluster. Default 200. */
  maxConnections?: number;
  /** Leave the cluster running when this process exits (for .ci/run, which stops it itself). Default false. */
  keepAfterExit?: boolean;
}

/** initdb + pg_ctl start of a throwaway cluster on a free port of 127.0.0.1. */
export function startPgCluster(options?: PgClusterOptions): Promise<PgCluster>;

/** `url` with its database name replaced. */
export function withDatabase(url: string, database: string): string;

/** Creates database `sy_<random>` in the cluster at `adminUrl` (a superuser URL). */
export function createDatabase(adminUrl: string): Promise<{ name: string; url: string }>;

/** Drops database `name`, terminating its connections first (`WITH (FORCE)`). */
export function dropDatabase(adminUrl: string, name: string): Promise<void>;

/** Stops a cluster started by another process from its temp dir and bin dir, and removes the dir. */
export function stopPgClusterAt(dir: string, binDir: string): Promise<void>;

/** Runs `fn` with a client connected to `url`, then closes it; an error the idle client reported is thrown. */
export function withClient<T>(url: string, fn: (client: import('pg').Client) => Promise<T>): Promise<T>;
