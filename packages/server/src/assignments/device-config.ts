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
export const DEVICE_CONFIG_CACHE_MS = 10_000;

/**
 * Reads device configs. `get(uuid)` may answer from an in-memory copy (at most {@link DEVICE_CONFIG_CACHE_MS} old,
 * never refreshed by a hit), so that a polling fleet costs one database read per device per 10 s rather than one per
 * request. The copy is dropped (`forget`) when what it holds changes, as far as this instance can know:
 * - an assignment: on this instance before the PUT answers, on the others when its NOTIFY arrives (the config watch);
 * - the device's own `device-state` reports (they bump the version in the ETag, never the broker): on the instance
 *   that wrote them, after the commit; on the others up to the TTL (a 304 where a 200 would name the same broker);
 * - a broker edited (host, port) under devices without an assignment: everything on this instance (`clear`), up to
 *   the TTL on the others — as long as their broker pools take to notice it;
 * - a LISTEN gap (notifications may have been lost): everything (`clear`).
 * A read that started before a `forget` or `clear` does not put its (possibly older) answer back afterwards.
 * `get(uuid, {fresh: true})` (the long-poll path, which must see the change that woke it) always reads the database
 * and refreshes the copy.
 */
export function createDeviceConfigService(db: Queryable, o: { cacheMs?: number; max?: number; now?: () => number } = {}) {
  const cacheMs = o.cacheMs ?? DEVICE_CONFIG_CACHE_MS;
  const max = o.max ?? 100_000;
  const now = o.now ?? (() => performance.now());
  const cache = new Map<string, { config: DeviceConfig; expires: number }>();
  // A read that started before a `forget` (of its device) or a `clear` must not put its answer back afterwards.
  const generation = new Map<string, number>();
  let forgets = 0;
  let epoch = 0;
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
      const startEpoch = epoch;
      const config = await read(deviceUuid);
      if (cacheMs > 0 && generation.get(deviceUuid) === gen && epoch === startEpoch) {
        cache.delete(deviceUuid);
        cache.set(deviceUuid, { config, expires: now() + cacheMs });
        while (cache.size > max) cache.delete(cache.keys().next().value!);
      }
      return config;
    },
    /** Drops the copy of this device's config (its assignment or its `device-state` shadow changed). */
    forget(deviceUuid: string): void {
      cache.delete(deviceUuid);
      generation.set(deviceUuid, ++forgets);
      if (generation.size > max) generation.delete(generation.keys().next().value!);
    },
    /** Drops every copy (a broker changed, or notifications may have been missed). */
    clear(): void {
      cache.clear();
      epoch++;
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
