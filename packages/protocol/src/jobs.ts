/**
 * AWS IoT Jobs execution states (reference §2.3) and the transitions each actor may make.
 *
 * QUEUED → IN_PROGRESS | REJECTED (device); IN_PROGRESS → IN_PROGRESS | SUCCEEDED | FAILED | REJECTED (device);
 * IN_PROGRESS → TIMED_OUT (service); QUEUED → CANCELED | REMOVED (service); IN_PROGRESS → CANCELED (service,
 * only with `force`). Nothing leaves a terminal state.
 */

/** Every execution status, AWS names. */
export const JOB_STATUSES = [
  'QUEUED',
  'IN_PROGRESS',
  'SUCCEEDED',
  'FAILED',
  'TIMED_OUT',
  'REJECTED',
  'REMOVED',
  'CANCELED',
] as const;

/** A job execution status. */
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Statuses a device may send in an update. */
export const DEVICE_JOB_STATUSES: readonly JobStatus[] = ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED'];

/** Statuses no execution ever leaves. */
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = [
  'SUCCEEDED',
  'FAILED',
  'TIMED_OUT',
  'REJECTED',
  'REMOVED',
  'CANCELED',
];

/** Who asks for a transition. */
export type JobActor = 'device' | 'service';

/** Result of {@link nextJobState}. */
export type JobTransitionResult = { ok: true } | { ok: false; code: 'InvalidStateTransition' };

/** True when `s` is one of {@link JOB_STATUSES}. */
export function isJobStatus(s: unknown): s is JobStatus {
  return typeof s === 'string' && (JOB_STATUSES as readonly string[]).includes(s);
}

/** True for SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED and CANCELED. */
export function isTerminal(s: JobStatus): boolean {
  return TERMINAL_JOB_STATUSES.includes(s);
}

const DEVICE_MOVES: Partial<Record<JobStatus, readonly JobStatus[]>> = {
  QUEUED: ['IN_PROGRESS', 'REJECTED'],
  IN_PROGRESS: ['IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'REJECTED'],
};

const SERVICE_MOVES: Partial<Record<JobStatus, readonly JobStatus[]>> = {
  QUEUED: ['CANCELED', 'REMOVED'],
  IN_PROGRESS: ['TIMED_OUT'],
};

const INVALID: JobTransitionResult = { ok: false, code: 'InvalidStateTransition' };

/**
 * Whether `actor` may move an execution from `from` to `to`.
 * @param opts.force service only: allows IN_PROGRESS → CANCELED (default false)
 */
export function nextJobState(
  from: JobStatus,
  to: JobStatus,
  actor: JobActor,
  opts: { force?: boolean } = {},
): JobTransitionResult {
  if (!isJobStatus(from) || !isJobStatus(to) || isTerminal(from)) return INVALID;
  if (actor === 'device') return DEVICE_MOVES[from]?.includes(to) ? { ok: true } : INVALID;
  if (actor === 'service') {
    if (SERVICE_MOVES[from]?.includes(to)) return { ok: true };
    if (from === 'IN_PROGRESS' && to === 'CANCELED' && opts.force === true) return { ok: true };
  }
  return INVALID;
}
