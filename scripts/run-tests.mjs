#!/usr/bin/env node
// `npm test [-- <file|dir|substring>… | --node-test-flag…]`
//
// Finds the test files, starts ONE shared throwaway PostgreSQL cluster for the run when the binaries exist and
// SWITCHYARD_TEST_PG_URL is not already set (tests then create a fresh database each, see
// test/helpers/postgres.ts), runs them with node:test under tsx, stops the cluster, and exits with the tests'
// exit code. Arguments starting with `-` go to node (e.g. `--test-name-pattern=shadow`); others select files:
// an existing file or directory, or else a substring of the file path.

import { spawn } from 'node:child_process';
import { scanLedger } from './secret-scan.mjs';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chmodSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { findMosquittoBinaries, findPostgresBinDir, reapServersUnder, startPgCluster } from './test-servers.mjs';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const excluded = new Set(['node_modules', 'dist', '.git']);
const excludedPaths = [join('test', 'helpers', 'fixtures')];

function walk(dir, out) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return out; // the folder does not exist (yet): nothing to run there
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    const rel = relative(root, path);
    if (excluded.has(entry.name) || excludedPaths.some((p) => rel === p || rel.startsWith(p + sep))) continue;
    if (entry.isDirectory()) walk(path, out);
    else if (entry.isFile() && entry.name.endsWith('.test.ts')) out.push(rel);
  }
  return out;
}

function discover() {
  const files = [];
  const packagesDir = join(root, 'packages');
  const packages = existsSync(packagesDir) ? readdirSync(packagesDir) : [];
  for (const pkg of packages) {
    walk(join(packagesDir, pkg, 'src'), files);
    walk(join(packagesDir, pkg, 'test'), files);
  }
  walk(join(root, 'test'), files);
  return [...new Set(files)].sort();
}

function select(all, filters) {
  if (filters.length === 0) return all;
  const chosen = new Set();
  for (const filter of filters) {
    const abs = resolve(process.cwd(), filter);
    let matched;
    if (existsSync(abs) && statSync(abs).isFile()) {
      matched = [relative(root, abs)];
    } else if (existsSync(abs) && statSync(abs).isDirectory()) {
      const prefix = relative(root, abs);
      matched = all.filter((file) => prefix === '' || file.startsWith(prefix + sep));
    } else {
      matched = all.filter((file) => file.includes(filter));
    }
    if (matched.length === 0) {
      process.stderr.write(`run-tests: no test file matches "${filter}"\n`);
      process.exit(1);
    }
    for (const file of matched) chosen.add(file);
  }
  return [...chosen].sort();
}

const args = process.argv.slice(2);
const nodeFlags = args.filter((arg) => arg.startsWith('-'));
const files = select(
  discover(),
  args.filter((arg) => !arg.startsWith('-')),
);
if (files.length === 0) {
  process.stdout.write('# run-tests: no test files found\n');
  process.exit(0);
}

const mode = process.env.SWITCHYARD_TEST_REAL === 'required' ? 'required' : 'auto';
// One temp dir per run holds every server's temp dir, so that servers a killed test process left behind can be
// found and stopped afterwards. 0755: postgres and mosquitto (non-root users) must traverse it.
const runDir = mkdtempSync(join(tmpdir(), 'sy-test-run-'));
chmodSync(runDir, 0o755);
process.env.SWITCHYARD_TEST_TMPDIR = runDir;
// The whole-suite secret scan's ledger (test/helpers/secret-ledger.ts), read after the run (scripts/secret-scan.mjs).
const ledgerDir = join(runDir, 'secret-ledger');
mkdirSync(ledgerDir);
process.env.SWITCHYARD_TEST_LEDGER_DIR = ledgerDir;
const env = { ...process.env };
function cleanRunDir() {
  const reaped = reapServersUnder(runDir);
  if (reaped.length > 0) {
    process.stderr.write(`run-tests: stopped ${reaped.length} server(s) left running by tests that did not stop them:\n  ${reaped.join('\n  ')}\n`);
  }
  rmSync(runDir, { recursive: true, force: true });
}
let cluster = null;
let pgStatus;
const pgBin = findPostgresBinDir();
if (process.env.SWITCHYARD_TEST_PG_URL) {
  pgStatus = 'postgres (SWITCHYARD_TEST_PG_URL)';
} else if (pgBin !== null) {
  const started = Date.now();
  try {
    cluster = await startPgCluster({ binDir: pgBin });
  } catch (err) {
    process.stderr.write(`run-tests: could not start the shared PostgreSQL cluster:\n${err instanceof Error ? err.message : err}\n`);
    cleanRunDir();
    process.exit(1);
  }
  env.SWITCHYARD_TEST_PG_URL = cluster.url;
  pgStatus = `postgres (shared cluster ${pgBin} on 127.0.0.1:${cluster.port}, started in ${Date.now() - started} ms)`;
} else {
  pgStatus = 'no postgres';
}
const mq = findMosquittoBinaries();
const mqStatus = [
  mq.mosquitto !== null ? 'mosquitto' : 'no mosquitto',
  mq.mosquittoPub !== null && mq.mosquittoSub !== null ? 'mosquitto-clients' : 'no mosquitto-clients',
].join(', ');
process.stdout.write(`# real servers: ${pgStatus}, ${mqStatus}; SWITCHYARD_TEST_REAL=${mode}; ${files.length} test file(s)\n`);

let stopping = null;
function stopCluster() {
  stopping ??= (cluster === null ? Promise.resolve() : cluster.stop())
    .catch((err) => {
      process.stderr.write(`run-tests: stopping the PostgreSQL cluster failed: ${err instanceof Error ? err.message : err}\n`);
    })
    .then(cleanRunDir);
  return stopping;
}

const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-concurrency=2', '--test-timeout=300000', ...nodeFlags, ...files],
  { cwd: root, env, stdio: 'inherit' },
);

let receivedSignal = null;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    // Forward once; the child's exit below stops the cluster and exits. A second signal forces it.
    if (receivedSignal !== null) child.kill('SIGKILL');
    receivedSignal = signal;
    child.kill(signal);
  });
}

child.once('error', async (err) => {
  process.stderr.write(`run-tests: could not start node: ${err.message}\n`);
  await stopCluster();
  process.exit(1);
});

child.once('exit', async (code, signal) => {
  // Before the run dir goes: no secret the tests created may stand in a log, a table or an error body.
  const scan = scanLedger(ledgerDir);
  process.stdout.write(`# secret scan: ${scan.secrets} secrets against ${scan.files} logs, table dumps and error bodies (${Math.round(scan.bytes / 1024)} KiB): ${scan.hits.length === 0 ? 'no hit' : `${scan.hits.length} HIT(S)`}\n`);
  for (const hit of scan.hits.slice(0, 20)) process.stdout.write(`#   secret found: ${hit}\n`);
  await stopCluster();
  if (scan.hits.length > 0 && code === 0) code = 1;
  const signals = { SIGINT: 2, SIGTERM: 15, SIGKILL: 9 };
  if (receivedSignal !== null) process.exit(128 + signals[receivedSignal]);
  process.exit(code ?? 128 + (signals[signal] ?? 1));
});
