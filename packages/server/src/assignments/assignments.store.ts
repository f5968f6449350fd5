/** All SQL of broker assignments (`broker_migrations`) and device presence. */
import type { Queryable } from '../db/db.ts';
import { brokerJsonSharedSql, brokerRowFromJson, type BrokerRow } from '../brokers/brokers.store.ts';
import { SHADOW_ROW_JSON, saveShadowsSql, shadowRowsParam, storedShadowOf, type ShadowRow, type StoredShadow } from '../shadows/shadows.store.ts';

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
 * Locks the device row (FOR UPDATE) and reads it with its `shadowName` shadow row and broker `brokerId` (its row
 * share-locked: it cannot be disabled or deleted under the assignment), in one round trip; null when there is no
 * such device (`shadow` null when it has no such shadow, `broker` when there is no such broker).
 */
export async function lockDeviceWithShadow(
  q: Queryable,
  uuid: string,
  shadowName: string,
  brokerId: number,
): Promise<{ device: DeviceForAssignment; shadow: StoredShadow | null; broker: BrokerRow | null } | null> {
  const { rows } = await q.query<DeviceForAssignment & { shadow: ShadowRow | null; broker: Record<string, unknown> | null }>(
    `SELECT d.uuid, d.mqtt_broker_id, d.connected_broker_id, d.online,
            CASE WHEN s.device_uuid IS NULL THEN NULL ELSE ${SHADOW_ROW_JSON} END AS shadow,
            ${brokerJsonSharedSql('$3')} AS broker
       FROM devices d
       LEFT JOIN device_shadows s ON s.device_uuid = d.uuid AND s.shadow_name = $2
      WHERE d.uuid = $1
        FOR UPDATE OF d`,
    [uuid, shadowName, brokerId],
  );
  const row = rows[0];
  if (!row) return null;
  const { shadow, broker, ...device } = row;
  return { device, shadow: shadow === null ? null : storedShadowOf(shadow), broker: broker === null ? null : brokerRowFromJson(broker) };
}

export async function openMigration(q: Queryable, uuid: string): Promise<MigrationRow | null> {
  const { rows } = await q.query<MigrationRow>(
    `SELECT * FROM broker_migrations WHERE device_uuid = $1 AND status IN ${OPEN} ORDER BY id DESC LIMIT 1`,
    [uuid],
  );
  return rows[0] ?? null;
}

/**
 * The assignment's writes, in one statement: the device's `device-state` shadow, its assigned broker, every open migration of the device
 * superseded (returned, to be announced), the new migration row (returned), the NOTIFY that wakes config long-polls
 * (CONFIG_CHANNEL) at commit, and the `device.assign_broker` audit row (actor `requestedBy`). Data-modifying CTEs
 * share one snapshot, so the new row is never among the superseded.
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
    /** The device's `device-state` shadow with the assignment written into `desired.mqtt`. */
    shadow: StoredShadow;
  },
): Promise<{ migration: MigrationRow; superseded: MigrationRow[] }> {
  const { rows } = await q.query<MigrationRow & { superseded_rows: Array<Record<string, unknown>> }>(
    `WITH saved AS (
       ${saveShadowsSql('$10')}
     ), assigned AS (
       UPDATE devices SET mqtt_broker_id = $3, updated_at = now() WHERE uuid = $1
     ), superseded AS (
       UPDATE broker_migrations SET status = 'superseded', finished_at = now(), updated_at = now()
        WHERE device_uuid = $1 AND status IN ${OPEN} RETURNING *
     ), inserted AS (
       INSERT INTO broker_migrations (device_uuid, from_broker_id, to_broker_id, channel, shadow_version, requested_by, deadline_at, command_id)
       VALUES ($1, $2, $3, $4, $5, $6, now() + make_interval(secs => $7), $8) RETURNING *
     ), notified AS (
       SELECT pg_notify($9, $1) AS sent
     ), audited AS (
       INSERT INTO audit_log (actor, action, target_type, target_id, outcome, details)
       SELECT $6, 'device.assign_broker', 'device', $1, 'ok',
              jsonb_build_object('brokerId', $3::int, 'migrationId', inserted.id, 'channel', $4::text, 'shadowVersion', $5::bigint)
         FROM inserted
     )
     SELECT inserted.*, (SELECT coalesce(json_agg(to_json(superseded) ORDER BY superseded.id), '[]'::json) FROM superseded) AS superseded_rows
       FROM inserted CROSS JOIN notified`,
    [m.deviceUuid, m.fromBrokerId, m.toBrokerId, m.channel, m.shadowVersion, m.requestedBy, m.timeoutSeconds, m.commandId ?? null, CONFIG_CHANNEL, shadowRowsParam([m.shadow])],
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

/** What a device reported in `reported.mqtt` of its `device-state` shadow, as far as a migration cares. */
export interface MigrationReport {
  deviceUuid: string;
  status: 'connected' | 'migrating' | 'error';
  /** `reported.mqtt.brokerId` (a safe integer, else null). */
  brokerId: number | null;
  /** `reported.mqtt.targetBrokerId` (a safe integer, else null). */
  targetBrokerId: number | null;
  /** The broker the report arrived through. */
  viaBrokerId: number;
  /** The device's reason with `status: error` (≤ 500 characters). */
  error: string | null;
}

/**
 * A device's report moves its open migration, in one statement (it runs in the shadow batch of the report that
 * completes a move, so every round trip here is on the move's clock):
 * - `connected` naming the target, arrived through the target → `completed` (error cleared);
 * - `migrating` towards the target → `migrating` (once);
 * - `error` towards the target → stays `migrating`, with the reason and one more attempt.
 * Anything else, or no open migration: nothing (null). With the change comes its audit row (actor `device:<uuid>`,
 * the same action and details {@link migrationAudit} builds) and whether the device has broker credential rows (a
 * completed move must then withdraw its accounts elsewhere).
 */
export async function recordMigrationReport(q: Queryable, r: MigrationReport): Promise<{ row: MigrationRow; hasCredentials: boolean } | null> {
  const { rows } = await q.query<MigrationRow & { has_credentials: boolean }>(
    `WITH open AS (
       SELECT id, to_broker_id, status FROM broker_migrations
        WHERE device_uuid = $1 AND status IN ${OPEN} ORDER BY id DESC LIMIT 1
     ), step AS (
       SELECT id, CASE
                WHEN $2 = 'connected' AND $3::bigint = to_broker_id AND $5::bigint = to_broker_id THEN 'completed'
                WHEN $2 = 'migrating' AND $4::bigint = to_broker_id AND status <> 'migrating' THEN 'migrating'
                WHEN $2 = 'error' AND $4::bigint = to_broker_id THEN 'attempt_failed'
              END AS kind
         FROM open
     ), moved AS (
       UPDATE broker_migrations m
          SET status = CASE WHEN step.kind = 'completed' THEN 'completed' ELSE 'migrating' END,
              error = CASE step.kind WHEN 'completed' THEN NULL WHEN 'attempt_failed' THEN $6 ELSE m.error END,
              attempts = m.attempts + CASE WHEN step.kind = 'attempt_failed' THEN 1 ELSE 0 END,
              migrating_at = CASE WHEN step.kind <> 'completed' AND m.migrating_at IS NULL THEN now() ELSE m.migrating_at END,
              completed_at = CASE WHEN step.kind = 'completed' THEN now() ELSE m.completed_at END,
              finished_at = CASE WHEN step.kind = 'completed' THEN now() ELSE m.finished_at END,
              updated_at = now()
         FROM step
        WHERE m.id = step.id AND step.kind IS NOT NULL AND m.status IN ${OPEN}
       RETURNING m.*, step.kind
     ), audited AS (
       INSERT INTO audit_log (actor, action, target_type, target_id, outcome, details)
       SELECT 'device:' || device_uuid,
              CASE WHEN kind = 'attempt_failed' THEN 'migration.attempt_failed' ELSE 'migration.' || status END,
              'device', device_uuid, 'ok',
              jsonb_strip_nulls(jsonb_build_object('migrationId', id, 'toBrokerId', to_broker_id, 'status', status,
                'attempts', attempts, 'error', left(error, 500), 'viaBrokerId', $5::bigint))
         FROM moved
     )
     SELECT moved.*, EXISTS (SELECT 1 FROM device_broker_credentials c WHERE c.device_uuid = $1) AS has_credentials FROM moved`,
    [r.deviceUuid, r.status, r.brokerId, r.targetBrokerId, r.viaBrokerId, r.error],
  );
  const row = rows[0];
  if (!row) return null;
  const { has_credentials: hasCredentials, kind: _kind, ...migration } = row as typeof row & { kind?: string };
  return { row: migration as MigrationRow, hasCredentials };
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
