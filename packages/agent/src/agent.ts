/**
 * `createAgent(options)`: the device agent, assembled from its parts — the connection manager (current
 * connection, reconnect with backoff), the shadow client, the migration machine and its runner, the publish
 * queue, the state store and the heartbeat. `bin/switchyard-agent` is a thin shell around it.
 *
 * Boot: with a state file, start from its broker (the API is not asked: a device must come back even when the
 * control plane is down). Without one (first boot, or a state file that cannot be used), ask
 * `GET /api/v1/devices/:uuid/config`, persist that broker atomically, then connect. On every connect:
 * subscribe to the shadow reply topics, switch the publish queue to the connection, publish presence, and
 * `get` the `device-state` shadow — whose answer re-delivers any assignment made while the device was away
 * (or while it was killed mid-move) and, when nothing moves, lets it report what it runs.
 *
 * Channels (`config.channels`, all by default) feed the one migration machine, which deduplicates by shadow
 * version: `shadow` (a delta touching `desired.mqtt` → a `get`), `command` (`commands/command-channel.ts`), `poll`
 * (`poller/config-poller.ts`). Whatever the channels, a shadow `get` answer is always acted on (after connecting,
 * after an expired command), and the poller rescues a device whose MQTT connection has been down longer than
 * `fallbackAfterMs`.
 */
import { EventEmitter } from 'node:events';
import type { SecureContext } from 'node:tls';
import { pino, type Logger } from 'pino';
import { statusTopic, type BackoffPolicy } from '@switchyard/protocol';
import type { BrokerTarget } from './broker-target.ts';
import { systemClock, type Clock } from './clock.ts';
import { AGENT_CHANNELS, AGENT_DEFAULTS, type AgentChannel, type AgentConfig } from './config.ts';
import { CommandChannel } from './commands/command-channel.ts';
import { ConfigPoller } from './poller/config-poller.ts';
import { JobEngine } from './jobs/job-engine.ts';
import { changeBrokerHandler } from './jobs/change-broker-job.ts';
import { ConnectionManager, DEFAULT_RECONNECT_BACKOFF } from './connection/connection-manager.ts';
import { openMqttConnection, type MqttConnection } from './connection/mqtt-connection.ts';
import { loadTrust } from './connection/ca-bundle.ts';
import { createMigrationMachine, type MigrationMachineConfig } from './migration/migration-machine.ts';
import { MigrationRunner, withTimeout } from './migration/migration-runner.ts';
import type { MigrationState, MigrationStateEvent } from './migration/migration-types.ts';
import { PublishQueue, type PublishOptions } from './publish-queue.ts';
import { ShadowGetter } from './shadow/shadow-getter.ts';
import { ShadowClient } from './shadow/shadow-client.ts';
import { createStateStore, type AgentState } from './state/state-store.ts';
import { AgentStartError, bootState } from './boot.ts';

export { AgentStartError };
import { startHeartbeat, type Heartbeat } from './telemetry/heartbeat.ts';

/** Options of {@link createAgent}. */
export interface AgentOptions {
  /** The parsed configuration (`parseAgentConfig`). Only `apiUrl`, `deviceUuid`, `deviceToken`, `stateDir`, `heartbeatMs` are used so far. */
  config: Pick<AgentConfig, 'apiUrl' | 'deviceUuid' | 'deviceToken' | 'stateDir' | 'heartbeatMs'> & Partial<AgentConfig>;
  /** Time and timers; default the system clock. */
  clock?: Clock;
  /** Logger; default a silent one. Children carry `{component, deviceUuid}`. */
  log?: Logger;
  /** HTTP client for the config endpoint; default the global `fetch`. */
  fetch?: typeof fetch;
  /** Migration timeouts and retry backoff; defaults in `DEFAULT_MIGRATION_CONFIG` (10 s timeouts, 1 s → 60 s backoff). */
  migration?: Partial<MigrationMachineConfig>;
  /** Reconnect backoff of the current connection; default 0.5 s → 30 s. */
  reconnectBackoff?: BackoffPolicy;
  /** Backoff of the first-boot config request while the API is unreachable; default 1 s → 30 s. */
  configBackoff?: BackoffPolicy;
  /** CONNACK timeout of every connection, ms; default 10000. */
  connectTimeoutMs?: number;
  /**
   * A move's first `migrating` report is held this long, ms, and dropped if the move switched meanwhile; default
   * 250 (0 = report at once). See `MigrationRunnerOptions.migratingReportDelayMs`.
   */
  migratingReportDelayMs?: number;
  /**
   * PEM CA certificate(s) trusted for `mqtts`/`wss` brokers, besides Node's root store (see
   * `connection/ca-bundle.ts`); replaces `config.caFile`. Checked at `start` (AgentConfigError when not PEM).
   */
  ca?: string | string[];
  /** Most messages pending in the publish queue; default 1000. */
  maxQueuedMessages?: number;
  /** Bounds of `stop`: how long to wait for pending publishes and presence, ms; default 2000. */
  stopTimeoutMs?: number;
}

/** A snapshot of the agent. */
export interface AgentStatus {
  /** `stopped` before `start` / after `stop`; `starting` during boot; `running` after. */
  lifecycle: 'stopped' | 'starting' | 'running' | 'stopping';
  /** The migration machine's state (current broker, move in progress). Null before boot. */
  migration: MigrationState | null;
  /** The broker the current connection is to, when connected. */
  connectedBrokerId: number | null;
  /** Id of the current connection (e.g. `b2#3`), when connected. */
  connectionId: string | null;
  /** Messages waiting in the publish queue (not yet acknowledged). */
  queuedMessages: number;
  /** Heartbeat `bootId` and last `seq`, when the heartbeat runs. */
  heartbeat: { bootId: string; seq: number } | null;
}

/** Events of an {@link Agent}. */
export interface AgentEvents {
  /** Every transition of the migration machine. */
  'migration:state': [event: MigrationStateEvent];
  /** A connection became current (first connect, reconnect, or a move's new connection adopted). */
  connected: [info: { brokerId: number; broker: string; connection: string; adopted: boolean }];
  /** The current connection was lost; a reconnect follows after `retryInMs`. */
  disconnected: [info: { brokerId: number; reason: string; retryInMs: number }];
  /** A (re)connect to the current broker failed. */
  connectFailed: [info: { brokerId: number; reason: string; attempt: number; retryInMs: number }];
}

/** The device agent. */
export interface Agent {
  /**
   * Boots: loads the state (or fetches the config and persists it), starts connecting, starts the heartbeat.
   * Resolves once connecting has started (listen for `connected`); rejects on a permanent problem (no broker
   * for the device, a refused token, an unusable state directory).
   */
  start(): Promise<void>;
  /** Stops cleanly: aborts a move in progress, waits (bounded) for pending publishes, publishes presence offline, disconnects. */
  stop(): Promise<void>;
  /** Publishes through the queue (survives reconnects and broker moves); resolves on PUBACK for QoS 1. */
  publish(topic: string, payload: string | Uint8Array, options?: PublishOptions): Promise<void>;
  /** A snapshot. */
  state(): AgentStatus;
  on<K extends keyof AgentEvents>(event: K, listener: (...args: AgentEvents[K]) => void): Agent;
  once<K extends keyof AgentEvents>(event: K, listener: (...args: AgentEvents[K]) => void): Agent;
  off<K extends keyof AgentEvents>(event: K, listener: (...args: AgentEvents[K]) => void): Agent;
}

/** Creates an agent (does nothing until `start`). */
export function createAgent(options: AgentOptions): Agent {
  const { config } = options;
  const clock = options.clock ?? systemClock;
  const rootLog = (options.log ?? pino({ level: 'silent' })).child({ deviceUuid: config.deviceUuid });
  const log = rootLog.child({ component: 'agent' });
  const emitter = new EventEmitter<AgentEvents>();
  const store = createStateStore({ stateDir: config.stateDir, log: rootLog.child({ component: 'state-store' }) });
  const queue = new PublishQueue({ maxMessages: options.maxQueuedMessages ?? 1000, log: rootLog.child({ component: 'publish-queue' }) });
  const shadow = new ShadowClient({ deviceUuid: config.deviceUuid, clock, log: rootLog });
  const machine = createMigrationMachine(options.migration ?? {});
  const stopTimeoutMs = options.stopTimeoutMs ?? 2000;
  const channels = new Set<AgentChannel>(config.channels ?? AGENT_CHANNELS);
  const feed = (source: 'command' | 'poll') => (a: { target: BrokerTarget; version: number }) =>
    runner?.dispatch({ type: 'assignment', target: a.target, version: a.version, source });
  const commands = channels.has('command')
    ? new CommandChannel({
        deviceUuid: config.deviceUuid,
        clock,
        log: rootLog,
        publish: (topic, payload) => queue.publish(topic, payload, { qos: 1 }),
        assign: feed('command'),
        state: () => runner?.state ?? null,
        refresh: (reason) => requestShadow(reason),
      })
    : null;
  // Channel `job`: the job engine (`jobs/job-engine.ts`) with the `change-broker` handler feeding the machine.
  const jobs = channels.has('job')
    ? new JobEngine({
        deviceUuid: config.deviceUuid,
        clock,
        log: rootLog,
        publish: (topic, payload) => queue.publish(topic, payload, { qos: 1 }),
        handlers: {
          'change-broker': changeBrokerHandler({
            assign: (a) => runner?.dispatch({ type: 'assignment', target: a.target, version: a.version, source: 'job' }),
            state: () => runner?.state ?? null,
            connectedBrokerId: () => manager.current?.target.brokerId ?? null,
            onChange(cb) {
              emitter.on('migration:state', cb);
              emitter.on('connected', cb);
              return () => {
                emitter.off('migration:state', cb);
                emitter.off('connected', cb);
              };
            },
          }),
        },
      })
    : null;
  const poller = new ConfigPoller({
    apiUrl: config.apiUrl,
    deviceUuid: config.deviceUuid,
    deviceToken: config.deviceToken,
    pollChannel: channels.has('poll'),
    pollIntervalMs: config.pollIntervalMs ?? AGENT_DEFAULTS.pollIntervalMs,
    longPollS: config.longPollS ?? AGENT_DEFAULTS.longPollS,
    fallbackAfterMs: config.fallbackAfterMs ?? AGENT_DEFAULTS.fallbackAfterMs,
    assign: feed('poll'),
    state: () => runner?.state ?? null,
    clock,
    log: rootLog,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });

  let lifecycle: AgentStatus['lifecycle'] = 'stopped';
  let runner: MigrationRunner | null = null;
  let heartbeat: Heartbeat | null = null;
  let connectionSeq = 0;
  /** The CAs for mqtts/wss, settled at `start` (undefined: Node's default store). */
  let trust: SecureContext | undefined;
  const bootAbort = new AbortController();

  /** Opens a connection wired to the shadow client. */
  const open = async (target: BrokerTarget): Promise<MqttConnection> => {
    const conn = await openMqttConnection({
      target,
      deviceUuid: config.deviceUuid,
      deviceToken: config.deviceToken,
      id: `b${target.brokerId}#${++connectionSeq}`,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      ...(trust !== undefined ? { trust } : {}),
      log: rootLog.child({ component: 'mqtt' }),
      clock,
    });
    const via = { id: conn.id, brokerId: target.brokerId };
    conn.on('message', (topic, payload) => {
      shadow.handleMessage(via, topic, payload);
      commands?.handleMessage(topic, payload);
      jobs?.handleMessage(topic, payload);
    });
    // Job replies may come through any connection, a move's new one included (same reasoning as commands).
    if (jobs) conn.subscribe(jobs.topics()).catch((err: unknown) => log.warn({ err: (err as Error).message, connection: conn.id }, 'subscribing to jobs failed; the next connect retries'));
    // Commands may arrive through any connection, a move's new one included. Not awaited: packets keep their
    // order on a connection, and a move must not wait a round trip for it.
    if (commands) conn.subscribe(commands.topics()).catch((err: unknown) => log.warn({ err: (err as Error).message, connection: conn.id }, 'subscribing to commands failed; assignments still arrive through the shadow'));
    return conn;
  };

  const presence = (conn: MqttConnection): Promise<void> =>
    conn.publish(statusTopic(config.deviceUuid), JSON.stringify({ state: 'online', brokerId: conn.target.brokerId, at: new Date(clock.now()).toISOString() }), { qos: 1 });

  /** The `get` through the current connection (coalesced, retried); its answer arrives as a shadow-client event. */
  const getter = new ShadowGetter({
    shadow,
    clock,
    log,
    current: () => manager.current,
    lifecycle: () => lifecycle,
  });
  const requestShadow = (reason: string): void => getter.request(reason);

  const manager = new ConnectionManager({
    open,
    clock,
    log: rootLog,
    backoff: options.reconnectBackoff ?? DEFAULT_RECONNECT_BACKOFF,
    async onConnected(conn) {
      // Contract order: subscribe BEFORE any request; presence; publishing; the get that re-delivers assignments.
      await conn.subscribe(shadow.replyTopics());
      queue.switchTo(conn);
      presence(conn).catch((err: unknown) => log.warn({ err: (err as Error).message }, 'presence online not acknowledged'));
      requestShadow('connected');
    },
    onDisconnected(conn, reason) {
      if (queue.connectionId === conn.id) queue.switchTo(null);
      runner?.dispatch({ type: 'oldConnectionLost', reason });
    },
  });
  manager.on('connected', (info) => emitter.emit('connected', info));
  manager.on('disconnected', (info) => emitter.emit('disconnected', info));
  manager.on('connectFailed', (info) => emitter.emit('connectFailed', info));
  manager.on('connected', () => poller.mqttUp());
  // Every connect (first, reconnect, after a move): ask for the next job — one queued while offline runs now.
  // After a move, only once the move is over: asked at the switch, the request would reach the server beside the
  // `connected` report that completes the move, and the two would queue for the same device row.
  let jobsAfterMove = false;
  manager.on('connected', (info) => {
    if (info.adopted) jobsAfterMove = true;
    else jobs?.connected();
  });
  manager.on('disconnected', () => poller.mqttDown());
  manager.on('connectFailed', () => poller.mqttDown());

  shadow.on('assignment', ({ target, version, reported, fromDelta, reportedAfterAssignment }) => {
    if (!fromDelta) runner?.shadowDocument({ assignment: { target, version }, reported, reportedAfterAssignment: reportedAfterAssignment === true });
    // A delta is no document: the assignment alone (no "report what it runs" step).
    else if (channels.has('shadow')) runner?.dispatch({ type: 'assignment', target, version, source: 'shadow' });
  });
  shadow.on('noAssignment', ({ reported }) => runner?.shadowDocument({ reported }));
  shadow.on('assignmentChanged', ({ version }) => {
    if (channels.has('shadow')) requestShadow(`delta v${version}`);
  });

  const boot = (): Promise<AgentState> =>
    bootState({ config, store, log, clock, signal: bootAbort.signal, ...(options.fetch ? { fetch: options.fetch } : {}), ...(options.configBackoff ? { configBackoff: options.configBackoff } : {}) });

  const agent: Agent = {
    async start() {
      if (lifecycle !== 'stopped') throw new Error(`agent already ${lifecycle}`);
      lifecycle = 'starting';
      try {
        // Before anything connects: a bad CA file is a configuration error, reported at once.
        trust = await loadTrust({ ca: options.ca, caFile: config.caFile });
        const persisted = await boot();
        if (lifecycle !== 'starting') throw new AgentStartError('STOPPED_WHILE_STARTING', 'agent stopped while starting');
        runner = new MigrationRunner({
          deviceUuid: config.deviceUuid,
          machine,
          initialState: machine.initialState(persisted),
          open,
          manager,
          shadow,
          queue,
          store,
          clock,
          log: rootLog,
          closeTimeoutMs: stopTimeoutMs,
          ...(options.migratingReportDelayMs !== undefined ? { migratingReportDelayMs: options.migratingReportDelayMs } : {}),
        });
        runner.on('migration:state', (event) => emitter.emit('migration:state', event));
        if (commands) runner.on('migration:state', (event) => commands.onMigrationState(event));
        runner.on('migration:state', (event) => {
          if (event.to !== 'idle' || !jobsAfterMove) return;
          jobsAfterMove = false;
          jobs?.connected();
        });
        manager.start(persisted.broker);
        poller.start();
        if (config.heartbeatMs > 0) {
          heartbeat = startHeartbeat({ deviceUuid: config.deviceUuid, periodMs: config.heartbeatMs, publish: (t, p, o) => agent.publish(t, p, o), clock, log: rootLog });
        }
        lifecycle = 'running';
        log.info({ brokerId: persisted.broker.brokerId, heartbeatMs: config.heartbeatMs }, 'agent started');
      } catch (err) {
        if (lifecycle === 'starting') lifecycle = 'stopped';
        throw err;
      }
    },

    async stop() {
      if (lifecycle === 'stopped' || lifecycle === 'stopping') return;
      lifecycle = 'stopping';
      getter.cancel();
      bootAbort.abort();
      poller.stop();
      commands?.close();
      jobs?.stop();
      heartbeat?.stop();
      await runner?.stop();
      // Let what is in flight be acknowledged, within bounds (a dead broker acknowledges nothing).
      if (queue.size > 0 && manager.current) {
        await withTimeout(clock, queue.flushed(), stopTimeoutMs).catch((err: unknown) => log.warn({ err: (err as Error).message, pending: queue.size }, 'stopping with unacknowledged messages'));
      }
      const conn = manager.stop();
      if (conn) {
        // A clean DISCONNECT suppresses the will: say offline ourselves.
        await withTimeout(
          clock,
          conn.publish(statusTopic(config.deviceUuid), JSON.stringify({ state: 'offline', brokerId: conn.target.brokerId, at: new Date(clock.now()).toISOString() }), { qos: 1 }),
          stopTimeoutMs,
        ).catch((err: unknown) => log.debug({ err: (err as Error).message }, 'presence offline not acknowledged'));
        await conn.end({ reason: 'agent stopping', timeoutMs: stopTimeoutMs });
      }
      queue.close('agent stopped');
      shadow.close('agent stopped');
      lifecycle = 'stopped';
      log.info('agent stopped');
    },

    publish(topic, payload, publishOptions) {
      return queue.publish(topic, payload, publishOptions);
    },

    state() {
      const conn = manager.current;
      return {
        lifecycle,
        migration: runner?.state ?? null,
        connectedBrokerId: conn?.target.brokerId ?? null,
        connectionId: conn?.id ?? null,
        queuedMessages: queue.size,
        heartbeat: heartbeat ? { bootId: heartbeat.bootId, seq: heartbeat.seq } : null,
      };
    },

    on(event, listener) {
      emitter.on(event, listener as never);
      return agent;
    },
    once(event, listener) {
      emitter.once(event, listener as never);
      return agent;
    },
    off(event, listener) {
      emitter.off(event, listener as never);
      return agent;
    },
  };
  return agent;
}
