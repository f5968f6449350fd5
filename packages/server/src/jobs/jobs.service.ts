/**
 * Device jobs with AWS IoT Jobs execution semantics (reference §2; DESIGN §3, §6): one execution per job.
 *
 * Rules (the transitions themselves are `nextJobState` in the protocol package):
 * - a device may move its execution QUEUED → IN_PROGRESS | REJECTED and IN_PROGRESS → IN_PROGRESS | SUCCEEDED |
 *   FAILED | REJECTED; the service QUEUED → CANCELED | REMOVED, IN_PROGRESS → TIMED_OUT (its timers) and
 *   IN_PROGRESS → CANCELED with `force`. Nothing leaves a terminal state (InvalidStateTransition);
 * - `versionNumber` starts at 1 and grows by one on every change; an `expectedVersion` that differs is refused
 *   with VersionMismatch carrying the current `executionState`;
 * - `statusDetails`: at most 10 pairs, keys 1–128 of `[a-zA-Z0-9:_-]`, values 1–1024 characters without control
 *   characters (InvalidRequest otherwise); omitted = unchanged, given = replaced;
 * - the in-progress timer starts when the execution enters IN_PROGRESS and never changes; the step timer starts
 *   then too (the job's `stepTimeoutSeconds`), and a device's `stepTimeoutInMinutes` replaces it (`-1` discards
 *   it). Either one running out → TIMED_OUT, by the sweeper even while no device talks, or at once when the
 *   device touches an overdue execution (the device then gets InvalidStateTransition, and the TIMED_OUT commits).
 *
 * Notifications — `notify` when an execution joins or leaves the pending list, `notify-next` when the head of the
 * queue (`$next`: IN_PROGRESS first, then the oldest QUEUED) changes — are outbox rows written in the same
 * transaction as the change, published through the broker(s) the device is on (connected and assigned).
 *
 * Locking: every change locks the device row first, then job rows (the assignment transaction has the same
 * order), so a device's jobs change one transaction at a time.
 */
import { randomUUID } from 'node:crypto';
import {
  JOB_ID_RE,
  NEXT_JOB_ID,
  isTerminal,
  nextJobState,
  type JobStatus,
  type Namespace,
} from '@switchyard/protocol';
import type { Db, Queryable } from '../db/db.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { AppError } from '../errors.ts';
import { insertAudit } from '../audit/audit.store.ts';
import { jobAudit } from '../audit/audit-entries.ts';
import { enqueue } from '../outbox/outbox.store.ts';
import { jobNotificationRows } from './jobs-notifications.ts';
import {
  deviceExists,
  devicesWithOverdueJobs,
  getJob,
  insertJob,
  isOverdue,
  listJobs,
  lockDeviceForJobs,
  overdueJobsOf,
  pendingJobs,
  queuedJobsOfType,
  updateJob,
  type DeviceForJobs,
  type JobChange,
  type JobFilter,
  type JobRow,
} from './jobs.store.ts';

export * from './jobs.model.ts';
import {
  CHANGE_BROKER_JOB,
  JOB_LIMITS,
  JobsError,
  execution,
  executionState,
  executionSummary,
  toJob,
  type DescribeRequest,
  type Job,
  type StartNextRequest,
  type UpdateRequest,
} from './jobs.model.ts';

export interface JobsServiceOptions {
  db: Db;
  log: Logger;
  clock: Clock;
  /** Namespaces notifications are published in. Default ['iot']. */
  namespaces?: Namespace[];
  /** Observer of every committed change (logs, events). */
  onJobChange?(job: Job): void;
}

export interface NewJobInput {
  jobType: string;
  jobData: unknown;
  /** 1–604800 s; the in-progress timer. */
  inProgressTimeoutSeconds?: number;
  /** 1–604800 s; the step timer started when the execution enters IN_PROGRESS. */
  stepTimeoutSeconds?: number;
}

/** What `createChangeBrokerJob` receives from the assignment transaction. */
export interface ChangeBrokerJobContext {
  deviceUuid: string;
  migrationId: number;
  assignment: { brokerId: number; broker: string; protocol: string; host: string; port: number };
  /** The `device-state` shadow version of the assignment. */
  version: number;
}

/** The result of a device operation: the answer body (without `timestamp`/`clientToken`). */
export type DeviceAnswer = Record<string, unknown>;

export function createJobsService(opts: JobsServiceOptions) {
  const { db, clock } = opts;
  const log = opts.log.child({ component: 'jobs' });
  const namespaces = opts.namespaces ?? ['iot'];
  const nowSeconds = (): number => Math.floor(clock.now() / 1000);

  /**
   * Runs `fn` on a device whose row is locked, then writes the notifications its change of the pending list
   * needs. `changed` collects the rows to report after commit.
   */
  async function withNotifications<T>(tx: Queryable, device: DeviceForJobs, fn: () => Promise<T>, migrationId?: number): Promise<T> {
    const before = await pendingJobs(tx, device.uuid);
    const result = await fn();
    const after = await pendingJobs(tx, device.uuid);
    const rows = jobNotificationRows({ namespaces, device, before, after, nowMs: clock.now(), ...(migrationId !== undefined ? { migrationId } : {}) });
    if (rows.length > 0) await enqueue(tx, rows);
    return result;
  }

  const report = (rows: JobRow[]): void => {
    for (const r of rows) opts.onJobChange?.(toJob(r));
  };

  /** TIMED_OUT for an overdue execution the caller locked. */
  async function timeOut(tx: Queryable, job: JobRow): Promise<JobRow> {
    const r = await updateJob(tx, job.job_id, { status: 'TIMED_OUT' });
    await insertAudit(tx, jobAudit(r, 'system', 'job.timed_out', job.status));
    return r;
  }

  /**
   * One device request in one transaction. `fn` returns the answer or a {@link JobsError} (returned, not
   * thrown, so that what it changed on the way — an overdue execution timed out — still commits).
   */
  async function deviceTx(deviceUuid: string, fn: (tx: Queryable, device: DeviceForJobs, changed: JobRow[]) => Promise<DeviceAnswer | JobsError>): Promise<DeviceAnswer> {
    const changed: JobRow[] = [];
    const out = await db.transaction(async (tx) => {
      const device = await lockDeviceForJobs(tx, deviceUuid);
      if (!device) return new JobsError('ResourceNotFound', `no device ${deviceUuid}`);
      return withNotifications(tx, device, () => fn(tx, device, changed));
    });
    report(changed);
    if (out instanceof JobsError) throw out;
    return out;
  }

  /** The execution `jobId` of the device, locked, timed out first if overdue. */
  async function loadForDevice(tx: Queryable, deviceUuid: string, jobId: string, changed: JobRow[], executionNumber?: number): Promise<JobRow | JobsError> {
    let job = JOB_ID_RE.test(jobId) ? await getJob(tx, jobId, { lock: true }) : null;
    if (!job || job.device_uuid !== deviceUuid || (executionNumber !== undefined && executionNumber !== job.execution_number)) {
      return new JobsError('ResourceNotFound', `no job execution ${jobId}${executionNumber !== undefined ? ` #${executionNumber}` : ''} for device ${deviceUuid}`);
    }
    if (await isOverdue(tx, job.job_id)) {
      job = await timeOut(tx, job);
      changed.push(job);
      log.info({ deviceUuid, jobId }, 'job execution timed out (found overdue on a device request)');
    }
    return job;
  }

  /** Expires the device's overdue executions (so `$next` and lists never show one). */
  async function expireOverdue(tx: Queryable, deviceUuid: string, changed: JobRow[]): Promise<void> {
    for (const j of await overdueJobsOf(tx, deviceUuid)) changed.push(await timeOut(tx, j));
  }

  /** Applies a device's move of `job` to `req.status`; shared by update and start-next. */
  async function applyDeviceUpdate(tx: Queryable, job: JobRow, status: JobStatus, o: { statusDetails?: Record<string, string>; stepTimeoutInMinutes?: number }): Promise<JobRow | JobsError> {
    const t = nextJobState(job.status, status, 'device');
    if (!t.ok) {
      const why = isTerminal(job.status) ? `it is in the terminal state ${job.status}` : `a device may not move it from ${job.status} to ${status}`;
      return new JobsError('InvalidStateTransition', `job execution ${job.job_id} cannot become ${status}: ${why}`, executionState(job));
    }
    const starting = job.status === 'QUEUED' && status === 'IN_PROGRESS';
    const change: JobChange = { status, start: starting };
    if (o.statusDetails !== undefined) change.statusDetails = o.statusDetails;
    if (o.stepTimeoutInMinutes === -1) change.stepTimeoutSeconds = null;
    else if (o.stepTimeoutInMinutes !== undefined) change.stepTimeoutSeconds = o.stepTimeoutInMinutes * 60;
    else if (starting && job.step_timeout_s !== null) change.stepTimeoutSeconds = job.step_timeout_s;
    const updated = await updateJob(tx, job.job_id, change);
    // Device-driven status changes are audited (progress reports within IN_PROGRESS are not: the row keeps them).
    if (updated.status !== job.status) await insertAudit(tx, jobAudit(updated, `device:${job.device_uuid}`, 'job.update', job.status));
    return updated;
  }

  // ── device side ──

  /** GetPendingJobExecutions. */
  function getPending(deviceUuid: string): Promise<DeviceAnswer> {
    return deviceTx(deviceUuid, async (tx, _device, changed) => {
      await expireOverdue(tx, deviceUuid, changed);
      const pending = await pendingJobs(tx, deviceUuid);
      return {
        inProgressJobs: pending.filter((r) => r.status === 'IN_PROGRESS').map(executionSummary),
        queuedJobs: pending.filter((r) => r.status === 'QUEUED').map(executionSummary),
      };
    });
  }

  /** StartNextPendingJobExecution: IN_PROGRESS first, else the oldest QUEUED (which starts). */
  function startNext(deviceUuid: string, req: StartNextRequest): Promise<DeviceAnswer> {
    return deviceTx(deviceUuid, async (tx, _device, changed) => {
      await expireOverdue(tx, deviceUuid, changed);
      const head = (await pendingJobs(tx, deviceUuid, 1))[0];
      if (!head) return {};
      const job = (await getJob(tx, head.job_id, { lock: true }))!;
      if (job.status === 'IN_PROGRESS') return { execution: execution(job, clock.now()) };
      const updated = await applyDeviceUpdate(tx, job, 'IN_PROGRESS', req);
      if (updated instanceof JobsError) return updated;
      changed.push(updated);
      return { execution: execution(updated, clock.now()) };
    });
  }

  /** DescribeJobExecution (`jobId` may be `$next`). */
  function describe(deviceUuid: string, jobId: string, req: DescribeRequest): Promise<DeviceAnswer> {
    return deviceTx(deviceUuid, async (tx, _device, changed) => {
      const include = req.includeJobDocument ?? true;
      if (jobId === NEXT_JOB_ID) {
        await expireOverdue(tx, deviceUuid, changed);
        const head = (await pendingJobs(tx, deviceUuid, 1))[0];
        return head ? { execution: execution(head, clock.now(), include) } : {};
      }
      const job = await loadForDevice(tx, deviceUuid, jobId, changed, req.executionNumber);
      if (job instanceof JobsError) return job;
      if (isTerminal(job.status)) {
        return new JobsError('TerminalStateReached', `job execution ${jobId} is in the terminal state ${job.status}`, executionState(job));
      }
      return { execution: execution(job, clock.now(), include) };
    });
  }

  /** UpdateJobExecution. */
  function update(deviceUuid: string, jobId: string, req: UpdateRequest): Promise<DeviceAnswer> {
    return deviceTx(deviceUuid, async (tx, _device, changed) => {
      const job = await loadForDevice(tx, deviceUuid, jobId, changed, req.executionNumber);
      if (job instanceof JobsError) return job;
      if (req.expectedVersion !== undefined && req.expectedVersion !== job.version_number) {
        return new JobsError('VersionMismatch', `expectedVersion ${req.expectedVersion} is not the execution's version ${job.version_number}`, executionState(job));
      }
      const updated = await applyDeviceUpdate(tx, job, req.status, req);
      if (updated instanceof JobsError) return updated;
      changed.push(updated);
      return {
        ...(req.includeJobExecutionState ? { executionState: executionState(updated) } : {}),
        ...(req.includeJobDocument ? { jobDocument: updated.job_data } : {}),
      };
    });
  }

  // ── admin side ──

  /** Inserts a QUEUED job (with its notifications) inside the caller's transaction; the device row is locked here. */
  async function createInTx(tx: Queryable, deviceUuid: string, input: NewJobInput & { migrationId?: number; actor: string }): Promise<JobRow> {
    const device = await lockDeviceForJobs(tx, deviceUuid);
    if (!device) throw new AppError('DEVICE_NOT_FOUND', `no device with uuid ${deviceUuid}`);
    const size = Buffer.byteLength(JSON.stringify(input.jobData ?? null));
    if (size > JOB_LIMITS.documentBytes) {
      throw new AppError('PAYLOAD_TOO_LARGE', `the job document is ${size} bytes; at most ${JOB_LIMITS.documentBytes} are allowed`);
    }
    return withNotifications(
      tx,
      device,
      () =>
        insertJob(tx, {
          jobId: `job-${randomUUID()}`,
          deviceUuid,
          jobType: input.jobType,
          jobData: input.jobData,
          inProgressTimeoutSeconds: input.inProgressTimeoutSeconds ?? null,
          stepTimeoutSeconds: input.stepTimeoutSeconds ?? null,
          migrationId: input.migrationId ?? null,
          createdBy: input.actor,
        }),
      input.migrationId,
    );
  }

  async function create(deviceUuid: string, input: NewJobInput, actor: string): Promise<Job> {
    const row = await db.transaction(async (tx) => {
      const r = await createInTx(tx, deviceUuid, { ...input, actor });
      await insertAudit(tx, { actor, action: 'job.create', targetType: 'device', targetId: deviceUuid, details: { jobId: r.job_id, jobType: r.job_type } });
      return r;
    });
    report([row]);
    log.info({ deviceUuid, jobId: row.job_id, jobType: row.job_type }, 'job queued');
    return toJob(row);
  }

  /**
   * The `job` channel of a broker assignment (AssignmentServiceOptions.createChangeBrokerJob): inside the
   * assignment transaction, cancels the device's still-QUEUED `change-broker` jobs (an older assignment) and
   * queues one whose document is the assignment plus its shadow `version`, linked to the migration.
   */
  async function createChangeBrokerJob(tx: Queryable, ctx: ChangeBrokerJobContext): Promise<void> {
    const device = await lockDeviceForJobs(tx, ctx.deviceUuid);
    if (!device) throw new AppError('DEVICE_NOT_FOUND', `no device with uuid ${ctx.deviceUuid}`);
    const stale = await withNotifications(tx, device, async () => {
      const out: JobRow[] = [];
      for (const old of await queuedJobsOfType(tx, ctx.deviceUuid, CHANGE_BROKER_JOB)) {
        out.push(await updateJob(tx, old.job_id, { status: 'CANCELED', statusDetails: { reason: `superseded by migration ${ctx.migrationId}` } }));
      }
      return out;
    });
    const { brokerId, broker, protocol, host, port } = ctx.assignment;
    const row = await createInTx(tx, ctx.deviceUuid, {
      jobType: CHANGE_BROKER_JOB,
      jobData: { brokerId, broker, protocol, host, port, version: ctx.version },
      migrationId: ctx.migrationId,
      actor: `migration:${ctx.migrationId}`,
    });
    log.info({ deviceUuid: ctx.deviceUuid, jobId: row.job_id, migrationId: ctx.migrationId, canceled: stale.map((r) => r.job_id) }, 'change-broker job queued');
  }

  async function cancel(jobId: string, o: { force?: boolean; actor: string }): Promise<Job> {
    const row = await db.transaction(async (tx) => {
      const found = JOB_ID_RE.test(jobId) ? await getJob(tx, jobId) : null;
      if (!found) throw new AppError('JOB_NOT_FOUND', `no job with id ${jobId}`);
      const device = await lockDeviceForJobs(tx, found.device_uuid);
      if (!device) throw new AppError('JOB_NOT_FOUND', `no job with id ${jobId}`);
      return withNotifications(tx, device, async () => {
        let job = (await getJob(tx, jobId, { lock: true }))!;
        if (await isOverdue(tx, jobId)) job = await timeOut(tx, job);
        const t = nextJobState(job.status, 'CANCELED', 'service', { force: o.force === true });
        if (!t.ok) {
          const hint = job.status === 'IN_PROGRESS' ? 'it is IN_PROGRESS: cancel with {"force": true}' : `it is in the terminal state ${job.status}`;
          throw new AppError('JOB_INVALID_STATE_TRANSITION', `job ${jobId} cannot be canceled: ${hint}`, { executionState: executionState(job) });
        }
        const r = await updateJob(tx, jobId, { status: 'CANCELED' });
        await insertAudit(tx, { actor: o.actor, action: 'job.cancel', targetType: 'device', targetId: r.device_uuid, details: { jobId, from: job.status, force: o.force === true } });
        return r;
      });
    });
    report([row]);
    log.info({ deviceUuid: row.device_uuid, jobId }, 'job canceled');
    return toJob(row);
  }

  /**
   * Times out every overdue IN_PROGRESS execution, one device per transaction. A device is claimed with
   * `FOR UPDATE SKIP LOCKED` on its row (the lock every job change takes first): a device busy in another
   * transaction, or swept by another instance, is left for the next sweep. Returns how many timed out.
   */
  async function sweepTimeouts(limit = 500): Promise<number> {
    let count = 0;
    for (const uuid of await devicesWithOverdueJobs(db, limit)) {
      const rows = await db.transaction(async (tx) => {
        const device = await lockDeviceForJobs(tx, uuid, { skipLocked: true });
        if (!device) return [];
        return withNotifications(tx, device, async () => {
          const out: JobRow[] = [];
          for (const j of await overdueJobsOf(tx, uuid)) out.push(await timeOut(tx, j));
          return out;
        });
      });
      for (const r of rows) log.info({ deviceUuid: uuid, jobId: r.job_id }, 'job execution timed out');
      report(rows);
      count += rows.length;
    }
    return count;
  }

  return {
    getPending,
    startNext,
    describe,
    update,
    create,
    createInTx,
    createChangeBrokerJob,
    cancel,
    sweepTimeouts,
    async get(jobId: string): Promise<Job> {
      const row = JOB_ID_RE.test(jobId) ? await getJob(db, jobId) : null;
      if (!row) throw new AppError('JOB_NOT_FOUND', `no job with id ${jobId}`);
      return toJob(row);
    },
    async list(f: JobFilter): Promise<{ items: Job[]; total: number; limit: number; offset: number }> {
      const { rows, total } = await listJobs(db, f);
      return { items: rows.map(toJob), total, limit: f.limit, offset: f.offset };
    },
    async deviceExists(uuid: string): Promise<boolean> {
      return deviceExists(db, uuid);
    },
    nowSeconds,
  };
}

export type JobsService = ReturnType<typeof createJobsService>;
