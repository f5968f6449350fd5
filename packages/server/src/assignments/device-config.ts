/** What `GET /devices/:uuid/config` answers: the device's assigned broker and the assignment version. */
import { BROKER_SHADOW } from '@switchyard/protocol';
import type { Queryable } from '../db/db.ts';
import { AppError } from '../errors.ts';
import type { BrokerProtocol } from '../brokers/brokers.store.ts';
import { brokerUrl } from '../brokers/brokers.service.ts';
import type { MqttAssignment } from './assignment.service.ts';

export interface DeviceConfig {
  mqtt: MqttAssignment | null;
  /** Version of the device's `device-state` shadow (0 when it has none). */
  version: number;
}

function isAssignment(v: unknown): v is MqttAssignment {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  return typeof o.brokerId === 'number' && typeof o.host === 'string' && typeof o.port === 'number' && typeof o.protocol === 'string' && typeof o.broker === 'string';
}

interface ConfigRow {
  mqtt_broker_id: number | null;
  /** `device-state` shadow version; null without the shadow. */
  version: string | number | null;
  /** `desired.mqtt` of the shadow (null when deleted or absent). */
  desired_mqtt: unknown;
  broker_id: number | null;
  protocol: BrokerProtocol | null;
  host: string | null;
  port: number | null;
}

/**
 * One statement per read (the 304 path of every polling device runs it): the device row, its `device-state`
 * shadow's version and `desired.mqtt`, and the device's broker row, joined by primary keys.
 */
const CONFIG_SQL = `
  SELECT d.mqtt_broker_id,
         s.version,
         CASE WHEN s.deleted THEN NULL ELSE s.desired -> 'mqtt' END AS desired_mqtt,
         b.id AS broker_id, b.protocol, b.host, b.port
    FROM devices d
    LEFT JOIN device_shadows s ON s.device_uuid = d.uuid AND s.shadow_name = $2
    LEFT JOIN mqtt_broker_config b ON b.id = d.mqtt_broker_id
   WHERE d.uuid = $1`;

/** Longest time a config read is reused for plain (non-waiting) requests, ms: see {@link createDeviceConfigService}. */
export const DEVICE_CONFIG_CACHE_MS = 1000;

/**
 * Reads device configs. `get(uuid)` may answer from a short-lived in-memory copy (at most
 * {@link DEVICE_CONFIG_CACHE_MS} old, never refreshed by a hit), so that a device polling in a tight loop, or many
 * requests at once, cost one database read per second per device rather than one each. What that copy can miss:
 * - an assignment: never on this instance (`forget` runs before the PUT answers) and, on other instances, only until
 *   its NOTIFY arrives (the config watch calls `forget` too) — at most the TTL;
 * - the device's own shadow reports (they bump the version in the ETag but never the broker): up to the TTL, so a
 *   poll may get 304 where it would have had 200 naming the same broker;
 * - a broker's host or port edited under devices without an assignment: up to the TTL.
 * `get(uuid, {fresh: true})` (the long-poll path, which must see the change that woke it) always reads the database
 * and refreshes the copy.
 */
export function createDeviceConfigService(db: Queryable, o: { cacheMs?: number; max?: number; now?: () => number } = {}) {
  const cacheMs = o.cacheMs ?? DEVICE_CONFIG_CACHE_MS;
  const max = o.max ?? 100_000;
  const now = o.now ?? (() => performance.now());
  const cache = new Map<string, { config: DeviceConfig; expires: number }>();
  // A read that started before a `forget` must not put its (possibly older) answer back afterwards.
  const generation = new Map<string, number>();
  let forgets = 0;
  return {
    /** The in-memory copy when it is fresh enough, else undefined (no database read): the polling hot path. */
    cached(deviceUuid: string): DeviceConfig | undefined {
      if (cacheMs <= 0) return undefined;
      const hit = cache.get(deviceUuid);
      return hit !== undefined && now() < hit.expires ? hit.config : undefined;
    },
    async get(deviceUuid: string, opts: { fresh?: boolean } = {}): Promise<DeviceConfig> {
      if (cacheMs > 0 && !opts.fresh) {
        const hit = cache.get(deviceUuid);
        if (hit && now() < hit.expires) return hit.config;
      }
      const gen = generation.get(deviceUuid);
      const config = await read(deviceUuid);
      if (cacheMs > 0 && generation.get(deviceUuid) === gen) {
        cache.delete(deviceUuid);
        cache.set(deviceUuid, { config, expires: now() + cacheMs });
        while (cache.size > max) cache.delete(cache.keys().next().value!);
      }
      return config;
    },
    /** Drops the copy of this device's config (its assignment changed). */
    forget(deviceUuid: string): void {
      cache.delete(deviceUuid);
      generation.set(deviceUuid, ++forgets);
      if (generation.size > max) generation.delete(generation.keys().next().value!);
    },
  };

  async function read(deviceUuid: string): Promise<DeviceConfig> {
    {
      const { rows } = await db.query<ConfigRow>(CONFIG_SQL, [deviceUuid, BROKER_SHADOW], { name: 'switchyard_device_config' });
      const row = rows[0];
      if (!row) throw new AppError('DEVICE_NOT_FOUND', `no device with uuid ${deviceUuid}`);
      const version = row.version === null ? 0 : Number(row.version);
      const desired = row.desired_mqtt;
      if (isAssignment(desired)) {
        const { brokerId, broker, protocol, host, port } = desired;
        return { mqtt: { brokerId, broker, protocol, host, port }, version };
      }
      if (row.mqtt_broker_id === null || row.broker_id === null || row.protocol === null || row.host === null || row.port === null) return { mqtt: null, version };
      return { mqtt: { brokerId: row.broker_id, broker: brokerUrl(row.protocol, row.host, row.port), protocol: row.protocol, host: row.host, port: row.port }, version };
    }
  }
}

export type DeviceConfigService = ReturnType<typeof createDeviceConfigService>;
