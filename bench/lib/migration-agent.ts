/**
 * The Switchyard agent for `bench/migration-latency.ts`, run as a child process (`fork`, IPC) so that it has its
 * own event loop, as on a device, and its CPU is measured apart. It is `createAgent` from packages/agent — the
 * same code as `switchyard-agent` — with the heartbeat off.
 *
 * Messages from the parent:
 *  - `init {apiUrl, uuid, token, stateDir, options?}`: creates and starts the agent; answers `started`. `options`
 *    (bench/channels.ts): the channels, poll interval and long-poll wait of the agent's configuration.
 *  - `ping {t0}`: answers `pong {t0, tc}` at once (clock offset estimate, see below).
 *  - `stop`: stops the agent (clean: offline presence, DISCONNECT) and exits.
 * To the parent: every `migration:state` and `connected` event of the agent, with `t` = this process's
 * high-resolution wall clock (`performance.timeOrigin + performance.now()`, ms) taken in the listener. The parent
 * converts `t` to its own time base with the offset measured by ping/pong (min-RTT sample).
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { createAgent, type Agent } from '../../packages/agent/src/agent.ts';
import type { AgentConfig } from '../../packages/agent/src/config.ts';

export interface AgentInit {
  type: 'init';
  apiUrl: string;
  uuid: string;
  token: string;
  stateDir: string;
  options?: Partial<Pick<AgentConfig, 'channels' | 'pollIntervalMs' | 'longPollS'>>;
}

export type FromAgent =
  | { type: 'started' }
  | { type: 'pong'; t0: number; tc: number }
  | { type: 'migration'; t: number; from: string; to: string; cause: string; brokerId: number; targetBrokerId?: number; version: number; reason?: string }
  | { type: 'connected'; t: number; brokerId: number; adopted: boolean }
  | { type: 'error'; message: string; fatal?: boolean };

const now = (): number => performance.timeOrigin + performance.now();
const send = (msg: FromAgent): void => {
  process.send?.(msg);
};

let agent: Agent | null = null;

async function start(msg: AgentInit): Promise<void> {
  const log = pino({ level: process.env.LOG_LEVEL ?? 'warn' }, pino.destination(2));
  agent = createAgent({
    config: { apiUrl: msg.apiUrl, deviceUuid: msg.uuid, deviceToken: msg.token, stateDir: msg.stateDir, heartbeatMs: 0, ...msg.options },
    log,
  });
  agent.on('migration:state', (e) => {
    const t = now();
    send({
      type: 'migration',
      t,
      from: e.from,
      to: e.to,
      cause: e.cause,
      brokerId: e.brokerId,
      version: e.version,
      ...(e.targetBrokerId !== undefined ? { targetBrokerId: e.targetBrokerId } : {}),
      ...(e.reason !== undefined ? { reason: e.reason } : {}),
    });
  });
  agent.on('connected', (info) => send({ type: 'connected', t: now(), brokerId: info.brokerId, adopted: info.adopted }));
  await agent.start();
  send({ type: 'started' });
}

async function stop(): Promise<void> {
  try {
    await agent?.stop();
  } finally {
    process.exit(0);
  }
}

process.on('message', (raw) => {
  const msg = raw as AgentInit | { type: 'ping'; t0: number } | { type: 'stop' };
  if (msg.type === 'ping') send({ type: 'pong', t0: msg.t0, tc: now() });
  else if (msg.type === 'init') start(msg).catch((err: unknown) => send({ type: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err), fatal: true }));
  else if (msg.type === 'stop') void stop();
});
// The parent went away (crash, Ctrl-C): never outlive it.
process.on('disconnect', () => process.exit(0));
process.on('SIGINT', () => undefined); // the parent decides when we stop
