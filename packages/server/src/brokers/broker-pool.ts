/**
 * The broker pool: one MQTT connection from this server to every active broker.
 *
 * Every instance connects to every broker, to publish (replies, outbox deliveries). Only the instance that owns
 * a broker (see `broker-ownership.ts`: an advisory lock per broker) subscribes to its request topics (never to
 * its own replies) and hands every message to `onMessage`; a standby instance takes over within
 * `ownershipRetryMs` when the owner dies or lets go. A lost connection is re-opened after `nextDelay(attempt)` — capped
 * exponential backoff with full jitter — and every failure is logged with the next delay.
 * `refresh()` re-reads the broker records and opens, re-opens (changed settings) or closes
 * connections (disabled or deleted brokers) without a restart; the server calls it after every
 * broker change it makes and on a slow timer, so changes made by another instance are noticed too.
 *
 * TLS (`mqtts`/`wss`): the broker's certificate is always verified, host name included — against the record's
 * `caCert` when it has one (those certificates only), else against Node's built-in root store. A failure is
 * logged at error level with an operator's sentence (`broker-tls.ts`), kept as the connection's `lastError`
 * (shown in `GET /brokers/:id` and `/readyz`) and retried with the usual backoff.
 *
 * States of one connection: `connecting` → `connected` → (`waiting` with a retry timer → `connecting`)…,
 * until `closed` (removed from the pool). While `connected`, ownership is wanted: `owner` (subscribed) or
 * standby (connected only). A connection that closes releases ownership after the MQTT session is gone, so two
 * instances never both hold request subscriptions of a broker in an orderly hand-over.
 */
import { randomBytes } from 'node:crypto';
import { nextDelay } from '@switchyard/protocol';
import type { Logger } from '../log.ts';
import { createBrokerOwnership } from './broker-ownership.ts';
import { brokerTlsOptions, describeBrokerTlsFailure } from './broker-tls.ts';
import { MqttLink } from './mqtt-link.ts';
import { BrokerNotConnectedError, type BrokerConnectionConfig, type BrokerPoolOptions, type BrokerPool } from './broker-pool.types.ts';

export * from './broker-pool.types.ts';

interface Entry {
  config: BrokerConnectionConfig;
  fingerprint: string;
  client: MqttLink | null;
  connected: boolean;
  /** Owner and subscribed to the request topics on `client`. */
  owner: boolean;
  attempt: number;
  retry: NodeJS.Timeout | null;
  lastError?: string;
  closed: boolean;
  connectWaiters: Array<() => void>;
}

const fingerprintOf = (c: BrokerConnectionConfig): string =>
  JSON.stringify([c.protocol, c.host, c.port, c.protocolVersion, c.username ?? null, c.password ?? null, c.caCert ?? null]);

export function createBrokerPool(opts: BrokerPoolOptions): BrokerPool {
  const log = opts.log.child({ component: 'broker-pool' });
  const backoff = opts.backoff ?? { baseMs: 500, maxMs: 30_000 };
  const instanceId = randomBytes(4).toString('hex');
  const entries = new Map<number, Entry>();
  /** `listen` handlers by broker and topic, and the subscriptions each MQTT client made for them. */
  const listeners = new Map<number, Map<string, (payload: Buffer) => void>>();
  const listening = new WeakMap<MqttLink, Map<string, Promise<void>>>();
  let refreshTimer: NodeJS.Timeout | null = null;
  let closing = false;
  let refreshing: Promise<void> | null = null;

  const settle = (entry: Entry): void => {
    const waiters = entry.connectWaiters;
    entry.connectWaiters = [];
    for (const w of waiters) w();
  };

  const ownership = createBrokerOwnership({
    openSession: opts.openLockSession,
    ...(opts.ownershipRetryMs !== undefined ? { retryMs: opts.ownershipRetryMs } : {}),
    log,
    clock: opts.clock,
    onAcquired: (brokerId) => {
      const entry = entries.get(brokerId);
      if (entry?.client && entry.connected) void subscribe(entry, entry.client);
      // else: the connection just went; its close handler releases the lock
    },
    onLost: (brokerIds) => {
      // Messages stop being handled at once (onMessage checks ownership); the subscriptions go next.
      for (const id of brokerIds) {
        const entry = entries.get(id);
        if (!entry) continue;
        entry.owner = false;
        const client = entry.client;
        if (!client || !entry.connected || opts.subscriptions.length === 0) continue;
        client.unsubscribe(opts.subscriptions).catch((err: unknown) => {
          log.warn({ err, brokerId: id }, 'unsubscribing after losing ownership failed; reconnecting without subscriptions');
          client.destroy();
        });
      }
    },
  });

  async function subscribe(entry: Entry, client: MqttLink): Promise<void> {
    const clog = log.child({ brokerId: entry.config.id, broker: entry.config.name });
    try {
      await client.subscribe(opts.subscriptions, 1);
      if (entry.client !== client || !ownership.owns(entry.config.id)) return; // gone or lost meanwhile
      entry.owner = true;
      clog.info('owner: subscribed to the request topics');
      settle(entry);
    } catch (err) {
      entry.lastError = `subscribe failed: ${(err as Error).message}`;
      clog.error({ err }, 'subscribing to request topics failed; reconnecting');
      client.destroy();
    }
  }

  function connect(entry: Entry): void {
    const c = entry.config;
    const clog = log.child({ brokerId: c.id, broker: c.name });
    const tls = brokerTlsOptions(c);
    if (typeof tls === 'string') {
      entry.lastError = tls;
      retryLater(entry, clog, false);
      return;
    }
    const client: MqttLink = new MqttLink(
      {
        protocol: c.protocol,
        host: c.host,
        port: c.port,
        version: c.protocolVersion,
        clientId: `switchyard-server-${instanceId}-${c.id}`,
        keepalive: 30,
        connectTimeoutMs: 10_000,
        ...(c.username ? { username: c.username } : {}),
        ...(c.password ? { password: c.password } : {}),
        tls,
      },
      {
        connect: () => {
          entry.connected = true;
          entry.attempt = 0;
          delete entry.lastError;
          clog.info('connected');
          opts.onConnected?.(c.id);
          ownership
            .acquire(c.id)
            .then((owned) => {
              if (owned || entry.client !== client) return; // the owner settles after subscribing
              clog.info({ retryMs: opts.ownershipRetryMs ?? 2000 }, 'standby: another instance owns the request subscriptions');
              settle(entry);
            })
            .catch((err: unknown) => clog.error({ err }, 'taking ownership failed; the next retry tries again'));
        },
        message: (topic, payload) => {
          const tap = listeners.get(c.id)?.get(topic);
          if (tap) {
            try {
              tap(payload);
            } catch (err) {
              clog.error({ err, topic }, 'reply handler threw; reply dropped');
            }
            return;
          }
          // Ownership lost (or released) a moment ago: another instance may already answer this broker.
          if (!ownership.owns(c.id)) return;
          try {
            opts.onMessage(c.id, topic, payload);
          } catch (err) {
            // One bad message must never take the connection (or the server) down.
            clog.error({ err, topic }, 'message handler threw; message dropped');
          }
        },
        error: (err) => {
          const tlsFailure = describeBrokerTlsFailure(err, Boolean(c.caCert));
          if (tlsFailure !== null) {
            // A configuration problem, not a network blip: say so loudly (the retry below keeps trying).
            if (entry.lastError !== tlsFailure) clog.error({ url: `${c.protocol}://${c.host}:${c.port}`, code: (err as { code?: unknown }).code }, tlsFailure);
            entry.lastError = tlsFailure;
          } else {
            entry.lastError = err.message;
          }
        },
        close: () => {
          const was = entry.connected;
          entry.connected = false;
          entry.owner = false;
          if (entry.closed || closing || entry.client !== client) return;
          // After the MQTT session is gone, so the next owner's subscriptions never overlap ours.
          void ownership.release(c.id);
          entry.client = null;
          retryLater(entry, clog, was);
        },
      },
    );
    entry.client = client;
  }

  function retryLater(entry: Entry, clog: Logger, wasConnected: boolean): void {
    const delay = nextDelay(entry.attempt, backoff);
    entry.attempt += 1;
    clog.warn({ lastError: entry.lastError, attempt: entry.attempt, nextDelayMs: delay, wasConnected }, 'broker connection lost; retrying');
    entry.retry = opts.clock.setTimeout(() => {
      entry.retry = null;
      if (!entry.closed && !closing) connect(entry);
    }, delay);
  }

  async function closeEntry(entry: Entry): Promise<void> {
    entry.closed = true;
    entry.connected = false;
    entry.owner = false;
    if (entry.retry) opts.clock.clearTimeout(entry.retry);
    entry.retry = null;
    const client = entry.client;
    entry.client = null;
    if (client) await client.end();
    await ownership.release(entry.config.id);
  }

  async function doRefresh(): Promise<void> {
    let configs: BrokerConnectionConfig[];
    try {
      configs = await opts.loadBrokers();
    } catch (err) {
      log.error({ err }, 'could not read broker records; keeping current connections');
      return;
    }
    const wanted = new Map(configs.filter((c) => c.status !== 'disabled').map((c) => [c.id, c]));
    for (const [id, entry] of entries) {
      const next = wanted.get(id);
      if (!next || fingerprintOf(next) !== entry.fingerprint) {
        log.info({ brokerId: id, reason: next ? 'settings changed' : 'disabled or removed' }, 'closing broker connection');
        entries.delete(id);
        await closeEntry(entry);
      } else {
        entry.config = next; // name/status changes need no reconnect
      }
    }
    for (const [id, config] of wanted) {
      if (entries.has(id) || closing) continue;
      const entry: Entry = {
        config,
        fingerprint: fingerprintOf(config),
        client: null,
        connected: false,
        owner: false,
        attempt: 0,
        retry: null,
        closed: false,
        connectWaiters: [],
      };
      entries.set(id, entry);
      connect(entry);
    }
  }

  function refresh(): Promise<void> {
    // Serialise refreshes; a refresh asked for while one runs runs again afterwards.
    const run = (refreshing ?? Promise.resolve()).then(doRefresh);
    refreshing = run.finally(() => {
      if (refreshing === run) refreshing = null;
    });
    return run;
  }

  return {
    async start() {
      await refresh();
      const every = opts.refreshIntervalMs ?? 10_000;
      if (every > 0) {
        const tick = (): void => {
          refreshTimer = opts.clock.setTimeout(() => {
            refresh()
              .catch((err: unknown) => log.error({ err }, 'refreshing brokers failed; the next tick retries'))
              .finally(() => {
              if (!closing) tick();
            });
          }, every);
        };
        tick();
      }
    },
    refresh,
    publish(brokerId, topic, payload, o = {}) {
      const entry = entries.get(brokerId);
      const client = entry?.client;
      if (!entry || !client || !entry.connected) return Promise.reject(new BrokerNotConnectedError(brokerId));
      return client.publish(topic, payload, o.qos ?? 1, o.retain ?? false);
    },
    post(brokerId, topic, payload, qos, onError) {
      const entry = entries.get(brokerId);
      const client = entry?.client;
      if (!entry || !client || !entry.connected) onError(new BrokerNotConnectedError(brokerId));
      else client.post(topic, payload, qos, onError);
    },
    status() {
      return [...entries.values()].map((e) => ({
        brokerId: e.config.id,
        name: e.config.name,
        connected: e.connected,
        owner: e.owner,
        ...(e.lastError ? { lastError: e.lastError } : {}),
      }));
    },
    isConnected: (brokerId) => entries.get(brokerId)?.connected ?? false,
    waitConnected(brokerId, timeoutMs) {
      const entry = entries.get(brokerId);
      if (entry?.connected) return Promise.resolve();
      if (!entry) return Promise.reject(new BrokerNotConnectedError(brokerId));
      return new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new BrokerNotConnectedError(brokerId)), timeoutMs);
        entry.connectWaiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    },
    listen(brokerId, topic, handler) {
      let byTopic = listeners.get(brokerId);
      if (!byTopic) listeners.set(brokerId, (byTopic = new Map()));
      byTopic.set(topic, handler);
      const entry = entries.get(brokerId);
      const client = entry?.client;
      if (!entry || !client || !entry.connected) return Promise.reject(new BrokerNotConnectedError(brokerId));
      let subs = listening.get(client);
      if (!subs) listening.set(client, (subs = new Map()));
      let subscribed = subs.get(topic);
      if (!subscribed) {
        const made = client.subscribe([topic], 1);
        made.catch(() => subs.delete(topic)); // refused or connection lost: the next call tries again
        subs.set(topic, made);
        subscribed = made;
      }
      return subscribed;
    },
    async close() {
      closing = true;
      if (refreshTimer) opts.clock.clearTimeout(refreshTimer);
      await refreshing?.catch(() => undefined);
      const all = [...entries.values()];
      entries.clear();
      await Promise.all(all.map(closeEntry));
      await ownership.close();
    },
  };
}
