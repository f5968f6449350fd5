/**
 * Audit rows of device-driven (and server-driven) state changes, built in one place so that every writer uses
 * the same actions and details. The services insert them in the transaction of the change.
 *
 * Actions: `migration.migrating` / `migration.completed` / `migration.attempt_failed` / `migration.command_ack`
 * (actor `device:<uuid>`), `migration.timed_out` (actor `system`); `job.update` (a device moved its execution to
 * another status; actor `device:<uuid>`), `job.timed_out` (actor `system`).
 */
import type { AuditEntry } from './audit.store.ts';

/** The columns of a `broker_migrations` row an audit row needs. */
interface MigrationLike {
  id: number | string;
  device_uuid: string;
  to_broker_id: number;
  status: string;
  attempts: number;
  error: string | null;
}

/** A change of migration `m` (its row after the change) by `actor`. */
export function migrationAudit(m: MigrationLike, actor: string, action: string, extra: Record<string, unknown> = {}): AuditEntry {
  return {
    actor,
    action,
    targetType: 'device',
    targetId: m.device_uuid,
    details: {
      migrationId: Number(m.id),
      toBrokerId: m.to_broker_id,
      status: m.status,
      attempts: m.attempts,
      ...(m.error !== null ? { error: m.error.slice(0, 500) } : {}),
      ...extra,
    },
  };
}

/** The columns of a `device_jobs` row an audit row needs. */
interface JobLike {
  job_id: string;
  device_uuid: string;
  job_type: string;
  status: string;
  version_number: number;
}

/** Job execution `job` (its row after the change) moved from status `from` by `actor`. */
export function jobAudit(job: JobLike, actor: string, action: string, from: string): AuditEntry {
  return {
    actor,
    action,
    targetType: 'device',
    targetId: job.device_uuid,
    details: { jobId: job.job_id, jobType: job.job_type, from, to: job.status, versionNumber: job.version_number },
  };
}
