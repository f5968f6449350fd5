/** All SQL of broker assignments (`broker_migrations`) and device presence. */
import type { Queryable } from '../db/db.ts';

export const OPEN_STATUSES = ['pending', 'notified', 'migrating'] as const;
export const MIGRATION_STATUSES = ['pending', 'notified', 'migrating', 'completed', 'failed', 'superseded', 'canceled', 'timed_out'] as const;
export type MigrationStatus = (typeof MIGRATION_STATUSES)[number];
export const ASSIGNMENT_CHANNELS = ['shadow', 'command', 'job', 'poll'] as const;
export type AssignmentChannel = (typeof ASSIGNMENT_CHANNELS)[number];

export interface MigrationRow {
  id: number;
  device_uuid: string;
  from_broker_id: number | null;
  to_broker_id: number;
  channel: AssignmentChannel;
  status: MigrationStatus;
  shadow_version: number;
  attempts: number;
  error: string | null;
  requested_by: string;
  deadline_at: Date;
  created_at: Date;
  notified_at: Date | null;
  migrating_at: Date | null;
  completed_at: Date | null;
  finished_at: Date | null;
  updated_at: Date;
}

const OPEN = `('pending', 'notified', 'migrating')`;

export interface DeviceForAssignment {
  uuid: string;
  mqtt_broker_id: number | null;
  connected_broker_id: number | null;
  online: boolean;
}

export async function lockDeviceRow(q: Queryable, uuid: string): Promise<DeviceForAssignment | null> {
  const { rows } = await q.query<DeviceForAssignment>(
    'SELECT uuid, mqtt_broker_id, connected_broker_id, online FROM devices WHERE uuid = $1 FOR UPDATE',
    [uuid],
  );
  return rows[0] ?? null;
}

export async function setAssignedBroker(q: Queryable, uuid: string, brokerId: number): Promise<void> {
  await q.query('UPDATE devices SET mqtt_broker_id = $2, updated_at = now() WHERE uuid = $1', [uuid, brokerId]);
}

export async function openMigration(q: Queryable, uuid: string): Promise<MigrationRow | null> {
  const { rows } = await q.query<MigrationRow>(
    `SELECT * FROM broker_migrations WHERE device_uuid = $1 AND status IN ${OPEN} ORDER BY id DESC LIMIT 1`,
    [uuid],
  );
  return rows[0] ?? null;
}

export async function supersedeOpen(q: Queryable, uuid: string): Promise<number[]> {
  const { rows } = await q.query<{ id: number }>(
    `UPDATE broker_migrations SET status = 'superseded', finished_at = now(), updated_at = now()
      WHERE device_uuid = $1 AND status IN ${OPEN} RETURNING id`,
    [uuid],
  );
  return rows.map((r) => r.id);
}

export async function insertMigration(
  q: Queryable,
  m: { deviceUuid: string; fromBrokerId: number | null; toBrokerId: number; channel: AssignmentChannel; shadowVersion: number; requestedBy: string; timeoutSeconds: number },
): Promise<MigrationRow> {
  const { rows } = await q.query<MigrationRow>(
    `INSERT INTO broker_migrations (device_uuid, from_broker_id, to_broker_id, channel, shadow_version, requested_by, deadline_at)
     VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7)) RETURNING *`,
    [m.deviceUuid, m.fromBrokerId, m.toBrokerId, m.channel, m.shadowVersion, m.requestedBy, m.timeoutSeconds],
  );
  return rows[0]!;
}

export async function getMigration(q: Queryable, id: number): Promise<MigrationRow | null> {
  const { rows } = await q.query<MigrationRow>('SELECT * FROM broker_migrations WHERE id = $1', [id]);
  return rows[0] ?? null;
}

export interface MigrationFilter {
  deviceUuid?: string;
  status?: MigrationStatus;
  brokerId?: number;
  limit: number;
  offset: number;
}

export async function listMigrations(q: Queryable, f: MigrationFilter): Promise<{ rows: MigrationRow[]; total: number }> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.deviceUuid !== undefined) where.push(`device_uuid = $${params.push(f.deviceUuid)}`);
  if (f.status !== undefined) where.push(`status = $${params.push(f.status)}`);
  if (f.brokerId !== undefined) {
    const p = params.push(f.brokerId);
    where.push(`(to_broker_id = $${p} OR from_broker_id = $${p})`);
  }
  const clause = where.length ? `WHERE ${where.join(' AND ')}` : '';
  const total = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM broker_migrations ${clause}`, params);
  const { rows } = await q.query<MigrationRow>(
    `SELECT * FROM broker_migrations ${clause} ORDER BY id DESC LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
    [...params, f.limit, f.offset],
  );
  return { rows, total: Number(total.rows[0]?.n ?? 0) };
}

/** Moves an open migration forward; returns the row when something changed. */
export async function advanceMigration(
  q: Queryable,
  id: number,
  change: { status: MigrationStatus; error?: string | null; countAttempt?: boolean },
): Promise<MigrationRow | null> {
  const terminal = !(OPEN_STATUSES as readonly string[]).includes(change.status);
  const { rows } = await q.query<MigrationRow>(
    `UPDATE broker_migrations
        SET status = $2,
            error = CASE WHEN $3::boolean THEN $4 ELSE error END,
            attempts = attempts + CASE WHEN $5::boolean THEN 1 ELSE 0 END,
            notified_at = CASE WHEN $2 = 'notified' THEN now() ELSE notified_at END,
            migrating_at = CASE WHEN $2 = 'migrating' AND migrating_at IS NULL THEN now() ELSE migrating_at END,
            completed_at = CASE WHEN $2 = 'completed' THEN now() ELSE completed_at END,
            finished_at = CASE WHEN $6::boolean THEN now() ELSE finished_at END,
            updated_at = now()
      WHERE id = $1 AND status IN ${OPEN}
      RETURNING *`,
    [id, change.status, change.error !== undefined, change.error ?? null, change.countAttempt ?? false, terminal],
  );
  return rows[0] ?? null;
}

/** Marks the migration `notified` once its notification left (only from `pending`). */
export async function markNotified(q: Queryable, id: number): Promise<MigrationRow | null> {
  const { rows } = await q.query<MigrationRow>(
    `UPDATE broker_migrations SET status = 'notified', notified_at = now(), updated_at = now()
      WHERE id = $1 AND status = 'pending' RETURNING *`,
    [id],
  );
  return rows[0] ?? null;
}

export async function isMigrationOpen(q: Queryable, id: number): Promise<boolean> {
  const { rows } = await q.query<{ open: boolean }>(`SELECT status IN ${OPEN} AS open FROM broker_migrations WHERE id = $1`, [id]);
  return rows[0]?.open ?? false;
}

export async function timeOutOverdue(q: Queryable): Promise<MigrationRow[]> {
  const { rows } = await q.query<MigrationRow>(
    `UPDATE broker_migrations
        SET status = 'timed_out', finished_at = now(), updated_at = now(),
            error = COALESCE(error, 'the device did not report the move in time')
      WHERE status IN ${OPEN} AND deadline_at < now()
      RETURNING *`,
  );
  return rows;
}

export async function setPresence(q: Queryable, uuid: string, brokerId: number, online: boolean): Promise<boolean> {
  const { rowCount } = online
    ? await q.query('UPDATE devices SET connected_broker_id = $2, online = true, last_seen_at = now() WHERE uuid = $1', [uuid, brokerId])
    : // An offline will from a broker the device already left must not mark it offline.
      await q.query('UPDATE devices SET online = false, last_seen_at = now() WHERE uuid = $1 AND connected_broker_id = $2', [uuid, brokerId]);
  return rowCount > 0;
}
