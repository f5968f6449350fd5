/** What `GET /devices/:uuid/config` answers: the device's assigned broker and the assignment version. */
import { BROKER_SHADOW } from '@switchyard/protocol';
import type { Queryable } from '../db/db.ts';
import { AppError } from '../errors.ts';
import { getBroker } from '../brokers/brokers.store.ts';
import { loadShadows, shadowKey } from '../shadows/shadows.store.ts';
import { assignmentOf, type MqttAssignment } from './assignment.service.ts';

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

export function createDeviceConfigService(db: Queryable) {
  return {
    async get(deviceUuid: string): Promise<DeviceConfig> {
      const { rows } = await db.query<{ mqtt_broker_id: number | null }>('SELECT mqtt_broker_id FROM devices WHERE uuid = $1', [deviceUuid]);
      const device = rows[0];
      if (!device) throw new AppError('DEVICE_NOT_FOUND', `no device with uuid ${deviceUuid}`);
      const stored = (await loadShadows(db, [{ deviceUuid, shadowName: BROKER_SHADOW }])).get(shadowKey(deviceUuid, BROKER_SHADOW));
      const desired = stored?.document?.state.desired?.mqtt;
      const version = stored?.version ?? 0;
      if (isAssignment(desired)) {
        const { brokerId, broker, protocol, host, port } = desired;
        return { mqtt: { brokerId, broker, protocol, host, port }, version };
      }
      if (device.mqtt_broker_id === null) return { mqtt: null, version };
      const broker = await getBroker(db, device.mqtt_broker_id);
      return { mqtt: broker ? assignmentOf(broker) : null, version };
    },
  };
}

export type DeviceConfigService = ReturnType<typeof createDeviceConfigService>;
