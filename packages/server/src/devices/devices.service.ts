/**
 * Device registry rules: registration with a one-time token (only its sha256 is kept), listing, deletion.
 * Every change writes an audit row in its transaction.
 */
import { randomUUID } from 'node:crypto';
import { insertAudit } from '../audit/audit.store.ts';
import { DEVICE_TOKEN_PREFIX, generateToken, hashToken } from '../auth/tokens.ts';
import { getBroker, sqlState } from '../brokers/brokers.store.ts';
import type { Db } from '../db/db.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { deleteDevice, getDevice, insertDevice, listDevices, type DeviceRow } from './devices.store.ts';

/** A device as the API shows it (never the token hash). */
export interface Device {
  uuid: string;
  name: string | null;
  /** The broker the device is assigned to, or null. */
  brokerId: number | null;
  /** The broker the device last reported being connected to, or null. */
  connectedBrokerId: number | null;
  online: boolean;
  lastSeenAt: string | null;
  createdAt: string;
  updatedAt: string;
}

/** The answer to a registration: the only time the token is shown. */
export interface RegisteredDevice extends Device {
  token: string;
}

export interface NewDevice {
  /** 1–128 of `[A-Za-z0-9:_-]`; a random UUID when absent. */
  uuid?: string | undefined;
  name?: string | null | undefined;
  /** Must exist and be `active`. */
  brokerId?: number | null | undefined;
}

export interface DeviceListQuery {
  /** Page size, 1–500. */
  limit: number;
  /** Rows to skip. */
  offset: number;
  brokerId?: number | undefined;
}

export interface DevicePage {
  items: Device[];
  total: number;
  limit: number;
  offset: number;
}

export interface DeviceServiceDeps {
  db: Db;
  log: Logger;
}

export interface DeviceService {
  create(input: NewDevice, actor: string): Promise<RegisteredDevice>;
  list(query: DeviceListQuery): Promise<DevicePage>;
  get(uuid: string): Promise<Device>;
  remove(uuid: string, actor: string): Promise<void>;
}

export function toDevice(row: DeviceRow): Device {
  return {
    uuid: row.uuid,
    name: row.name,
    brokerId: row.mqtt_broker_id,
    connectedBrokerId: row.connected_broker_id,
    online: row.online,
    lastSeenAt: row.last_seen_at === null ? null : row.last_seen_at.toISOString(),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

function deviceExists(uuid: string): AppError {
  return new AppError('DEVICE_EXISTS', `A device with uuid "${uuid}" is already registered`);
}

function deviceNotFound(uuid: string): AppError {
  return new AppError('DEVICE_NOT_FOUND', `No device with uuid "${uuid}"`);
}

export function createDeviceService(deps: DeviceServiceDeps): DeviceService {
  const log = deps.log.child({ component: 'devices' });

  return {
    async create(input, actor) {
      const uuid = input.uuid ?? randomUUID();
      const brokerId = input.brokerId ?? null;
      const token = generateToken(DEVICE_TOKEN_PREFIX);
      let row: DeviceRow;
      try {
        row = await deps.db.transaction(async (tx) => {
          if (brokerId !== null) {
            // FOR SHARE: the broker cannot be disabled or deleted until this registration commits.
            const broker = await getBroker(tx, brokerId, { lock: 'share' });
            if (broker === null) throw new AppError('BROKER_NOT_FOUND', `No broker with id ${brokerId}`);
            if (broker.status !== 'active') {
              throw new AppError('BROKER_NOT_ACTIVE', `Broker ${brokerId} ("${broker.name}") is ${broker.status}; assign the device to an active broker`);
            }
          }
          const inserted = await insertDevice(tx, { uuid, name: input.name ?? null, brokerId, tokenHash: hashToken(token) });
          if (inserted === null) throw deviceExists(uuid);
          await insertAudit(tx, {
            actor,
            action: 'device.create',
            targetType: 'device',
            targetId: uuid,
            details: { name: inserted.name, brokerId },
          });
          return inserted;
        });
      } catch (err) {
        // Unique violation despite ON CONFLICT cannot happen; a FK violation means the broker vanished meanwhile.
        if (sqlState(err) === '23503') throw new AppError('BROKER_NOT_FOUND', `No broker with id ${String(brokerId)}`);
        throw err;
      }
      log.info({ deviceUuid: uuid, brokerId }, 'device registered');
      return { ...toDevice(row), token };
    },

    async list(query) {
      const { rows, total } = await listDevices(deps.db, query);
      return { items: rows.map(toDevice), total, limit: query.limit, offset: query.offset };
    },

    async get(uuid) {
      const row = await getDevice(deps.db, uuid);
      if (row === null) throw deviceNotFound(uuid);
      return toDevice(row);
    },

    async remove(uuid, actor) {
      await deps.db.transaction(async (tx) => {
        const deleted = await deleteDevice(tx, uuid);
        if (!deleted) throw deviceNotFound(uuid);
        await insertAudit(tx, { actor, action: 'device.delete', targetType: 'device', targetId: uuid });
      });
      log.info({ deviceUuid: uuid }, 'device deleted');
    },
  };
}
