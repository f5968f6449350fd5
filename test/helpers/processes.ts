/**
 * Real processes for end-to-end tests: the `switchyard` server and `switchyard-agent` devices, started
 * from their bins exactly as a user would, plus a reader of Mosquitto's log that tells which client ids
 * the broker itself considers connected.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { recordScanned, recordSecrets } from './secret-ledger.ts';
import { waitFor } from './wait.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER_BIN = `${ROOT}packages/server/bin/switchyard.mjs`;
const AGENT_BIN = `${ROOT}packages/agent/bin/switchyard-agent.mjs`;

export interface TestProcess {
  child: ChildProcess;
  /** Everything the process wrote so far (stdout + stderr). */
  output(): string;
  /** Log lines (pino JSON) parsed, in order. */
  logs(): Array<Record<string, any>>;
  /** SIGTERM and wait (SIGKILL after `graceMs`); resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
  /** SIGKILL, no cleanup: a crash. */
  kill(): Promise<void>;
  exited: Promise<number | null>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function run(bin: string, args: string[], env: Record<string, string>): TestProcess {
  const child = spawn(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c));
  // The whole-suite secret scan reads what every server and agent process printed (their logs), and knows the
  // secrets they were given: none may show up there.
  recordSecrets([env.SWITCHYARD_DEVICE_TOKEN, env.SWITCHYARD_ADMIN_TOKEN, env.SWITCHYARD_SECRET]);
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => {
    live.delete(child);
    recordScanned(`output of ${bin.split('/').pop()} ${args.join(' ')} (pid ${child.pid})`, out);
    resolve(code);
  }));
  return {
    child,
    output: () => out,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, any>];
          } catch {
            return [];
          }
        }),
    async stop(graceMs = 5000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    async kill() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGKILL');
      await exited;
    },
    exited,
  };
}

export async function startServerProcess(env: Record<string, string>): Promise<TestProcess & { url: string }> {
  const p = run(SERVER_BIN, ['serve'], { LOG_LEVEL: 'info', ...env });
  const url = `http://${env.HOST ?? '127.0.0.1'}:${env.PORT}`;
  await waitFor(
    async () => {
      if (p.child.exitCode !== null) throw new Error(`server exited with ${p.child.exitCode}:\n${p.output().slice(-3000)}`);
      return fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    },
    { timeoutMs: 60_000, intervalMs: 100, message: 'server /healthz' },
  );
  return { ...p, url };
}

export function startAgentProcess(o: {
  apiUrl: string;
  uuid: string;
  token: string;
  stateDir: string;
  heartbeatMs?: number;
  extraArgs?: string[];
  env?: Record<string, string>;
}): TestProcess {
  return run(
    AGENT_BIN,
    [
      '--api-url', o.apiUrl,
      '--device-uuid', o.uuid,
      '--state-dir', o.stateDir,
      ...(o.heartbeatMs !== undefined ? ['--heartbeat-ms', String(o.heartbeatMs)] : []),
      ...(o.extraArgs ?? []),
    ],
    // The token goes through the environment, not argv (argv is visible to every user of the machine).
    { LOG_LEVEL: 'debug', SWITCHYARD_DEVICE_TOKEN: o.token, ...o.env },
  );
}

/** Client ids Mosquitto itself considers connected, replayed from its log (`connection_messages true`). */
export async function mosquittoConnectedClients(logFile: string): Promise<Set<string>> {
  const text = await readFile(logFile, 'utf8').catch(() => '');
  const connected = new Set<string>();
  for (const line of text.split('\n')) {
    let m = / New client connected from \S+ as (\S+) \(/.exec(line);
    if (m) {
      connected.add(m[1]!);
      continue;
    }
    m = / Client (\S+) (?:disconnected|closed its connection|has exceeded timeout)/.exec(line) ?? / Socket error on client (\S+),/.exec(line);
    if (m) connected.delete(m[1]!.replace(/[.,]$/, ''));
  }
  return connected;
}
