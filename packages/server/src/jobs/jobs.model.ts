/**
 * Device jobs: the execution model and the request rules (AWS IoT Jobs, reference §2) — error codes, limits,
 * request parsing and validation, and the shapes of executions in answers. No I/O; `jobs.service.ts` applies them.
 */
import { isJobStatus, type JobStatus } from '@switchyard/protocol';
import type { JobRow } from './jobs.store.ts';

/** Error codes of `…/rejected` answers (reference §2.6). */
export type JobsErrorCode =
  | 'InvalidTopic'
  | 'InvalidJson'
  | 'InvalidRequest'
  | 'InvalidStateTransition'
  | 'ResourceNotFound'
  | 'VersionMismatch'
  | 'InternalError'
  | 'RequestThrottled'
  | 'TerminalStateReached';

/** `executionState` of answers and errors. */
export interface JobExecutionState {
  status: JobStatus;
  statusDetails?: Record<string, string>;
  versionNumber: number;
}

/** A refused device request; `executionState` on VersionMismatch and InvalidStateTransition. */
export class JobsError extends Error {
  override readonly name = 'JobsError';
  constructor(
    readonly code: JobsErrorCode,
    message: string,
    readonly executionState?: JobExecutionState,
  ) {
    super(message);
  }
}

/** The job type of broker assignments sent through the `job` channel. */
export const CHANGE_BROKER_JOB = 'change-broker';

/** Limits (reference §2.4, §2.1). */
export const JOB_LIMITS = {
  statusDetailsPairs: 10,
  statusDetailsKeyMax: 128,
  statusDetailsValueMax: 1024,
  /** Largest job document, bytes of JSON. */
  documentBytes: 32_768,
  /** Step timer range of a device request, minutes. */
  stepMinutesMax: 10_080,
  clientTokenBytes: 64,
  /** Executions in a `notify` message. */
  notifyMax: 10,
} as const;

const DETAILS_KEY_RE = /^[a-zA-Z0-9:_-]+$/;
// eslint-disable-next-line no-control-regex
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
/** A UTF-16 surrogate that is not part of a pair: no UTF-8 form, and PostgreSQL refuses it in jsonb (fuzz finding). */
const LONE_SURROGATE_RE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

// ───────────────────────────── request parsing (shared by MQTT and HTTP) ─────────────────────────────

export interface GetPendingRequest {
  clientToken?: string;
}
export interface StartNextRequest {
  statusDetails?: Record<string, string>;
  stepTimeoutInMinutes?: number;
  clientToken?: string;
}
export interface DescribeRequest {
  executionNumber?: number;
  includeJobDocument?: boolean;
  clientToken?: string;
}
export interface UpdateRequest {
  status: JobStatus;
  statusDetails?: Record<string, string>;
  expectedVersion?: number;
  executionNumber?: number;
  includeJobExecutionState?: boolean;
  includeJobDocument?: boolean;
  stepTimeoutInMinutes?: number;
  clientToken?: string;
}

type Fields = Record<string, 'string' | 'boolean' | 'integer' | 'details' | 'status'>;

const FIELDS = {
  get: { clientToken: 'string' },
  startNext: { statusDetails: 'details', stepTimeoutInMinutes: 'integer', clientToken: 'string' },
  describe: { executionNumber: 'integer', includeJobDocument: 'boolean', clientToken: 'string' },
  update: {
    status: 'status',
    statusDetails: 'details',
    expectedVersion: 'integer',
    executionNumber: 'integer',
    includeJobExecutionState: 'boolean',
    includeJobDocument: 'boolean',
    stepTimeoutInMinutes: 'integer',
    clientToken: 'string',
  },
} as const satisfies Record<string, Fields>;

/** Keys AWS device SDKs may put in a body although the topic carries them; ignored. */
const TOPIC_KEYS = new Set(['thingName', 'jobId']);

/** Validates `statusDetails` (reference §2.4); throws InvalidRequest. */
export function validateStatusDetails(v: unknown): Record<string, string> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new JobsError('InvalidRequest', 'statusDetails must be an object of string values');
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length > JOB_LIMITS.statusDetailsPairs) {
    throw new JobsError('InvalidRequest', `statusDetails has ${entries.length} pairs; at most ${JOB_LIMITS.statusDetailsPairs} are allowed`);
  }
  const out: Record<string, string> = {};
  for (const [k, val] of entries) {
    if (k.length < 1 || k.length > JOB_LIMITS.statusDetailsKeyMax || !DETAILS_KEY_RE.test(k)) {
      throw new JobsError('InvalidRequest', `statusDetails key ${JSON.stringify(k.slice(0, 140))} must be 1–128 characters of [a-zA-Z0-9:_-]`);
    }
    if (typeof val !== 'string') throw new JobsError('InvalidRequest', `statusDetails.${k} must be a string`);
    if (val.length < 1 || val.length > JOB_LIMITS.statusDetailsValueMax || CONTROL_RE.test(val) || LONE_SURROGATE_RE.test(val)) {
      throw new JobsError('InvalidRequest', `statusDetails.${k} must be 1–${JOB_LIMITS.statusDetailsValueMax} characters of valid text without control characters`);
    }
    out[k] = val;
  }
  return out;
}

function parseFields<T>(body: unknown, fields: Fields): T {
  if (body === undefined || body === null) body = {};
  if (typeof body !== 'object' || Array.isArray(body)) throw new JobsError('InvalidRequest', 'the request must be a JSON object');
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    // Own keys only: `__proto__`, `constructor` or `toString` are unknown fields, not Object.prototype's members
    // (found by test/integration/mqtt-fuzz.test.ts: they were accepted, and `__proto__` replaced the prototype of
    // the parsed request).
    const kind = Object.hasOwn(fields, key) ? fields[key] : undefined;
    if (kind === undefined) {
      if (TOPIC_KEYS.has(key)) continue;
      throw new JobsError('InvalidRequest', `unknown field ${JSON.stringify(key.slice(0, 64))}; allowed: ${Object.keys(fields).join(', ')}`);
    }
    if (value === undefined) continue;
    switch (kind) {
      case 'string':
        if (typeof value !== 'string') throw new JobsError('InvalidRequest', `${key} must be a string`);
        if (key === 'clientToken' && Buffer.byteLength(value) > JOB_LIMITS.clientTokenBytes) {
          throw new JobsError('InvalidRequest', `clientToken must be at most ${JOB_LIMITS.clientTokenBytes} bytes`);
        }
        break;
      case 'boolean':
        if (typeof value !== 'boolean') throw new JobsError('InvalidRequest', `${key} must be a boolean`);
        break;
      case 'integer':
        if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new JobsError('InvalidRequest', `${key} must be an integer`);
        break;
      case 'details':
        out[key] = validateStatusDetails(value);
        continue;
      case 'status':
        if (!isJobStatus(value)) throw new JobsError('InvalidRequest', `status must be one of IN_PROGRESS, SUCCEEDED, FAILED, REJECTED`);
        break;
    }
    out[key] = value;
  }
  return out as T;
}

function checkStepMinutes(m: number | undefined, allowDiscard: boolean): void {
  if (m === undefined) return;
  if (allowDiscard && m === -1) return;
  if (m < 1 || m > JOB_LIMITS.stepMinutesMax) {
    throw new JobsError('InvalidRequest', `stepTimeoutInMinutes must be 1–${JOB_LIMITS.stepMinutesMax}${allowDiscard ? ' or -1 (discard the step timer)' : ''}`);
  }
}

export function parseGetPending(body: unknown): GetPendingRequest {
  return parseFields<GetPendingRequest>(body, FIELDS.get);
}
export function parseStartNext(body: unknown): StartNextRequest {
  const r = parseFields<StartNextRequest>(body, FIELDS.startNext);
  checkStepMinutes(r.stepTimeoutInMinutes, false);
  return r;
}
export function parseDescribe(body: unknown): DescribeRequest {
  return parseFields<DescribeRequest>(body, FIELDS.describe);
}
export function parseUpdate(body: unknown): UpdateRequest {
  const r = parseFields<UpdateRequest>(body, FIELDS.update);
  if (r.status === undefined) throw new JobsError('InvalidRequest', 'status is required (IN_PROGRESS, SUCCEEDED, FAILED or REJECTED)');
  checkStepMinutes(r.stepTimeoutInMinutes, true);
  return r;
}

/** The clientToken of a body, if it has a usable one (for echoing on errors found before parsing). */
export function clientTokenOf(body: unknown): string | undefined {
  if (typeof body !== 'object' || body === null) return undefined;
  const t = (body as Record<string, unknown>).clientToken;
  return typeof t === 'string' && Buffer.byteLength(t) <= JOB_LIMITS.clientTokenBytes ? t : undefined;
}

// ───────────────────────────── shapes ─────────────────────────────

const epoch = (d: Date | string | null): number | undefined => (d === null ? undefined : Math.floor(new Date(d).getTime() / 1000));
const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());

/** AWS JobExecutionSummary (in `get` lists and `notify`). */
export function executionSummary(r: JobRow): Record<string, unknown> {
  return {
    jobId: r.job_id,
    queuedAt: epoch(r.queued_at),
    ...(r.started_at ? { startedAt: epoch(r.started_at) } : {}),
    lastUpdatedAt: epoch(r.last_updated_at),
    versionNumber: r.version_number,
    executionNumber: r.execution_number,
  };
}

/** AWS JobExecution (plus `jobType`); `jobDocument` included unless `includeDocument` is false. */
export function execution(r: JobRow, nowMs: number, includeDocument = true): Record<string, unknown> {
  const timers = [r.timeout_at, r.step_timeout_at].filter((d): d is Date => d !== null).map((d) => new Date(d).getTime());
  const left = r.status === 'IN_PROGRESS' && timers.length > 0 ? Math.max(0, Math.floor((Math.min(...timers) - nowMs) / 1000)) : undefined;
  return {
    jobId: r.job_id,
    thingName: r.device_uuid,
    // Not in AWS's JobExecution (an AWS device reads the operation from its document): Switchyard's extension, so
    // that a device can dispatch on the type without a convention inside the document.
    jobType: r.job_type,
    status: r.status,
    ...(r.status_details ? { statusDetails: r.status_details } : {}),
    queuedAt: epoch(r.queued_at),
    ...(r.started_at ? { startedAt: epoch(r.started_at) } : {}),
    lastUpdatedAt: epoch(r.last_updated_at),
    versionNumber: r.version_number,
    executionNumber: r.execution_number,
    ...(left !== undefined ? { approximateSecondsBeforeTimedOut: left } : {}),
    ...(includeDocument ? { jobDocument: r.job_data } : {}),
  };
}

export function executionState(r: JobRow): JobExecutionState {
  return { status: r.status, ...(r.status_details ? { statusDetails: r.status_details } : {}), versionNumber: r.version_number };
}

/** The admin view of a job (`GET /jobs/:jobId`). */
export interface Job {
  jobId: string;
  deviceUuid: string;
  jobType: string;
  jobData: unknown;
  status: JobStatus;
  statusDetails: Record<string, string> | null;
  versionNumber: number;
  executionNumber: number;
  inProgressTimeoutSeconds: number | null;
  stepTimeoutSeconds: number | null;
  migrationId: number | null;
  createdBy: string;
  queuedAt: string;
  startedAt: string | null;
  lastUpdatedAt: string;
  stepTimeoutAt: string | null;
  timeoutAt: string | null;
  finishedAt: string | null;
}

export function toJob(r: JobRow): Job {
  return {
    jobId: r.job_id,
    deviceUuid: r.device_uuid,
    jobType: r.job_type,
    jobData: r.job_data,
    status: r.status,
    statusDetails: r.status_details,
    versionNumber: r.version_number,
    executionNumber: r.execution_number,
    inProgressTimeoutSeconds: r.in_progress_timeout_s,
    stepTimeoutSeconds: r.step_timeout_s,
    migrationId: r.migration_id === null ? null : Number(r.migration_id),
    createdBy: r.created_by,
    queuedAt: iso(r.queued_at)!,
    startedAt: iso(r.started_at),
    lastUpdatedAt: iso(r.last_updated_at)!,
    stepTimeoutAt: iso(r.step_timeout_at),
    timeoutAt: iso(r.timeout_at),
    finishedAt: iso(r.finished_at),
  };
}


