/**
 * The heartbeat stream: `iot/device/{uuid}/telemetry/heartbeat` `{seq, at, bootId}` every `periodMs`, QoS 1,
 * through `agent.publish` (so through the publish queue, which re-sends what a broker move or a reconnect left
 * unacknowledged). `seq` starts at 1 in each process and rises by one per beat; `bootId` is random per process,
 * so a receiver tells a restart (new bootId, seq 1) from a lost message (same bootId, a gap). Nothing persisted.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { telemetryTopic } from '@switchyard/protocol';
import type { Clock, TimerHandle } from '../clock.ts';

/** The heartbeat payload. */
export interface HeartbeatMessage {
  /** 1, 2, 3, … per process. */
  seq: number;
  /** When it was produced, ISO 8601. */
  at: string;
  /** Random per process. */
  bootId: string;
}

/** Options of {@link startHeartbeat}. */
export interface HeartbeatOptions {
  deviceUuid: string;
  /** Period in ms (> 0). */
  periodMs: number;
  publish(topic: string, payload: string, options: { qos: 0 | 1 }): Promise<void>;
  clock: Clock;
  log: Logger;
  /** Default a random UUID. */
  bootId?: string;
}

/** A running heartbeat. */
export interface Heartbeat {
  readonly bootId: string;
  /** Last seq produced (0 before the first). */
  readonly seq: number;
  stop(): void;
}

/** Starts beating (the first beat after one period). */
export function startHeartbeat(options: HeartbeatOptions): Heartbeat {
  const { clock, periodMs } = options;
  const bootId = options.bootId ?? randomUUID();
  const topic = telemetryTopic(options.deviceUuid, 'heartbeat');
  const log = options.log.child({ component: 'heartbeat' });
  let seq = 0;
  let timer: TimerHandle | null = null;
  let stopped = false;
  // Fixed rate against the clock (not drifting by each beat's own latency).
  let next = clock.now() + periodMs;
  const beat = (): void => {
    if (stopped) return;
    seq += 1;
    const message: HeartbeatMessage = { seq, at: new Date(clock.now()).toISOString(), bootId };
    options.publish(topic, JSON.stringify(message), { qos: 1 }).catch((err: unknown) => {
      if (!stopped) log.warn({ err: (err as Error).message, seq }, 'heartbeat not delivered');
    });
    next += periodMs;
    const now = clock.now();
    if (next < now) next = now + periodMs; // fell behind (suspended process): skip, do not burst
    timer = clock.setTimeout(beat, next - now);
  };
  timer = clock.setTimeout(beat, periodMs);
  return {
    bootId,
    get seq() {
      return seq;
    },
    stop() {
      stopped = true;
      if (timer !== null) clock.clearTimeout(timer);
      timer = null;
    },
  };
}
