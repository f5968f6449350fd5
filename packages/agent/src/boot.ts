/**
 * The agent's boot: start from the persisted state (the API is not asked — a device must come back even when
 * the control plane is down), or, without a usable state file, ask `GET /api/v1/devices/:uuid/config` (retrying
 * with backoff until it answers or the agent stops) and persist that broker atomically before connecting.
 */
import type { Logger } from 'pino';
import { nextDelay, type BackoffPolicy } from '@switchyard/protocol';
import type { BrokerTarget } from './broker-target.ts';
import type { Clock } from './clock.ts';
import type { AgentConfig } from './config.ts';
import { ConfigFetchError, fetchDeviceConfig } from './poller/config-client.ts';
import { StateFileError, type AgentState, type StateStore } from './state/state-store.ts';

/** The agent cannot start; `code` says why. The message never contains the token. */
export class AgentStartError extends Error {
  override readonly name = 'AgentStartError';
  constructor(
    readonly code: 'DEVICE_HAS_NO_BROKER' | 'CONFIG_REFUSED' | 'STATE_OF_ANOTHER_DEVICE' | 'STOPPED_WHILE_STARTING',
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface BootDeps {
  config: Pick<AgentConfig, 'apiUrl' | 'deviceUuid' | 'deviceToken'>;
  store: StateStore;
  log: Logger;
  clock: Clock;
  /** Aborted when the agent stops while booting. */
  signal: AbortSignal;
  fetch?: typeof fetch;
  /** Retry policy for the config endpoint. Default base 1 s, cap 30 s. */
  configBackoff?: BackoffPolicy;
}

/** The persisted state, or the config endpoint's broker (persisted first). */
export async function bootState(d: BootDeps): Promise<AgentState> {
  const { config, store, log } = d;
  let saved: AgentState | null = null;
  try {
    saved = await store.load();
  } catch (err) {
    if (!(err instanceof StateFileError)) throw err;
    log.error({ err, path: store.path }, 'the state file cannot be used; asking the API for the broker and overwriting it');
  }
  if (saved) {
    if (saved.deviceUuid !== config.deviceUuid) {
      throw new AgentStartError('STATE_OF_ANOTHER_DEVICE', `${store.path} belongs to device ${saved.deviceUuid}, not ${config.deviceUuid}: use another --state-dir`);
    }
    log.info({ brokerId: saved.broker.brokerId, broker: saved.broker.url, appliedVersion: saved.appliedVersion }, 'starting from the persisted broker');
    return saved;
  }
  const broker = await fetchBroker(d);
  const state: AgentState = { deviceUuid: config.deviceUuid, broker, appliedVersion: 0 };
  // Persist before connecting: a crash from here on boots on this broker without asking again.
  await store.save(state);
  log.info({ brokerId: broker.brokerId, broker: broker.url }, 'first boot: broker from the config endpoint persisted');
  return state;
}

async function fetchBroker(d: BootDeps): Promise<BrokerTarget> {
  const { config, log, clock, signal } = d;
  const backoff = d.configBackoff ?? { baseMs: 1000, maxMs: 30_000 };
  for (let attempt = 0; ; attempt++) {
    if (signal.aborted) throw new AgentStartError('STOPPED_WHILE_STARTING', 'agent stopped while asking for its config');
    try {
      const res = await fetchDeviceConfig({
        apiUrl: config.apiUrl,
        deviceUuid: config.deviceUuid,
        deviceToken: config.deviceToken,
        ...(d.fetch ? { fetch: d.fetch } : {}),
        signal: AbortSignal.any([signal, AbortSignal.timeout(15_000)]),
      });
      if (res.status !== 'ok') throw new ConfigFetchError('config endpoint answered 304 to a request without If-None-Match', false, 304);
      if (!res.mqtt) {
        throw new AgentStartError('DEVICE_HAS_NO_BROKER', `device ${config.deviceUuid} has no broker assigned: assign one (PUT /api/v1/devices/${config.deviceUuid}/broker) and start again`);
      }
      return res.mqtt;
    } catch (err) {
      if (err instanceof AgentStartError) throw err;
      if (err instanceof ConfigFetchError && err.permanent) throw new AgentStartError('CONFIG_REFUSED', err.message, { cause: err });
      if (signal.aborted) throw new AgentStartError('STOPPED_WHILE_STARTING', 'agent stopped while asking for its config');
      const delay = nextDelay(Math.min(attempt, 20), backoff);
      log.warn({ err: (err as Error).message, attempt, retryInMs: delay }, 'cannot get the config yet; retrying');
      await new Promise<void>((resolve) => {
        const t = clock.setTimeout(resolve, delay);
        signal.addEventListener('abort', () => {
          clock.clearTimeout(t);
          resolve();
        }, { once: true });
      });
    }
  }
}
