// Plain-JS support for real test servers, shared by `scripts/run-tests.mjs` (plain node), `.ci/run` and the
// TypeScript helpers in `test/helpers/` (which import this file; types are in `test-servers.d.mts`).
//
// It finds the PostgreSQL and Mosquitto binaries, picks free ports and runs throwaway PostgreSQL clusters.
// Nothing here prints: callers decide what to say.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, existsSync, constants as fsConstants, readFileSync, readdirSync, rmSync } from 'node:fs';
import { appendFile, chown, mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';

// ---------------------------------------------------------------------------------------------------------------
// Ports

/** A TCP port that was free on 127.0.0.1 a moment ago (the OS picks it; another process may still take it). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address !== null ? address.port : 0;
      server.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Temp dirs

/**
 * Where helpers create their temp dirs: `SWITCHYARD_TEST_TMPDIR` (set by run-tests.mjs to one dir per run, which
 * it sweeps afterwards for servers that a killed test process left behind), else the OS temp dir.
 */
export function testTempRoot() {
  return process.env.SWITCHYARD_TEST_TMPDIR || tmpdir();
}

/**
 * Kills whatever servers are still running from temp dirs under `root` (a `server.pid` file for Mosquitto, a
 * `data/postmaster.pid` for PostgreSQL) and returns their dirs. For run-tests.mjs, after the test processes exit.
 */
export function reapServersUnder(root) {
  const reaped = [];
  let entries = [];
  try {
    entries = readdirSync(root);
  } catch {
    return reaped; // nothing was created
  }
  for (const entry of entries) {
    const dir = join(root, entry);
    const postmasterPid = join(dir, 'data', 'postmaster.pid');
    if (existsSync(postmasterPid)) {
      const [file, argv] = isRoot()
        ? ['runuser', ['-u', 'postgres', '--', join(findPostgresBinDir() ?? '', 'pg_ctl'), '-D', join(dir, 'data'), '-m', 'immediate', '-w', 'stop']]
        : [join(findPostgresBinDir() ?? '', 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'immediate', '-w', 'stop']];
      spawnSync(file, argv, { stdio: 'ignore', timeout: 10_000 });
      reaped.push(dir);
    }
    const serverPid = join(dir, 'server.pid');
    if (existsSync(serverPid)) {
      const pid = Number(readFileSync(serverPid, 'utf8').trim());
      let cmdline = '';
      try {
        cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        cmdline = ''; // already gone
      }
      // Only kill the process if it is still the one started in this dir (pids get reused).
      if (pid > 0 && cmdline.includes(dir)) {
        process.kill(pid, 'SIGKILL');
        reaped.push(dir);
      }
    }
  }
  return reaped;
}

// ---------------------------------------------------------------------------------------------------------------
// Binaries

function isExecutable(path) {
  try {
    accessSync(path, fsConstants.X_OK);
    return true;
  } catch {
    return false; // not there or not executable: the caller tries the next candidate
  }
}

/**
 * Absolute path of `name`, searched in `$PATH` plus the sbin directories (Debian puts `mosquitto` in /usr/sbin,
 * which a non-root `$PATH` often lacks). Null when not found.
 */
export function findExecutable(name, extraDirs = []) {
  const dirs = [
    ...(process.env.PATH ?? '').split(delimiter).filter(Boolean),
    '/usr/local/sbin',
    '/usr/sbin',
    '/sbin',
    ...extraDirs,
  ];
  for (const dir of dirs) {
    const candidate = join(dir, name);
    if (isExecutable(candidate)) return candidate;
  }
  return null;
}

/**
 * Directory holding `initdb`, `pg_ctl` and `postgres`, or null.
 *
 * `SWITCHYARD_TEST_PG_BIN` (a directory) overrides the search; set it to a missing path to simulate a machine
 * without PostgreSQL. Otherwise: `$PATH`, then Debian's `/usr/lib/postgresql/<major>/bin` (highest major first),
 * which is NOT on `$PATH` after `apt-get install postgresql`.
 */
export function findPostgresBinDir() {
  const has = (dir) => ['initdb', 'pg_ctl', 'postgres'].every((bin) => isExecutable(join(dir, bin)));
  const override = process.env.SWITCHYARD_TEST_PG_BIN;
  if (override !== undefined && override !== '') return has(override) ? override : null;
  const onPath = findExecutable('initdb');
  if (onPath !== null) {
    const dir = spawnSync('readlink', ['-f', onPath], { encoding: 'utf8' }).stdout.trim().replace(/\/initdb$/, '');
    if (dir !== '' && has(dir)) return dir;
  }
  let majors = [];
  try {
    majors = readdirSync('/usr/lib/postgresql')
      .filter((entry) => /^\d+$/.test(entry))
      .sort((a, b) => Number(b) - Number(a));
  } catch {
    majors = []; // no Debian PostgreSQL install
  }
  for (const major of majors) {
    const dir = `/usr/lib/postgresql/${major}/bin`;
    if (has(dir)) return dir;
  }
  return null;
}

/**
 * Paths of the Mosquitto broker and its command-line clients (null where missing).
 * `SWITCHYARD_TEST_MOSQUITTO_BIN` (a directory holding all three) overrides the search; set it to a missing
 * path to simulate a machine without Mosquitto.
 */
export function findMosquittoBinaries() {
  const override = process.env.SWITCHYARD_TEST_MOSQUITTO_BIN;
  const find = (name) => {
    if (override !== undefined && override !== '') {
      const candidate = join(override, name);
      return isExecutable(candidate) ? candidate : null;
    }
    return findExecutable(name);
  };
  return { mosquitto: find('mosquitto'), mosquittoPub: find('mosquitto_pub'), mosquittoSub: find('mosquitto_sub') };
}

// ---------------------------------------------------------------------------------------------------------------
// Running as root: PostgreSQL refuses to run as root, Mosquitto drops to its own user.

export function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** `{ uid, gid }` of a system user, or null if it does not exist. */
export function systemUser(name) {
  const result = spawnSync('id', ['-u', name], { encoding: 'utf8' });
  if (result.status !== 0) return null;
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' });
  return { uid: Number(result.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Runs a command (as user `postgres` when we are root) and resolves with its output, or rejects with it. */
function runAsPostgres(command, args, { timeoutMs = 60_000 } = {}) {
  const [file, argv] = isRoot() ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
  return new Promise((resolve, reject) => {
    const child = spawn(file, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`could not run ${file}: ${err.message}`));
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`${[file, ...argv].join(' ')} failed (${signal ?? `exit ${code}`}):\n${output.trim()}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------------------------
// Throwaway PostgreSQL cluster

/** Clusters this process started and has not stopped yet; removed synchronously at process exit. */
const liveClusters = new Set();
let exitHookInstalled = false;

function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // Last resort for a test that forgot stop() or a process that threw: no orphaned postmaster, no temp dir.
  process.on('exit', () => {
    for (const cluster of liveClusters) cluster.stopSync();
  });
}

async function tail(file, lines = 20) {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/**
 * Starts a throwaway PostgreSQL cluster: `initdb` into a fresh temp dir, trust auth, listening on 127.0.0.1 at a
 * free port, unix socket inside the temp dir. As root, initdb/pg_ctl run as user `postgres`, which owns the dir.
 *
 * Durability settings are PostgreSQL's defaults (fsync on): benchmarks measure them. Only initdb itself runs with
 * `--no-sync`, which affects nothing after the cluster is up.
 *
 * Unless `keepAfterExit`, a cluster still running when this process exits is shut down (immediate mode) and its
 * dir removed by a synchronous exit hook.
 *
 * @returns {Promise<{ url: string, port: number, dir: string, binDir: string, stop(): Promise<void> }>}
 *   `url` is a superuser URL to the `postgres` database; `stop()` stops the server and removes the temp dir.
 */
export async function startPgCluster({
  binDir = findPostgresBinDir(),
  maxConnections = 200,
  keepAfterExit = false,
} = {}) {
  if (binDir === null) throw new Error('PostgreSQL binaries (initdb, pg_ctl, postgres) not found');
  const pgUser = isRoot() ? systemUser('postgres') : null;
  if (isRoot() && pgUser === null) {
    throw new Error('running as root, but there is no user "postgres" to run PostgreSQL as (PostgreSQL refuses root)');
  }

  const dir = await mkdtemp(join(testTempRoot(), 'sy-pg-'));
  const dataDir = join(dir, 'data');
  const logFile = join(dir, 'postgres.log');
  const removeDir = () => rm(dir, { recursive: true, force: true });
  try {
    if (pgUser !== null) await chown(dir, pgUser.uid, pgUser.gid);
    await runAsPostgres(join(binDir, 'initdb'), [
      '-D', dataDir, '-U', 'postgres', '--auth=trust', '--encoding=UTF8', '--locale=C', '--no-sync',
    ]);
  } catch (err) {
    await removeDir();
    throw err;
  }

  // The port may be taken between freePort() and the bind: retry with another one.
  let lastError;
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    const port = await freePort();
    const settings = [
      '',
      '# switchyard test cluster',
      `port = ${port}`,
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      `max_connections = ${maxConnections}`,
      '',
    ].join('\n');
    // postgresql.auto.conf is read last, so a retry's port overrides the previous attempt's.
    await appendFile(join(dataDir, 'postgresql.auto.conf'), settings);
    try {
      await runAsPostgres(join(binDir, 'pg_ctl'), ['-D', dataDir, '-l', logFile, '-w', '-t', '60', 'start']);
    } catch (err) {
      lastError = new Error(`${err instanceof Error ? err.message : String(err)}\n--- ${logFile} ---\n${await tail(logFile)}`);
      if (/already in use/i.test(await tail(logFile, 50))) continue;
      break;
    }

    const pgCtl = join(binDir, 'pg_ctl');
    let stopped = false;
    const cluster = {
      url: `postgres://postgres@127.0.0.1:${port}/postgres`,
      port,
      dir,
      binDir,
      async stop() {
        if (stopped) return;
        stopped = true;
        liveClusters.delete(cluster);
        try {
          await runAsPostgres(pgCtl, ['-D', dataDir, '-m', 'fast', '-w', '-t', '30', 'stop']);
        } finally {
          await removeDir();
        }
      },
      stopSync() {
        if (stopped) return;
        stopped = true;
        liveClusters.delete(cluster);
        const [file, argv] = isRoot()
          ? ['runuser', ['-u', 'postgres', '--', pgCtl, '-D', dataDir, '-m', 'immediate', '-w', 'stop']]
          : [pgCtl, ['-D', dataDir, '-m', 'immediate', '-w', 'stop']];
        spawnSync(file, argv, { stdio: 'ignore', timeout: 10_000 });
        rmSync(dir, { recursive: true, force: true });
      },
    };
    if (!keepAfterExit) {
      installExitHook();
      liveClusters.add(cluster);
    }
    return cluster;
  }
  await removeDir();
  throw lastError ?? new Error('PostgreSQL did not start');
}

// ---------------------------------------------------------------------------------------------------------------
// Databases inside a running cluster

/** `url` with its database name replaced. */
export function withDatabase(url, database) {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

/** Runs `fn` with a connected client to `url`, then closes it (an idle error is reported, not a crash). */
export async function withClient(url, fn) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10_000 });
  // An idle client emits 'error' (e.g. the server shut down): keep it and report it instead of crashing.
  let idleError;
  client.on('error', (err) => {
    idleError = err;
  });
  await client.connect();
  try {
    const result = await fn(client);
    if (idleError !== undefined) throw idleError;
    return result;
  } finally {
    await client.end();
  }
}

/**
 * Creates a fresh database `sy_<random>` in the cluster at `adminUrl` (a superuser URL) and returns its name
 * and URL.
 */
export async function createDatabase(adminUrl) {
  const name = `sy_${randomBytes(6).toString('hex')}`;
  await withClient(adminUrl, (client) => client.query(`CREATE DATABASE "${name}"`));
  return { name, url: withDatabase(adminUrl, name) };
}

/** Drops database `name`, terminating whatever connections it still has. */
export async function dropDatabase(adminUrl, name) {
  await withClient(adminUrl, (client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`));
}

/** Stops a cluster started by another process (`start-pg` below) from its dir and bin dir, and removes the dir. */
export async function stopPgClusterAt(dir, binDir) {
  try {
    await runAsPostgres(join(binDir, 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'fast', '-w', '-t', '30', 'stop']);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Command line, for .ci/run:
//   node scripts/test-servers.mjs start-pg        prints shell assignments SWITCHYARD_TEST_PG_URL, _DIR, _BIN_DIR
//   node scripts/test-servers.mjs stop-pg DIR BIN  stops that cluster and removes DIR

const invokedAs = process.argv[1] ? pathToFileURL(resolve(process.argv[1])).href : '';
if (import.meta.url === invokedAs) {
  const [command, ...rest] = process.argv.slice(2);
  if (command === 'start-pg') {
    const cluster = await startPgCluster({ keepAfterExit: true });
    const quote = (value) => `'${value.replaceAll("'", "'\\''")}'`;
    process.stdout.write(
      `SWITCHYARD_TEST_PG_URL=${quote(cluster.url)}\nSWITCHYARD_TEST_PG_DIR=${quote(cluster.dir)}\n` +
        `SWITCHYARD_TEST_PG_BIN_DIR=${quote(cluster.binDir)}\n`,
    );
  } else if (command === 'stop-pg' && rest.length === 2) {
    await stopPgClusterAt(rest[0], rest[1]);
  } else {
    process.stderr.write('usage: test-servers.mjs start-pg | stop-pg <dir> <bin-dir>\n');
    process.exit(2);
  }
}
