/**
 * Device registry rules: registration with a one-time token, token rotation, listing, deletion.
 * Every change writes an audit row in its transaction (never the token).
 *
 * The token is shown once (registration, rotation). The database keeps its sha256 (`token_hash`, what API and
 * embedded-broker logins are checked against) and, for brokers that must be given the token itself
 * (`mosquitto-dynsec`), its AES-256-GCM ciphertext (`token_enc`, secret box). Registration on such a broker,
 * rotation and deletion queue the broker changes in their transaction (see `provisioning/`) and then wait, bounded
 * by `provisioningWaitMs`, until they reached the brokers: when the answer comes, a new device can log in and an old
 * token is refused — unless a broker was unreachable, which the rotation answer reports per broker (`pending`).
 */
import { randomUUID } from 'node:crypto';
import { insertAudit } from '../audit/audit.store.ts';
import { DEVICE_TOKEN_PREFIX, generateToken, hashToken } from '../auth/tokens.ts';
import { getBroker, sqlState, type BrokerRow } from '../brokers/brokers.store.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../db/db.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { CredentialView, ProvisioningService } from '../provisioning/provisioning.service.ts';
import { deleteDevice, getDevice, insertDevice, listDevices, replaceDeviceToken, type DeviceRow } from './devices.store.ts';

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

/** The answer to a rotation: the new token (shown only here) and where the device's broker accounts stand. */
export interface RotatedDevice extends RegisteredDevice {
  /** Brokers holding an account of the device (mosquitto-dynsec): `provisioned` = the new token works there. */
  brokers: CredentialView[];
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
  /** Encrypts the token at rest (`token_enc`); without it only the hash is kept and no dynsec broker can be provisioned. */
  secretBox?: SecretBox | undefined;
  /** Broker accounts of devices (registration, rotation, deletion); without it no broker is provisioned. */
  provisioning?: ProvisioningService | undefined;
  /** How long registration, rotation and deletion wait for their broker changes, ms. Default 5000. */
  provisioningWaitMs?: number | undefined;
  /** Called right after a rotation or deletion committed, before any wait (e.g. to drop cached token lookups). */
  onCredentialsChanged?: ((deviceUuid: string) => void) | undefined;
}

export interface DeviceService {
  create(input: NewDevice, actor: string): Promise<RegisteredDevice>;
  list(query: DeviceListQuery): Promise<DevicePage>;
  get(uuid: string): Promise<Device>;
  remove(uuid: string, actor: string): Promise<void>;
  /**
   * Replaces the device's token: the old one stops working on the API and on every broker, the new one is
   * returned (only here).
   */
  rotateToken(uuid: string, actor: string): Promise<RotatedDevice>;
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
  const provisioning = deps.provisioning;
  const waitMs = deps.provisioningWaitMs ?? 5000;

  /** Waits (bounded) for broker changes; a broker that did not take them yet is logged, the change stays queued. */
  async function applied(uuid: string, ids: number[], what: string): Promise<void> {
    if (!provisioning || ids.length === 0) return;
    const left = await provisioning.waitApplied(ids, waitMs);
    if (left.length > 0) {
      log.warn({ deviceUuid: uuid, pending: left.length, waitedMs: waitMs }, `${what}: some brokers did not take the change yet; it stays queued and is retried`);
    }
  }

  return {
    async create(input, actor) {
      const uuid = input.uuid ?? randomUUID();
      const brokerId = input.brokerId ?? null;
      const token = generateToken(DEVICE_TOKEN_PREFIX);
      let row: DeviceRow;
      let provisioned: number[] = [];
      try {
        row = await deps.db.transaction(async (tx) => {
          let broker: BrokerRow | null = null;
          if (brokerId !== null) {
            // FOR SHARE: the broker cannot be disabled or deleted until this registration commits.
            broker = await getBroker(tx, brokerId, { lock: 'share' });
            if (broker === null) throw new AppError('BROKER_NOT_FOUND', `No broker with id ${brokerId}`);
            if (broker.status !== 'active') {
              throw new AppError('BROKER_NOT_ACTIVE', `Broker ${brokerId} ("${broker.name}") is ${broker.status}; assign the device to an active broker`);
            }
          }
          const tokenEnc = deps.secretBox?.encrypt(token) ?? null;
          const inserted = await insertDevice(tx, { uuid, name: input.name ?? null, brokerId, tokenHash: hashToken(token), tokenEnc });
          if (inserted === null) throw deviceExists(uuid);
          provisioned = (await provisioning?.forRegistration(tx, uuid, broker)) ?? [];
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
      await applied(uuid, provisioned, 'device registered');
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
      const removals = await deps.db.transaction(async (tx) => {
        // Before the row goes: the device's broker accounts are queued for removal (rows outlive the device).
        const ids = (await provisioning?.forDeletion(tx, uuid)) ?? [];
        const deleted = await deleteDevice(tx, uuid);
        if (!deleted) throw deviceNotFound(uuid);
        await insertAudit(tx, { actor, action: 'device.delete', targetType: 'device', targetId: uuid, details: { brokerAccountsRemoved: ids.length } });
        return ids;
      });
      log.info({ deviceUuid: uuid }, 'device deleted');
      deps.onCredentialsChanged?.(uuid);
      provisioning?.kickLocal(uuid);
      await applied(uuid, removals, 'device deleted');
    },

    async rotateToken(uuid, actor) {
      if (!deps.secretBox) throw new AppError('INTERNAL', 'token rotation needs the secret box (server misconfigured)');
      const secretBox = deps.secretBox;
      const token = generateToken(DEVICE_TOKEN_PREFIX);
      const { row, ids } = await deps.db.transaction(async (tx) => {
        const updated = await replaceDeviceToken(tx, uuid, hashToken(token), secretBox.encrypt(token));
        if (updated === null) throw deviceNotFound(uuid);
        const queued = (await provisioning?.forRotation(tx, uuid)) ?? [];
        await insertAudit(tx, { actor, action: 'device.rotate_token', targetType: 'device', targetId: uuid, details: { brokerAccountsUpdated: queued.length } });
        return { row: updated, ids: queued };
      });
      log.info({ deviceUuid: uuid, brokers: ids.length }, 'device token rotated');
      deps.onCredentialsChanged?.(uuid);
      provisioning?.kickLocal(uuid);
      await applied(uuid, ids, 'device token rotated');
      const brokers = provisioning ? (await provisioning.credentials(uuid)).filter((c) => c.action === 'provision') : [];
      return { ...toDevice(row), token, brokers };
    },
  };
}
