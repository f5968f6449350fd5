/**
 * Broker assignment: one transaction moves a device's desired broker, records the migration and
 * queues the notification; the device's own reports (through the target broker) move the migration
 * to `completed`. See DESIGN §5 and docs/operations.md.
 *
 * Migration states: pending (committed) → notified (the outbox published the delta) → migrating
 * (the device said it started, or reported a failed attempt it will retry) → completed (the device
 * reported `connected` THROUGH the target broker). Off-ramps: superseded (a newer assignment),
 * timed_out (deadline passed), failed/canceled (reserved for channels that end a move for good).
 *
 * Channels (how the device is told; `desired.mqtt` is written the same way whatever the channel, and the
 * config endpoint's long-polls are woken by a `pg_notify` in the same transaction):
 * - `shadow`: the `device-state` delta, through the broker(s) the device is on;
 * - `command`: `iot/device/{uuid}/command/broker-change` (QoS 1, not retained) with a `commandId` and an
 *   `expiresAt`, through the same broker(s). The device's acks are appended to the row (`acks`) and never move
 *   its status: the command is only a notification, the device's `connected` report through the target is what
 *   completes the move. A `failed` ack (`expired`, `unknown command`, superseded…) is recorded and the row stays
 *   open — the device still converges on `desired.mqtt` (an expired command makes it ask its shadow), and the
 *   deadline ends a move that never happens;
 * - `job`: the `createChangeBrokerJob` hook (the device jobs engine) queues a `change-broker` job in the same
 *   transaction; without the hook the channel is refused (400);
 * - `poll`: nothing is published; the device learns it from `GET /devices/:uuid/config`.
 */
import { randomUUID } from 'node:crypto';
import { BROKER_SHADOW, applyUpdate, commandTopic, projectMetadata, shadowTopic, type JsonObject, type Namespace, type ShadowDeltaMessage } from '@switchyard/protocol';
import type { Db, Queryable } from '../db/db.ts';
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { AppError } from '../errors.ts';
import type { BrokerRow } from '../brokers/brokers.store.ts';
import { insertAudit } from '../audit/audit.store.ts';
import { migrationAudit } from '../audit/audit-entries.ts';
import { lockDevicesSql } from '../shadows/shadows.store.ts';
import type { AppliedUpdate } from '../shadows/shadow.service.ts';
import { enqueue, enqueueLeased, type NewOutboxRow, type OutboxRow } from '../outbox/outbox.store.ts';
import {
  appendCommandAck,
  getMigration,
  listMigrations,
  lockDeviceWithShadow,
  markNotified,
  openMigration,
  recordAssignment,
  recordMigrationReport,
  timeOutOverdue,
  type AssignmentChannel,
  type MigrationFilter,
  type MigrationRow,
} from './assignments.store.ts';

export * from './assignment.model.ts';
import { assignmentOf, isObject, parseCommandAck, toMigration, type AssignResult, type BrokerChangeCommand, type Migration, type MqttAssignment } from './assignment.model.ts';

export interface AssignmentServiceOptions {
  db: Db;
  log: Logger;
  clock: Clock;
  /** Namespaces the delta is published in. Default ['iot']. */
  namespaces?: Namespace[];
  /** Seconds an assignment may take before it becomes `timed_out`. Default 120. */
  timeoutSeconds?: number;
  /** Observer of every migration change (events, logs). */
  onMigrationChange?(m: Migration): void;
  /** Seconds a `broker-change` command stays valid (`expiresAt` = sent + this). Default 60. */
  commandTtlSeconds?: number;
  /**
   * Channel `job`: queues a `change-broker` device job in the assignment's transaction (the jobs engine
   * provides it). Without it, `channel: 'job'` is refused with 400.
   */
  createChangeBrokerJob?(tx: Queryable, ctx: { deviceUuid: string; migrationId: number; assignment: MqttAssignment; version: number }): Promise<void>;
  /**
   * Device accounts on brokers (`provisioning/`), in the assignment's and the completing transaction: the target
   * broker's account is queued before any notification (which waits for it), and a completed move removes the
   * accounts on the brokers the device left.
   */
  provisioning?: {
    forAssignment(tx: Queryable, deviceUuid: string, broker: BrokerRow, migrationId: number): Promise<number | null>;
    afterMove(tx: Queryable, deviceUuid: string, toBrokerId: number): Promise<number[]>;
  };
}

/** What the assignment service needs of the outbox dispatcher to deliver its own rows at once. */
export interface LeasedDelivery {
  leaseSeconds: number;
  deliverLeased(rows: readonly OutboxRow[]): void;
}

export function createAssignmentService(opts: AssignmentServiceOptions) {
  const { db, clock } = opts;
  const log = opts.log.child({ component: 'assignments' });
  const namespaces = opts.namespaces ?? ['iot'];
  const timeoutSeconds = opts.timeoutSeconds ?? 120;
  const commandTtlSeconds = opts.commandTtlSeconds ?? 60;
  const changed = (row: MigrationRow | null): void => {
    if (row) opts.onMigrationChange?.(toMigration(row));
  };
  /** This instance's dispatcher, once bound: an assignment's notifications then leave the moment it commits. */
  let outbox: LeasedDelivery | null = null;

  async function assign(deviceUuid: string, brokerId: number, o: { channel: AssignmentChannel; actor: string }): Promise<AssignResult> {
    if (o.channel === 'job' && !opts.createChangeBrokerJob) {
      throw new AppError('VALIDATION_FAILED', "channel 'job' needs the device jobs engine, which this server does not run; use shadow, command or poll");
    }
    const pending: MigrationRow[] = [];
    let leased: OutboxRow[] = [];
    const result = await db.transaction(async (tx) => {
      const locked = await lockDeviceWithShadow(tx, deviceUuid, BROKER_SHADOW, brokerId);
      if (!locked) throw new AppError('DEVICE_NOT_FOUND', `no device with uuid ${deviceUuid}`);
      const { device, shadow: stored, broker } = locked;
      if (!broker) throw new AppError('BROKER_NOT_FOUND', `no broker with id ${brokerId}`);
      if (broker.status !== 'active') {
        throw new AppError('BROKER_NOT_ACTIVE', `broker ${broker.name} (id ${broker.id}) is ${broker.status}; only active brokers take devices`);
      }
      const target = assignmentOf(broker);
      const brokerView = { id: broker.id, name: broker.name, url: target.broker };
      const reported = stored?.document?.state.reported?.mqtt;
      const reportedHere = isObject(reported) && reported.brokerId === brokerId && reported.status === 'connected';

      if (device.mqtt_broker_id === brokerId) {
        const open = await openMigration(tx, deviceUuid);
        if (open && open.to_broker_id === brokerId) {
          return {
            success: true as const,
            changed: false,
            message: `device ${deviceUuid} is already being moved to broker ${broker.name}; nothing changed`,
            broker: brokerView,
            shadowUpdated: false,
            shadowVersion: stored?.version ?? 0,
            migration: { id: Number(open.id), status: open.status },
          };
        }
        if (reportedHere) {
          return {
            success: true as const,
            changed: false,
            message: `device ${deviceUuid} is already on broker ${broker.name}; nothing changed`,
            broker: brokerView,
            shadowUpdated: false,
            shadowVersion: stored?.version ?? 0,
            migration: null,
          };
        }
      }

      const now = Math.floor(clock.now() / 1000);
      const update = applyUpdate(stored?.document ?? null, { state: { desired: { mqtt: { ...target } as unknown as JsonObject } } }, now, {
        priorVersion: stored?.version ?? 0,
      });
      if (!update.ok) throw new AppError('INTERNAL', `could not write the assignment: ${update.error.message}`);
      const version = update.document.version;
      const fromBrokerId = (isObject(reported) && typeof reported.brokerId === 'number' ? reported.brokerId : null) ?? device.connected_broker_id ?? device.mqtt_broker_id;
      const commandId = o.channel === 'command' ? randomUUID() : null;
      // The shadow, the broker row, superseded rows, the new migration, the config NOTIFY (long-polls wake on commit),
      // the audit row: one statement.
      const { migration, superseded } = await recordAssignment(tx, {
        deviceUuid,
        fromBrokerId,
        toBrokerId: brokerId,
        channel: o.channel,
        shadowVersion: version,
        requestedBy: o.actor,
        timeoutSeconds,
        commandId,
        shadow: { deviceUuid, shadowName: BROKER_SHADOW, document: update.document, version },
      });
      pending.push(...superseded, migration); // announced after the commit: the rows it ended, then the new one
      const migrationId = Number(migration.id);
      // The device's account on the target first: it must be able to log in there before it is told to move.
      const provisionId = (await opts.provisioning?.forAssignment(tx, deviceUuid, broker, migrationId)) ?? null;

      // Tell the device through the broker(s) it is on now; a device we cannot reach converges on its
      // next connect (it always asks for its shadow then).
      const via = new Set<number>();
      for (const id of [device.connected_broker_id, isObject(reported) ? reported.brokerId : null, device.mqtt_broker_id]) {
        if (typeof id === 'number') via.add(id);
      }
      const rows: NewOutboxRow[] = [];
      if (o.channel === 'shadow') {
        const body = JSON.stringify(assignmentDelta(update.delta, update.document.metadata.desired, target as unknown as JsonObject, version, now));
        for (const viaBroker of via) {
          for (const ns of namespaces) {
            rows.push({
              kind: 'mqtt.publish',
              deviceUuid,
              migrationId,
              payload: { brokerId: viaBroker, topic: shadowTopic(deviceUuid, BROKER_SHADOW, 'update', 'delta', ns), body, qos: 1 },
            });
          }
        }
      } else if (o.channel === 'command' && commandId) {
        const sentAt = clock.now(); // one reading: expiresAt - timestamp is exactly the TTL
        const command: BrokerChangeCommand = {
          command: 'change-broker',
          brokerId,
          broker: { protocol: target.protocol, host: target.host, port: target.port },
          timestamp: new Date(sentAt).toISOString(),
          commandId,
          version,
          expiresAt: new Date(sentAt + commandTtlSeconds * 1000).toISOString(),
        };
        const body = JSON.stringify(command);
        for (const viaBroker of via) {
          rows.push({ kind: 'mqtt.publish', deviceUuid, migrationId, payload: { brokerId: viaBroker, topic: commandTopic(deviceUuid, 'broker-change'), body, qos: 1 } });
        }
      } else if (o.channel === 'job') {
        await opts.createChangeBrokerJob!(tx, { deviceUuid, migrationId, assignment: target, version });
      }
      // Channel `poll`: nothing to publish, the device's next config request answers it.
      for (const r of rows) r.dependsOn = provisionId; // null: known to need none (job rows: enqueue links them)
      if (rows.length > 0 && provisionId === null && outbox !== null) {
        // Nothing to wait for: leased to this instance, delivered right after the commit (no NOTIFY, no claim).
        leased = await enqueueLeased(tx, rows, outbox.leaseSeconds);
      } else if (rows.length > 0) {
        await enqueue(tx, rows);
      }
      return {
        success: true as const,
        changed: true,
        message: `device ${deviceUuid} assigned to broker ${broker.name}; ${
          rows.length > 0 || o.channel === 'job'
            ? `notification queued on the ${o.channel} channel`
            : o.channel === 'poll'
              ? 'the device learns it from its next config poll'
              : 'it converges on its next connect'
        }`,
        broker: brokerView,
        shadowUpdated: true,
        shadowVersion: version,
        migration: { id: Number(migration.id), status: migration.status },
      };
    }, { begin: lockDevicesSql(db, [deviceUuid]) }); // the shadow service's lock (no shadow batch interleaves), taken with BEGIN
    if (leased.length > 0) outbox?.deliverLeased(leased);
    pending.forEach(changed);
    if (result.changed) log.info({ deviceUuid, brokerId, migrationId: result.migration?.id, shadowVersion: result.shadowVersion }, 'device assigned');
    return result;
  }

  /**
   * Runs inside the shadow batch transaction: a device's report on `device-state` moves its open
   * migration. Only a report that arrived through the target broker and names it completes a move —
   * never the server's own writes (internal/HTTP origins are ignored).
   */
  const safeInt = (v: unknown): number | null => (typeof v === 'number' && Number.isSafeInteger(v) ? v : null);

  async function onShadowUpdates(q: Queryable, applied: AppliedUpdate[]): Promise<void> {
    for (const a of applied) {
      if (a.shadowName !== BROKER_SHADOW || a.origin.kind !== 'mqtt') continue;
      const sent = a.request.state.reported;
      if (!isObject(sent) || !isObject(sent.mqtt)) continue;
      const rep = a.document.state.reported?.mqtt;
      if (!isObject(rep)) continue;
      const status = rep.status;
      if (status !== 'connected' && status !== 'migrating' && status !== 'error') continue;
      const step = await recordMigrationReport(q, {
        deviceUuid: a.deviceUuid,
        status,
        brokerId: safeInt(rep.brokerId),
        targetBrokerId: safeInt(rep.targetBrokerId),
        viaBrokerId: a.origin.brokerId,
        error: status === 'error' ? (typeof rep.error === 'string' ? rep.error.slice(0, 500) : 'the device reported an error') : null,
      });
      if (!step) continue;
      // It can no longer log in where it left (a device whose brokers are all `static` has no accounts to withdraw).
      if (step.row.status === 'completed' && step.hasCredentials) await opts.provisioning?.afterMove(q, a.deviceUuid, step.row.to_broker_id);
      a.afterCommit.push(() => changed(step.row));
    }
  }

  /**
   * A device's `…/command/broker-change/ack`: validated, appended to the migration that sent the command.
   * Malformed acks and acks for unknown commands are dropped with a debug log; never throws.
   */
  const ackChains = new Map<string, Promise<void>>();
  function recordCommandAck(brokerId: number, deviceUuid: string, payload: Buffer | string): Promise<void> {
    // One device's acks are written one after another, in arrival order (`received` before `completed`): the
    // pool would otherwise run them side by side and commit them in any order.
    const prev = ackChains.get(deviceUuid) ?? Promise.resolve();
    const next = prev.then(() => writeCommandAck(brokerId, deviceUuid, payload));
    ackChains.set(deviceUuid, next);
    next
      .catch((err: unknown) => log.error({ err, deviceUuid }, 'recording a command ack failed; the ack is lost, the move goes on'))
      .finally(() => {
        if (ackChains.get(deviceUuid) === next) ackChains.delete(deviceUuid);
      });
    return next;
  }

  async function writeCommandAck(brokerId: number, deviceUuid: string, payload: Buffer | string): Promise<void> {
    const ack = parseCommandAck(payload);
    if (!ack) {
      log.debug({ deviceUuid, brokerId }, 'ignored a malformed command ack');
      return;
    }
    try {
      const row = await db.transaction(async (tx) => {
        const r = await appendCommandAck(tx, deviceUuid, ack.commandId, { status: ack.status, ...(ack.error !== undefined ? { error: ack.error } : {}), brokerId });
        const detail = { commandId: ack.commandId, ack: ack.status, ...(ack.error !== undefined ? { ackError: ack.error.slice(0, 500) } : {}), viaBrokerId: brokerId };
        if (r) await insertAudit(tx, migrationAudit(r, `device:${deviceUuid}`, 'migration.command_ack', detail));
        return r;
      });
      if (!row) {
        log.debug({ deviceUuid, brokerId, commandId: ack.commandId }, 'ignored an ack for a command this device was not sent');
        return;
      }
      log.info({ deviceUuid, brokerId, migrationId: Number(row.id), commandId: ack.commandId, status: ack.status, error: ack.error }, `command ${ack.status}`);
      changed(row);
    } catch (err) {
      log.warn({ err, deviceUuid, commandId: ack.commandId }, 'could not record a command ack; it is lost (the move itself is driven by reports)');
    }
  }

  async function onNotified(migrationId: number): Promise<void> {
    changed(await markNotified(db, migrationId));
  }

  async function sweepTimeouts(): Promise<number> {
    const rows = await db.transaction(async (tx) => {
      const timedOut = await timeOutOverdue(tx);
      for (const r of timedOut) await insertAudit(tx, migrationAudit(r, 'system', 'migration.timed_out'));
      return timedOut;
    });
    for (const r of rows) {
      log.warn({ deviceUuid: r.device_uuid, migrationId: Number(r.id), toBrokerId: r.to_broker_id }, 'migration timed out');
      changed(r);
    }
    return rows.length;
  }

  return {
    assign,
    /** Binds this instance's outbox dispatcher (created after this service): notifications leave at commit. */
    bindOutbox(d: LeasedDelivery): void {
      outbox = d;
    },
    onShadowUpdates,
    onNotified,
    recordCommandAck,
    sweepTimeouts,
    async get(id: number): Promise<Migration> {
      const row = await getMigration(db, id);
      if (!row) throw new AppError('MIGRATION_NOT_FOUND', `no migration with id ${id}`);
      return toMigration(row);
    },
    async list(f: MigrationFilter): Promise<{ items: Migration[]; total: number; limit: number; offset: number }> {
      const { rows, total } = await listMigrations(db, f);
      return { items: rows.map(toMigration), total, limit: f.limit, offset: f.offset };
    },
  };
}

export type AssignmentService = ReturnType<typeof createAssignmentService>;

/**
 * The `update/delta` an assignment publishes: AWS's delta, except that `mqtt` is always the whole assignment, leaves
 * the device already reports included. AWS's rule (only the leaves that differ) would publish nothing — or only
 * some leaves — when a device in the middle of a move is assigned back to the broker it still reports: it would
 * go on moving, never told. With the whole target the agent also starts a move straight from the delta.
 */
export function assignmentDelta(delta: ShadowDeltaMessage | undefined, desiredMeta: JsonObject | undefined, target: JsonObject, version: number, now: number): ShadowDeltaMessage {
  const state: JsonObject = { ...(delta?.state ?? {}), mqtt: target };
  return { state, metadata: { ...(delta?.metadata ?? {}), ...projectMetadata({ mqtt: target }, desiredMeta) }, version, timestamp: now };
}
