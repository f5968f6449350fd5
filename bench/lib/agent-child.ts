/**
 * The parent's side of bench/lib/migration-agent.ts: forks the Switchyard agent into its own process, forwards its
 * events, and estimates the offset between its clock and ours by ping/pong (the min-RTT sample), so that the
 * child's timestamps can be put on this process's time base.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { now } from './api.ts';
import { track } from './cleanup.ts';
import { log } from './cli.ts';
import type { AgentInit, FromAgent } from './migration-agent.ts';

export interface AgentChild {
  child: ChildProcess;
  /** This process's clock minus the child's (add to a child timestamp). */
  offset: number;
  /** RTT of the ping the offset came from (its error is at most half of it). */
  offsetRttMs: number;
  calibrate(): Promise<void>;
  stop(): Promise<void>;
}

const AGENT = fileURLToPath(new URL('./migration-agent.ts', import.meta.url));

/**
 * Starts the agent with `init` and resolves once it runs; `onMessage` gets its `migration`/`connected` events.
 * Its errors are logged as `<label>: …`. Stopping is on the cleanup stack.
 */
export async function startAgentChild(init: AgentInit, onMessage: (m: FromAgent) => void, label = 'agent'): Promise<AgentChild> {
  const child = fork(AGENT, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  let exited = false;
  const exit = new Promise<void>((resolve) => child.once('exit', () => ((exited = true), resolve())));
  let pong: ((m: { t0: number; tc: number }) => void) | null = null;
  let started: { resolve(): void; reject(e: Error): void } | null = null;
  child.on('message', (raw) => {
    const m = raw as FromAgent;
    if (m.type === 'pong') pong?.(m);
    else if (m.type === 'started') started?.resolve();
    else if (m.type === 'error') {
      log(`${label}: ${m.message}`);
      if (m.fatal) started?.reject(new Error(`agent: ${m.message}`));
    } else onMessage(m);
  });
  const stop = track(async () => {
    if (exited) return;
    child.send({ type: 'stop' });
    if ((await Promise.race([exit.then(() => 'ok'), sleep(5000, 'timeout')])) === 'timeout') child.kill('SIGKILL');
  });
  await new Promise<void>((resolve, reject) => {
    started = { resolve, reject };
    child.once('exit', (code) => reject(new Error(`agent exited (${code})`)));
    child.send(init);
  });
  const a: AgentChild = {
    child,
    offset: 0,
    offsetRttMs: Infinity,
    async calibrate() {
      let best = { rtt: Infinity, offset: 0 };
      for (let i = 0; i < 30; i++) {
        const t0 = now();
        const m = await new Promise<{ t0: number; tc: number }>((resolve) => {
          pong = resolve;
          child.send({ type: 'ping', t0 });
        });
        const t1 = now();
        if (t1 - t0 < best.rtt) best = { rtt: t1 - t0, offset: (t0 + t1) / 2 - m.tc };
        await sleep(2);
      }
      a.offset = best.offset;
      a.offsetRttMs = best.rtt;
    },
    stop,
  };
  return a;
}
