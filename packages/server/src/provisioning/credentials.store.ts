/** All SQL of device credentials on brokers (`device_broker_credentials`) and of the device secret at rest. */
import type { Queryable } from '../db/db.ts';

export type CredentialAction = 'provision' | 'deprovision';
export type CredentialState = 'pending' | 'provisioned' | 'removed' | 'failed';

export interface CredentialRow {
  device_uuid: string;
  broker_id: number;
  action: CredentialAction;
  state: CredentialState;
  /** sha256 of the token the broker was last given (never the token). */
  token_hash: string | null;
  error: string | null;
  updated_at: Date;
}

const COLUMNS = 'device_uuid, broker_id, action, state, token_hash, error, updated_at';

/** Records a queued change of the pair: its action, state `pending`, no error. */
export async function queueCredential(q: Queryable, deviceUuid: string, brokerId: number, action: CredentialAction): Promise<void> {
  await q.query(
    `INSERT INTO device_broker_credentials (device_uuid, broker_id, action, state)
     VALUES ($1, $2, $3, 'pending')
     ON CONFLICT (device_uuid, broker_id) DO UPDATE
        SET action = EXCLUDED.action, state = 'pending', error = NULL, updated_at = now()`,
    [deviceUuid, brokerId, action],
  );
}

/**
 * Records the outcome of a delivered (or failed) change — only while `action` is still the pair's last action: a
 * newer change queued meanwhile keeps its `pending` state. No row (the device was deleted): nothing happens.
 */
export async function recordCredential(
  q: Queryable,
  deviceUuid: string,
  brokerId: number,
  action: CredentialAction,
  outcome: { state: 'provisioned' | 'removed'; tokenHash: string | null } | { state: 'failed'; error: string },
): Promise<void> {
  if (outcome.state === 'failed') {
    await q.query(
      `UPDATE device_broker_credentials SET state = 'failed', error = $4, updated_at = now()
        WHERE device_uuid = $1 AND broker_id = $2 AND action = $3`,
      [deviceUuid, brokerId, action, outcome.error.slice(0, 500)],
    );
    return;
  }
  await q.query(
    `UPDATE device_broker_credentials SET state = $4, token_hash = $5, error = NULL, updated_at = now()
      WHERE device_uuid = $1 AND broker_id = $2 AND action = $3`,
    [deviceUuid, brokerId, action, outcome.state, outcome.tokenHash],
  );
}

export async function getCredential(q: Queryable, deviceUuid: string, brokerId: number): Promise<CredentialRow | null> {
  const { rows } = await q.query<CredentialRow>(`SELECT ${COLUMNS} FROM device_broker_credentials WHERE device_uuid = $1 AND broker_id = $2`, [
    deviceUuid,
    brokerId,
  ]);
  return rows[0] ?? null;
}

/** Every credential row of a device, by broker id. */
export async function listCredentials(q: Queryable, deviceUuid: string): Promise<CredentialRow[]> {
  const { rows } = await q.query<CredentialRow>(`SELECT ${COLUMNS} FROM device_broker_credentials WHERE device_uuid = $1 ORDER BY broker_id`, [deviceUuid]);
  return rows;
}

/** The stored secret of a device: token ciphertext (null for devices registered before it was kept) and hash. */
export async function getDeviceSecret(q: Queryable, deviceUuid: string): Promise<{ token_enc: string | null; token_hash: string } | null> {
  const { rows } = await q.query<{ token_enc: string | null; token_hash: string }>('SELECT token_enc, token_hash FROM devices WHERE uuid = $1', [deviceUuid]);
  return rows[0] ?? null;
}

/** Locks the device row until the transaction ends (credential chains of one device are written one at a time). */
export async function lockDeviceForCredentials(q: Queryable, deviceUuid: string): Promise<boolean> {
  const { rows } = await q.query('SELECT 1 FROM devices WHERE uuid = $1 FOR UPDATE', [deviceUuid]);
  return rows.length > 0;
}
