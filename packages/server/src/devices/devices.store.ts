/** All SQL of the devices capability. Every function takes a {@link Queryable}: the caller picks the transaction. */
import type { Queryable } from '../db/db.ts';

export interface DeviceRow {
  uuid: string;
  name: string | null;
  mqtt_broker_id: number | null;
  connected_broker_id: number | null;
  online: boolean;
  last_seen_at: Date | null;
  created_at: Date;
  updated_at: Date;
}

// Never select token_hash or token_enc here: rows travel towards answers.
const COLUMNS = 'uuid, name, mqtt_broker_id, connected_broker_id, online, last_seen_at, created_at, updated_at';

export interface NewDevice {
  uuid: string;
  name: string | null;
  brokerId: number | null;
  tokenHash: string;
  /** Secret-box ciphertext of the token (for brokers that must be given it); absent: not kept. */
  tokenEnc?: string | null;
}

/** Inserts a device; null when the uuid is already taken (no exception, so an open transaction stays usable). */
export async function insertDevice(q: Queryable, d: NewDevice): Promise<DeviceRow | null> {
  const res = await q.query<DeviceRow>(
    `INSERT INTO devices (uuid, name, mqtt_broker_id, token_hash, token_enc)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (uuid) DO NOTHING
     RETURNING ${COLUMNS}`,
    [d.uuid, d.name, d.brokerId, d.tokenHash, d.tokenEnc ?? null],
  );
  return res.rows[0] ?? null;
}

export async function getDevice(q: Queryable, uuid: string): Promise<DeviceRow | null> {
  const res = await q.query<DeviceRow>(`SELECT ${COLUMNS} FROM devices WHERE uuid = $1`, [uuid]);
  return res.rows[0] ?? null;
}

export interface DeviceFilter {
  /** Only devices assigned to this broker. */
  brokerId?: number | undefined;
  limit: number;
  offset: number;
}

/** One page of devices, oldest first (ties by uuid, so paging is stable), and the total matching the filter. */
export async function listDevices(q: Queryable, f: DeviceFilter): Promise<{ rows: DeviceRow[]; total: number }> {
  const where = f.brokerId === undefined ? '' : 'WHERE mqtt_broker_id = $3';
  const params: unknown[] = [f.limit, f.offset];
  if (f.brokerId !== undefined) params.push(f.brokerId);
  const page = await q.query<DeviceRow>(
    `SELECT ${COLUMNS} FROM devices ${where} ORDER BY created_at, uuid LIMIT $1 OFFSET $2`,
    params,
  );
  const count = await q.query<{ total: number }>(
    `SELECT count(*)::int AS total FROM devices ${f.brokerId === undefined ? '' : 'WHERE mqtt_broker_id = $1'}`,
    f.brokerId === undefined ? [] : [f.brokerId],
  );
  return { rows: page.rows, total: count.rows[0]?.total ?? 0 };
}

/** Replaces the device's token (hash and ciphertext); the row, or null when there is no such device. Locks it. */
export async function replaceDeviceToken(q: Queryable, uuid: string, tokenHash: string, tokenEnc: string): Promise<DeviceRow | null> {
  const res = await q.query<DeviceRow>(
    `UPDATE devices SET token_hash = $2, token_enc = $3, updated_at = now() WHERE uuid = $1 RETURNING ${COLUMNS}`,
    [uuid, tokenHash, tokenEnc],
  );
  return res.rows[0] ?? null;
}

/** Deletes a device (its shadows go with it: ON DELETE CASCADE). False when there was none. */
export async function deleteDevice(q: Queryable, uuid: string): Promise<boolean> {
  const res = await q.query<{ uuid: string }>('DELETE FROM devices WHERE uuid = $1 RETURNING uuid', [uuid]);
  return res.rows.length > 0;
}

/** The device whose token hashes to `tokenHash` (sha256 hex), for the auth plugin; null when none. */
export async function findDeviceByTokenHash(q: Queryable, tokenHash: string): Promise<{ uuid: string } | null> {
  const res = await q.query<{ uuid: string }>('SELECT uuid FROM devices WHERE token_hash = $1 LIMIT 1', [tokenHash], { name: 'switchyard_device_by_token' });
  return res.rows[0] ?? null;
}
