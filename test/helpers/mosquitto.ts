/**
 * A throwaway Mosquitto broker on a free port of 127.0.0.1.
 *
 * Config (in a temp dir owned by user `mosquitto`, since Mosquitto started as root drops to that user before
 * opening its files): `listener <port> 127.0.0.1`, anonymous access unless `passwordFile`/`users`,
 * `persistence false`, `max_queued_messages 10000` (the default 1,000 silently drops messages for a slow
 * subscriber), log to `logFile` (its stdout is block-buffered when not a TTY, so a file is the only reliable log).
 *
 * Guard the suite with `realServers(['mosquitto'])` from `./real.ts`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { chmod, chown, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  findExecutable,
  findMosquittoBinaries,
  freePort,
  isRoot,
  systemUser,
  testTempRoot,
} from '../../scripts/test-servers.mjs';

export interface StartMosquittoOptions {
  /** Lines appended to the generated config (after the defaults, so e.g. a plugin or ACL file can be added). */
  extraConfig?: string;
  /**
   * Create an (empty unless `users`) password file, set `password_file` and `allow_anonymous false`. Add accounts
   * later with `mosquitto_passwd -b <passwordFile> user pass` and `reload()`. Default false.
   */
  passwordFile?: boolean;
  /** Accounts written to the password file; implies `passwordFile: true`. */
  users?: Array<{ username: string; password: string }>;
  /** Listen on this port (e.g. to bring a stopped broker back at the same address). Default: a free port. */
  port?: number;
  /** How long to wait for the port to accept connections, in ms. Default 10000. */
  startTimeoutMs?: number;
  /**
   * A second listener with TLS (files from `./pki.ts`, readable by user `mosquitto`) on `tlsPort` (default a
   * free port). `requireCertificate`: mutual TLS (the client must present a certificate signed by `caFile`);
   * `useIdentityAsUsername`: the certificate's CN becomes the username (for ACLs).
   */
  tls?: {
    caFile: string;
    certFile: string;
    keyFile: string;
    requireCertificate?: boolean;
    useIdentityAsUsername?: boolean;
    port?: number;
  };
}

export interface TestMosquitto {
  host: '127.0.0.1';
  port: number;
  /** `mqtt://127.0.0.1:<port>` */
  url: string;
  /** The TLS listener's port, when `tls` was given (connect as `localhost`: the certificate names it). */
  tlsPort?: number;
  /** The broker's log (connections, errors); read it when a test fails. */
  logFile: string;
  /** Temp dir holding `mosquitto.conf`, the log and the password file; removed by stop(). */
  configDir: string;
  /** Path of the password file when `passwordFile`/`users` was given. */
  passwordFile?: string;
  /** Sends SIGHUP: Mosquitto re-reads the password file and ACL files. */
  reload(): void;
  /** SIGTERM, waits for exit (SIGKILL after 5 s), removes the temp dir. Idempotent. */
  stop(): Promise<void>;
  /** SIGKILL at once, for failure tests; call stop() afterwards to reap it and remove the temp dir. */
  kill(): void;
}

/** Brokers started and not stopped yet; killed synchronously if the process exits without stopping them. */
const live = new Set<{ child: ChildProcess; dir: string }>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const broker of live) {
      broker.child.kill('SIGKILL');
      rmSync(broker.dir, { recursive: true, force: true });
    }
  });
}

async function readTail(file: string, lines = 20): Promise<string> {
  try {
    return (await readFile(file, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log written)'; // the broker died before opening its log: stderr says why
  }
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => {
      socket.destroy();
      resolve(false);
    });
  });
}

function waitForExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export async function startMosquitto(opts: StartMosquittoOptions = {}): Promise<TestMosquitto> {
  const { mosquitto } = findMosquittoBinaries();
  if (mosquitto === null) throw new Error('mosquitto binary not found (install mosquitto)');
  const owner = isRoot() ? systemUser('mosquitto') : null;
  const dir = await mkdtemp(join(testTempRoot(), 'sy-mosquitto-'));
  try {
    return await startIn(dir, mosquitto, owner, opts);
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

async function startIn(
  dir: string,
  mosquitto: string,
  owner: { uid: number; gid: number } | null,
  opts: StartMosquittoOptions,
): Promise<TestMosquitto> {
  const logFile = join(dir, 'mosquitto.log');
  const configFile = join(dir, 'mosquitto.conf');
  const withPasswords = opts.passwordFile === true || opts.users !== undefined;
  const passwordFile = withPasswords ? join(dir, 'passwd') : undefined;
  const startTimeoutMs = opts.startTimeoutMs ?? 10_000;

  await chmod(dir, 0o755);
  if (passwordFile !== undefined) {
    await writeFile(passwordFile, '');
    const mosquittoPasswd = findExecutable('mosquitto_passwd');
    if (mosquittoPasswd === null && (opts.users?.length ?? 0) > 0) {
      throw new Error('mosquitto_passwd not found (install mosquitto)');
    }
    for (const { username, password } of opts.users ?? []) {
      const result = spawnSync(mosquittoPasswd as string, ['-b', passwordFile, username, password], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`mosquitto_passwd failed for ${username}: ${result.stderr}`);
    }
  }
  if (owner !== null) {
    await chown(dir, owner.uid, owner.gid);
    if (passwordFile !== undefined) await chown(passwordFile, owner.uid, owner.gid);
  }

  let lastError: Error | undefined;
  // freePort() cannot reserve the port: retry with another one if the bind loses a race.
  for (let attempt = 1; attempt <= 3; attempt += 1) {
    const port = opts.port ?? (await freePort());
    const tlsPort = opts.tls === undefined ? undefined : (opts.tls.port ?? (await freePort()));
    const tlsListener =
      opts.tls === undefined
        ? []
        : [
            `listener ${tlsPort} 127.0.0.1`,
            `cafile ${opts.tls.caFile}`,
            `certfile ${opts.tls.certFile}`,
            `keyfile ${opts.tls.keyFile}`,
            `require_certificate ${opts.tls.requireCertificate === true ? 'true' : 'false'}`,
            ...(opts.tls.useIdentityAsUsername === true ? ['use_identity_as_username true'] : []),
          ];
    const config = [
      `listener ${port} 127.0.0.1`,
      `allow_anonymous ${withPasswords ? 'false' : 'true'}`,
      ...(passwordFile !== undefined ? [`password_file ${passwordFile}`] : []),
      'persistence false',
      `log_dest file ${logFile}`,
      'log_type error',
      'log_type warning',
      'log_type notice',
      'log_type information',
      'connection_messages true',
      'max_queued_messages 10000',
      'set_tcp_nodelay true',
      ...tlsListener,
      '',
      opts.extraConfig ?? '',
      '',
    ].join('\n');
    await writeFile(configFile, config);
    await rm(logFile, { force: true }); // a previous attempt's log would confuse the diagnosis
    if (owner !== null) await chown(configFile, owner.uid, owner.gid);

    const child = spawn(mosquitto, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      stderr += chunk;
    });
    let spawnError: Error | undefined;
    child.once('error', (err) => {
      spawnError = err;
    });
    // For run-tests.mjs, which kills brokers left behind by a test process that died without stop().
    if (child.pid !== undefined) await writeFile(join(dir, 'server.pid'), String(child.pid));

    const deadline = Date.now() + startTimeoutMs;
    let up = false;
    while (!up && Date.now() < deadline && child.exitCode === null && spawnError === undefined) {
      up = (await canConnect(port)) && (tlsPort === undefined || (await canConnect(tlsPort)));
      if (!up) await sleep(20);
    }
    if (up) {
      const broker = { child, dir };
      installExitHook();
      live.add(broker);
      let stopped = false;
      return {
        host: '127.0.0.1',
        port,
        url: `mqtt://127.0.0.1:${port}`,
        ...(tlsPort !== undefined ? { tlsPort } : {}),
        logFile,
        configDir: dir,
        ...(passwordFile !== undefined ? { passwordFile } : {}),
        reload() {
          child.kill('SIGHUP');
        },
        kill() {
          child.kill('SIGKILL');
        },
        async stop() {
          if (stopped) return;
          stopped = true;
          child.kill('SIGTERM');
          if (!(await waitForExit(child, 5000))) {
            child.kill('SIGKILL');
            await waitForExit(child, 5000);
          }
          live.delete(broker);
          await rm(dir, { recursive: true, force: true });
        },
      };
    }

    child.kill('SIGKILL');
    await waitForExit(child, 5000);
    const log = await readTail(logFile);
    const why = spawnError
      ? `could not run ${mosquitto}: ${spawnError.message}`
      : child.exitCode !== null
        ? `mosquitto exited with code ${child.exitCode}`
        : `port ${port} did not accept connections within ${startTimeoutMs} ms`;
    lastError = new Error(`${why}\n--- stderr ---\n${stderr.trim()}\n--- ${logFile} ---\n${log}`);
    if (!/address already in use/i.test(stderr + log)) break;
  }
  throw lastError ?? new Error('mosquitto did not start');
}
