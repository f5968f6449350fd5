/**
 * The parent's side of bench/lib/shadow-load-generator.ts: forks a load generator (IPC, advanced serialization)
 * and sends it requests, each answered by one message of an expected type. Stopping is on the cleanup stack.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { track } from './cleanup.ts';
import { log } from './cli.ts';

export interface Generator {
  child: ChildProcess;
  request<T>(msg: unknown, expect: string): Promise<T>;
  stop(): Promise<void>;
}

const GENERATOR = fileURLToPath(new URL('./shadow-load-generator.ts', import.meta.url));

export function startGenerator(index: number): Generator {
  const child = fork(GENERATOR, [], {
    // The loader the server's bin uses (no esbuild keepNames: ≈ 10 % less CPU than tsx on hot paths).
    execArgv: ['--import', '@switchyard/protocol/run-ts'],
    serialization: 'advanced',
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  let waiter: { expect: string; resolve(v: any): void; reject(e: Error): void } | null = null;
  let exited = false;
  child.on('message', (raw) => {
    const msg = raw as { type: string; message?: string; fatal?: boolean };
    if (msg.type === 'error') {
      log(`generator ${index}: ${msg.message}`);
      if (msg.fatal && waiter) waiter.reject(new Error(`generator ${index}: ${msg.message}`));
      return;
    }
    if (waiter && msg.type === waiter.expect) {
      const w = waiter;
      waiter = null;
      w.resolve(msg);
    }
  });
  child.on('exit', (code, signal) => {
    exited = true;
    waiter?.reject(new Error(`generator ${index} exited (${signal ?? code})`));
  });
  const stop = track(async () => {
    if (exited) return;
    child.send({ type: 'stop' });
    const gone = new Promise((r) => child.once('exit', r));
    if ((await Promise.race([gone, sleep(5000, 'timeout')])) === 'timeout') child.kill('SIGKILL');
  });
  return {
    child,
    stop,
    request<T>(msg: unknown, expect: string): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        waiter = { expect, resolve, reject };
        child.send(msg as object);
      });
    },
  };
}
