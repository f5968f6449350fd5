/** All SQL of broker assignments (`broker_migrations`) and device presence. */
import type { Queryable } from '../db/db.ts';
import { SHADOW_ROW_JSON, storedShadowOf, type ShadowRow, type StoredShadow } from '../shadows/shadows.store.ts';

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
  /** Id of the `broker-change` command this assignment sent (channel `command`), else null. */
  command_id: string | null;
  /** The device's acknowledgements of that command, oldest first (at most {@link MAX_COMMAND_ACKS}). */
  acks: CommandAck[];
}

/** One acknowledgement of a `broker-change` command, as recorded in the migration row. */
export interface CommandAck {
  status: 'received' | 'completed' | 'failed';
  error?: string;
  /** The broker the ack arrived through. */
  brokerId: number;
  /** When the server recorded it (ISO 8601). */
  at: string;
}

/** Most acks kept per migration: a device repeating itself must not grow the row without bound. */
export const MAX_COMMAND_ACKS = 20;

/** NOTIFY channel carrying a device uuid whenever its config (`GET /devices/:uuid/config`) changed. */
export const CONFIG_CHANNEL = 'switchyard_config';

const OPEN = `('pending', 'notified', 'migrating')`;

export interface DeviceForAssignment {
  uuid: string;
  mqtt_broker_id: number | null;
  connected_broker_id: number | null;
  online: boolean;
}

/**
 * Locks the device row (FOR UPDATE) and reads it with its `shadowName` shadow row, in one round trip; null when
 * there is no such device (`shadow` null when it has no such shadow).
 */
export async function lockDeviceWithShadow(
  q: Queryable,
  uuid: string,
  shadowName: string,
): Promise<{ device: DeviceForAssignment; shadow: StoredShadow | null } | null> {
  const { rows } = await q.query<DeviceForAssignment & { shadow: ShadowRow | null }>(
    `SELECT d.uuid, d.mqtt_broker_id, d.connected_broker_id, d.online,
            CASE WHEN s.device_uuid IS NULL THEN NULL ELSE ${SHADOW_ROW_JSON} END AS shadow
       FROM devices d
       LEFT JOIN device_shadows s ON s.device_uuid = d.uuid AND s.shadow_name = $2
      WHERE d.uuid = $1
        FOR UPDATE OF d`,
    [uuid, shadowName],
  );
  const row = rows[0];
  if (!row) return null;
  const { shadow, ...device } = row;
  return { device, shadow: shadow === null ? null : storedShadowOf(shadow) };
}

export async function openMigration(q: Queryable, uuid: string): Promise<MigrationRow | null> {
  const { rows } = await q.query<MigrationRow>(
    `SELECT * FROM broker_migrations WHERE device_uuid = $1 AND status IN ${OPEN} ORDER BY id DESC LIMIT 1`,
    [uuid],
  );
  return rows[0] ?? null;
}

/**
 * The assignment's writes, in one statement: the device's assigned broker, every open migration of the device
 * superseded (returned, to be announced), the new migration row (returned), and the NOTIFY that wakes config long-polls (CONFIG_CHANNEL) at
 * commit. Data-modifying CTEs share one snapshot, so the new row is never among the superseded.
 */
export async function recordAssignment(
  q: Queryable,
  m: {
    deviceUuid: string;
    fromBrokerId: number | null;
    toBrokerId: number;
    channel: AssignmentChannel;
    shadowVersion: number;
    requestedBy: string;
    timeoutSeconds: number;
    commandId?: string | null;
  },
): Promise<{ migration: MigrationRow; superseded: MigrationRow[] }> {
  const { rows } = await q.query<MigrationRow & { superseded_rows: Array<Record<string, unknown>> }>(
    `WITH assigned AS (
       UPDATE devices SET mqtt_broker_id = $3, updated_at = now() WHERE uuid = $1
     ), superseded AS (
       UPDATE broker_migrations SET status = 'superseded', finished_at = now(), updated_at = now()
        WHERE device_uuid = $1 AND status IN ${OPEN} RETURNING *
     ), inserted AS (
       INSERT INTO broker_migrations (device_uuid, from_broker_id, to_broker_id, channel, shadow_version, requested_by, deadline_at, command_id)
       VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8) RETURNING *
     ), notified AS (
       SELECT pg_notify($9, $1) AS sent
     )
     SELECT inserted.*, (SELECT coalesce(json_agg(to_json(superseded) ORDER BY superseded.id), '[]'::json) FROM superseded) AS superseded_rows
       FROM inserted CROSS JOIN notified`,
    [m.deviceUuid, m.fromBrokerId, m.toBrokerId, m.channel, m.shadowVersion, m.requestedBy, m.timeoutSeconds, m.commandId ?? null, CONFIG_CHANNEL],
  );
  const { superseded_rows: superseded, ...migration } = rows[0]!;
  return { migration: migration as MigrationRow, superseded: superseded.map(migrationRowFromJson) };
}

const MIGRATION_TIMESTAMPS = ['deadline_at', 'created_at', 'notified_at', 'migrating_at', 'completed_at', 'finished_at', 'updated_at'] as const;

/** A `broker_migrations` row that came as JSON (`to_json`): its timestamps (text there) as `Date`s, like a read row. */
function migrationRowFromJson(r: Record<string, unknown>): MigrationRow {
  const row = { ...r };
  for (const k of MIGRATION_TIMESTAMPS) if (typeof row[k] === 'string') row[k] = new Date(row[k]);
  return row as unknown as MigrationRow;
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

/**
 * Appends an ack to the migration that sent command `commandId` to the device (whatever its status: an ack
 * that arrives after the move ended is still worth keeping), dropping the oldest beyond {@link MAX_COMMAND_ACKS}.
 * Returns the row, or null when no migration of this device sent that command.
 */
export async function appendCommandAck(q: Queryable, deviceUuid: string, commandId: string, ack: Omit<CommandAck, 'at'>): Promise<MigrationRow | null> {
  const { rows } = await q.query<MigrationRow>(
    `UPDATE broker_migrations
        SET acks = (CASE WHEN jsonb_array_length(acks) >= $4 THEN acks - 0 ELSE acks END)
                   || jsonb_build_array($3::jsonb || jsonb_build_object('at', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))),
            updated_at = now()
      WHERE device_uuid = $1 AND command_id = $2
      RETURNING *`,
    [deviceUuid, commandId, JSON.stringify(ack), MAX_COMMAND_ACKS],
  );
  return rows[0] ?? null;
}

/** Wakes the long-polls of `GET /devices/:uuid/config` for this device, in every instance, when `q` commits. */
