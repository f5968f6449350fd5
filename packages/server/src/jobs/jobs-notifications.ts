/**
 * The MQTT notifications of a device's pending jobs (AWS IoT Jobs `notify` and `notify-next`), as outbox rows:
 * written in the transaction that changed the list, published in every served namespace through the brokers the
 * device is connected or assigned to.
 */
import { jobsTopic, type Namespace } from '@switchyard/protocol';
import type { NewOutboxRow } from '../outbox/outbox.store.ts';
import { JOB_LIMITS, execution, executionSummary } from './jobs.model.ts';
import type { DeviceForJobs, JobRow } from './jobs.store.ts';

/** Outbox rows for a change of the device's pending list from `before` to `after`. */
export function jobNotificationRows(o: {
  namespaces: readonly Namespace[];
  device: DeviceForJobs;
  before: JobRow[];
  after: JobRow[];
  nowMs: number;
  migrationId?: number;
}): NewOutboxRow[] {
  const { namespaces, device, before, after, migrationId } = o;
  const via = new Set<number>();
  for (const id of [device.connected_broker_id, device.mqtt_broker_id]) if (typeof id === 'number') via.add(id);
  const rows: NewOutboxRow[] = [];
  const ts = Math.floor(o.nowMs / 1000);
  const push = (topicOf: (ns: Namespace) => string, body: string, withMigration: boolean): void => {
    for (const brokerId of via) {
      for (const ns of namespaces) {
        rows.push({
          kind: 'mqtt.publish',
          deviceUuid: device.uuid,
          ...(withMigration && migrationId !== undefined ? { migrationId } : {}),
          payload: { brokerId, topic: topicOf(ns), body, qos: 1 },
        });
      }
    }
  };
  const idsBefore = new Set(before.map((r) => r.job_id));
  const idsAfter = new Set(after.map((r) => r.job_id));
  const membership = idsBefore.size !== idsAfter.size || [...idsAfter].some((id) => !idsBefore.has(id));
  if (membership) {
    const listed = after.slice(0, JOB_LIMITS.notifyMax);
    const inProgress = listed.filter((r) => r.status === 'IN_PROGRESS').map(executionSummary);
    const queued = listed.filter((r) => r.status === 'QUEUED').map(executionSummary);
    const jobs = { ...(inProgress.length > 0 ? { IN_PROGRESS: inProgress } : {}), ...(queued.length > 0 ? { QUEUED: queued } : {}) };
    push((ns) => jobsTopic(device.uuid, 'notify', { ns }), JSON.stringify({ timestamp: ts, jobs }), false);
  }
  const head = after[0];
  if (before[0]?.job_id !== head?.job_id) {
    const body = head ? { timestamp: ts, execution: execution(head, o.nowMs) } : { timestamp: ts };
    // Only the notification of a new change-broker job carries its migration: its delivery marks the move
    // `notified` (and a row for a move already over is dropped by the dispatcher).
    const forMigration = head !== undefined && migrationId !== undefined && Number(head.migration_id) === migrationId;
    push((ns) => jobsTopic(device.uuid, 'notify-next', { ns }), JSON.stringify(body), forMigration);
  }
  return rows;
}
