/** All SQL of device jobs (`device_jobs`). Every function takes a {@link Queryable}: the service decides the transaction. */
import type { JobStatus } from '@switchyard/protocol';
import type { Queryable } from '../db/db.ts';

export interface JobRow {
  job_id: string;
  seq: number;
  device_uuid: string;
  job_type: string;
  job_data: unknown;
  status: JobStatus;
  status_details: Record<string, string> | null;
  version_number: number;
  execution_number: number;
  in_progress_timeout_s: number | null;
  step_timeout_s: number | null;
  queued_at: Date;
  started_at: Date | null;
  last_updated_at: Date;
  step_timeout_at: Date | null;
  timeout_at: Date | null;
  finished_at: Date | null;
  migration_id: number | null;
  created_by: string;
}

/** Statuses of the pending list (AWS GetPendingJobExecutions). */
const PENDING = `('QUEUED', 'IN_PROGRESS')`;

/** Queue order of the pending list: IN_PROGRESS first, then the oldest QUEUED (AWS `$next`). */
const QUEUE_ORDER = `CASE status WHEN 'IN_PROGRESS' THEN 0 ELSE 1 END, seq`;

export interface DeviceForJobs {
  uuid: string;
  mqtt_broker_id: number | null;
  connected_broker_id: number | null;
}

/** Locks the device row (the lock every change to a device's jobs takes first, then job rows). */
export async function lockDeviceForJobs(q: Queryable, uuid: string, opts: { skipLocked?: boolean } = {}): Promise<DeviceForJobs | null> {
  const { rows } = await q.query<DeviceForJobs>(
    `SELECT uuid, mqtt_broker_id, connected_broker_id FROM devices WHERE uuid = $1 FOR UPDATE${opts.skipLocked ? ' SKIP LOCKED' : ''}`,
    [uuid],
  );
  return rows[0] ?? null;
}

export async function deviceExists(q: Queryable, uuid: string): Promise<boolean> {
  const { rows } = await q.query('SELECT 1 FROM devices WHERE uuid = $1', [uuid]);
  return rows.length > 0;
}

export interface NewJob {
  jobId: string;
  deviceUuid: string;
  jobType: string;
  jobData: unknown;
  inProgressTimeoutSeconds: number | null;
  stepTimeoutSeconds: number | null;
  migrationId: number | null;
  createdBy: string;
}

export async function insertJob(q: Queryable, j: NewJob): Promise<JobRow> {
  const { rows } = await q.query<JobRow>(
    `INSERT INTO device_jobs (job_id, device_uuid, job_type, job_data, in_progress_timeout_s, step_timeout_s, migration_id, created_by)
     VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7, $8) RETURNING *`,
    [j.jobId, j.deviceUuid, j.jobType, JSON.stringify(j.jobData), j.inProgressTimeoutSeconds, j.stepTimeoutSeconds, j.migrationId, j.createdBy],
  );
  return rows[0]!;
}

export async function getJob(q: Queryable, jobId: string, opts: { lock?: boolean } = {}): Promise<JobRow | null> {
  const { rows } = await q.query<JobRow>(`SELECT * FROM device_jobs WHERE job_id = $1${opts.lock ? ' FOR UPDATE' : ''}`, [jobId]);
  return rows[0] ?? null;
}

/** The device's pending executions in queue order (IN_PROGRESS first, then oldest QUEUED). */
export async function pendingJobs(q: Queryable, uuid: string, limit = 1000): Promise<JobRow[]> {
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM device_jobs WHERE device_uuid = $1 AND status IN ${PENDING} ORDER BY ${QUEUE_ORDER} LIMIT $2`,
    [uuid, limit],
  );
  return rows;
}

/** The head of the device's queue (`$next`), or null. */
export async function nextJob(q: Queryable, uuid: string, opts: { lock?: boolean } = {}): Promise<JobRow | null> {
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM device_jobs WHERE device_uuid = $1 AND status IN ${PENDING} ORDER BY ${QUEUE_ORDER} LIMIT 1${opts.lock ? ' FOR UPDATE' : ''}`,
    [uuid],
  );
  return rows[0] ?? null;
}

/** One change of an execution: status, details, timers. `version_number` always grows by one. */
export interface JobChange {
  status: JobStatus;
  /** Replaces the details; undefined keeps them. */
  statusDetails?: Record<string, string>;
  /** Sets `started_at` and the in-progress timer (entering IN_PROGRESS). */
  start?: boolean;
  /** Seconds until the step timer fires; null discards it; undefined keeps it. */
  stepTimeoutSeconds?: number | null;
}

export async function updateJob(q: Queryable, jobId: string, c: JobChange): Promise<JobRow> {
  const terminal = !['QUEUED', 'IN_PROGRESS'].includes(c.status);
  const { rows } = await q.query<JobRow>(
    `UPDATE device_jobs SET
        status = $2,
        status_details = CASE WHEN $3::boolean THEN $4::jsonb ELSE status_details END,
        version_number = version_number + 1,
        last_updated_at = now(),
        started_at = CASE WHEN $5::boolean THEN now() ELSE started_at END,
        timeout_at = CASE WHEN $5::boolean AND in_progress_timeout_s IS NOT NULL
                          THEN now() + make_interval(secs => in_progress_timeout_s) ELSE timeout_at END,
        step_timeout_at = CASE WHEN $8::boolean THEN NULL
                               WHEN $6::boolean THEN (CASE WHEN $7::float8 IS NULL THEN NULL ELSE now() + make_interval(secs => $7::float8) END)
                               ELSE step_timeout_at END,
        finished_at = CASE WHEN $8::boolean THEN now() ELSE finished_at END
      WHERE job_id = $1 RETURNING *`,
    [
      jobId,
      c.status,
      c.statusDetails !== undefined,
      c.statusDetails !== undefined ? JSON.stringify(c.statusDetails) : null,
      c.start === true,
      c.stepTimeoutSeconds !== undefined,
      c.stepTimeoutSeconds ?? null,
      terminal,
    ],
  );
  return rows[0]!;
}

/** True when the execution's in-progress or step timer has run out (by the database's clock). */
export async function isOverdue(q: Queryable, jobId: string): Promise<boolean> {
  const { rows } = await q.query(
    `SELECT 1 FROM device_jobs WHERE job_id = $1 AND status = 'IN_PROGRESS' AND (timeout_at <= now() OR step_timeout_at <= now())`,
    [jobId],
  );
  return rows.length > 0;
}

/** Devices with an overdue IN_PROGRESS execution (no lock: each is then claimed with SKIP LOCKED). */
export async function devicesWithOverdueJobs(q: Queryable, limit: number): Promise<string[]> {
  const { rows } = await q.query<{ device_uuid: string }>(
    `SELECT DISTINCT device_uuid FROM device_jobs
      WHERE status = 'IN_PROGRESS' AND (timeout_at <= now() OR step_timeout_at <= now()) LIMIT $1`,
    [limit],
  );
  return rows.map((r) => r.device_uuid);
}

/** The device's overdue executions, locked (call with the device row locked). */
export async function overdueJobsOf(q: Queryable, uuid: string): Promise<JobRow[]> {
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM device_jobs WHERE device_uuid = $1 AND status = 'IN_PROGRESS'
        AND (timeout_at <= now() OR step_timeout_at <= now()) ORDER BY seq FOR UPDATE`,
    [uuid],
  );
  return rows;
}

/** QUEUED executions of one type for a device (e.g. stale `change-broker` jobs), locked. */
export async function queuedJobsOfType(q: Queryable, uuid: string, jobType: string): Promise<JobRow[]> {
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM device_jobs WHERE device_uuid = $1 AND job_type = $2 AND status = 'QUEUED' ORDER BY seq FOR UPDATE`,
    [uuid, jobType],
  );
  return rows;
}

export interface JobFilter {
  deviceUuid?: string;
  status?: JobStatus;
  jobType?: string;
  limit: number;
  offset: number;
}

/** Jobs, newest first. */
export async function listJobs(q: Queryable, f: JobFilter): Promise<{ rows: JobRow[]; total: number }> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.deviceUuid !== undefined) {
    params.push(f.deviceUuid);
    where.push(`device_uuid = $${params.length}`);
  }
  if (f.status !== undefined) {
    params.push(f.status);
    where.push(`status = $${params.length}`);
  }
  if (f.jobType !== undefined) {
    params.push(f.jobType);
    where.push(`job_type = $${params.length}`);
  }
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  const { rows: count } = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM device_jobs ${clause}`, params);
  const { rows } = await q.query<JobRow>(
    `SELECT * FROM device_jobs ${clause} ORDER BY seq DESC LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
    [...params, f.limit, f.offset],
  );
  return { rows, total: Number(count[0]?.n ?? 0) };
}
