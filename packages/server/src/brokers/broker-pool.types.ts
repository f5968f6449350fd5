/**
 * The broker pool's public shapes: a broker's connection settings, the status of a connection, the pool's options
 * and interface, and the error a publish gets when the broker is not connected (`broker-pool.ts` re-exports them).
 */
import type { BackoffPolicy } from '@switchyard/protocol';
import type { Clock } from '../clock.ts';
import type { LockSession } from '../db/db.ts';
import type { Logger } from '../log.ts';

export interface BrokerConnectionConfig {
  id: number;
  name: string;
  protocol: 'mqtt' | 'mqtts' | 'ws' | 'wss';
  host: string;
  port: number;
  protocolVersion: 4 | 5;
  status: 'active' | 'draining' | 'disabled';
  username?: string | null;
  /** Decrypted server password for this broker (held in memory only). */
  password?: string | null;
  caCert?: string | null;
}

export interface BrokerStatus {
  brokerId: number;
  name: string;
  connected: boolean;
  /** This instance owns the broker's request subscriptions (and is subscribed). */
  owner: boolean;
  lastError?: string;
}

export interface BrokerPoolOptions {
  loadBrokers(): Promise<BrokerConnectionConfig[]>;
  /** MQTT subscription filters (QoS 1) the owner of a broker takes on its connection. */
  subscriptions: string[];
  /** Opens the session holding the ownership locks (`db.createLockSession()`). */
  openLockSession(): Promise<LockSession>;
  /** How often a broker owned by another instance is tried again, ms. Default 2000. */
  ownershipRetryMs?: number;
  onMessage(brokerId: number, topic: string, payload: Buffer): void;
  log: Logger;
  clock: Clock;
  /** Reconnect policy. Default base 500 ms, cap 30 s. */
  backoff?: BackoffPolicy;
  /** How often to re-read broker records (ms). Default 10,000; 0 = never. */
  refreshIntervalMs?: number;
  /** Called after a connection is (re-)established, e.g. to replay work for that broker. */
  onConnected?(brokerId: number): void;
}

export class BrokerNotConnectedError extends Error {
  constructor(brokerId: number) {
    super(`broker ${brokerId} is not connected`);
    this.name = 'BrokerNotConnectedError';
  }
}

export interface BrokerPool {
  start(): Promise<void>;
  refresh(): Promise<void>;
  /** Resolves on PUBACK (QoS 1) or once handed to the MQTT client (QoS 0); rejects when the broker is not connected. */
  publish(brokerId: number, topic: string, payload: string | Buffer, opts?: { qos?: 0 | 1; retain?: boolean }): Promise<void>;
  /**
   * {@link publish} without a promise (not retained), for fire-and-forget replies: `onError` is called when it fails,
   * including at once when the broker is not connected.
   */
  post(brokerId: number, topic: string, payload: string | Buffer, qos: 0 | 1, onError: (err: Error) => void): void;
  status(): BrokerStatus[];
  isConnected(brokerId: number): boolean;
  /**
   * Resolves once the broker's connection is up and its first ownership try has settled: subscribed when this
   * instance owns the broker, connected only when another one does (or rejects after `timeoutMs`).
   */
  waitConnected(brokerId: number, timeoutMs: number): Promise<void>;
  /**
   * Replies addressed to this server on `brokerId` (e.g. the dynamic-security plugin's
   * `$CONTROL/dynamic-security/v1/response`), owner or standby alike: subscribes this instance's connection to
   * `topic` (an exact topic, no wildcards) unless the current connection already is, and hands every message on it
   * to `handler` (never to `onMessage`). After a reconnect the next call subscribes again: call it before each
   * request. Rejects when the broker is not connected or refuses the subscription.
   */
  listen(brokerId: number, topic: string, handler: (payload: Buffer) => void): Promise<void>;
  close(): Promise<void>;
}
