#!/usr/bin/env node
// `npm run bench [-- <name>… [--flag value…]]`
//
// Runs every `bench/*.ts` (in name order) or only the ones named (`shadow-throughput`, `bench/shadow-throughput.ts`
// …), each in its own `node --import @switchyard/protocol/run-ts` process (the TypeScript loader the server's own
// bin uses: no keepNames, see packages/protocol/run/ts-hooks.mjs), one after another. Every other argument is passed to each
// bench (e.g. `npm run bench -- shadow-throughput --devices 2000 --runs 3`). Ctrl-C is forwarded to the running
// bench, which stops its servers and removes its temp dirs; the runner exits with the first failing exit code.

import { spawn } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(fileURLToPath(new URL('..', import.meta.url)));
const benchDir = join(root, 'bench');
const all = existsSync(benchDir)
  ? readdirSync(benchDir, { withFileTypes: true })
      .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
      .map((e) => e.name.slice(0, -'.ts'.length))
      .sort()
  : [];

const names = [];
const passThrough = [];
for (const arg of process.argv.slice(2)) {
  const name = basename(arg).replace(/\.ts$/, '');
  if (!arg.startsWith('-') && all.includes(name)) {
    names.push(name);
  } else {
    passThrough.push(arg);
  }
}
const selected = names.length > 0 ? names : all;
if (selected.length === 0) {
  process.stdout.write('run-bench: no benchmarks in bench/\n');
  process.exit(0);
}

let current = null;
let receivedSignal = null;
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    // The terminal already sent Ctrl-C to the bench (same process group); forward anyway for `kill`.
    if (receivedSignal !== null) current?.kill('SIGKILL');
    receivedSignal = signal;
    current?.kill(signal);
  });
}

let exitCode = 0;
for (const name of selected) {
  if (receivedSignal !== null) break;
  process.stdout.write(`# bench ${name}${passThrough.length > 0 ? ` ${passThrough.join(' ')}` : ''}\n`);
  const code = await new Promise((resolveRun) => {
    current = spawn(process.execPath, ['--import', '@switchyard/protocol/run-ts', join(benchDir, `${name}.ts`), ...passThrough], { cwd: root, stdio: 'inherit' });
    current.once('error', (err) => {
      process.stderr.write(`run-bench: could not start node: ${err.message}\n`);
      resolveRun(1);
    });
    current.once('exit', (c, signal) => resolveRun(c ?? (signal === 'SIGINT' ? 130 : 1)));
  });
  current = null;
  if (code !== 0) {
    process.stderr.write(`run-bench: ${name} failed (exit ${code})\n`);
    if (exitCode === 0) exitCode = code;
  }
}
process.exit(receivedSignal !== null ? 130 : exitCode);
