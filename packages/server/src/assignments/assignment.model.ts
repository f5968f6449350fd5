/**
 * The shapes of broker assignment: `desired.mqtt`, migrations as the API shows them, the answer of an
 * assignment, and the `broker-change` command with its acks. No I/O; `assignment.service.ts` uses them.
 */
import type { BrokerRow } from '../brokers/brokers.store.ts';
import { brokerUrl } from '../brokers/brokers.service.ts';
import type { AssignmentChannel, CommandAck, MigrationRow } from './assignments.store.ts';

/** `desired.mqtt` of the `device-state` shadow. */
export interface MqttAssignment {
  brokerId: number;
  broker: string;
  protocol: string;
  host: string;
  port: number;
}

export interface Migration {
  id: number;
  deviceUuid: string;
  fromBrokerId: number | null;
  toBrokerId: number;
  channel: AssignmentChannel;
  status: MigrationRow['status'];
  shadowVersion: number;
  attempts: number;
  error: string | null;
  requestedBy: string;
  deadlineAt: string;
  createdAt: string;
  notifiedAt: string | null;
  migratingAt: string | null;
  completedAt: string | null;
  finishedAt: string | null;
  updatedAt: string;
  /** Id of the `broker-change` command sent (channel `command`), else null. */
  commandId: string | null;
  /** The device's acks of that command, oldest first (bounded). */
  acks: CommandAck[];
}

export interface AssignResult {
  success: true;
  changed: boolean;
  message: string;
  broker: { id: number; name: string; url: string };
  shadowUpdated: boolean;
  shadowVersion: number;
  migration: { id: number; status: string } | null;
}

/** The body of `iot/device/{uuid}/command/broker-change` (docs/protocol.md). */
export interface BrokerChangeCommand {
  command: 'change-broker';
  brokerId: number;
  broker: { protocol: string; host: string; port: number };
  /** When the command was issued (ISO 8601). */
  timestamp: string;
  commandId: string;
  /** The `device-state` shadow version of the assignment: the device deduplicates channels by it. */
  version: number;
  /** After this instant (ISO 8601) the device must not act on it (ack `failed`, `expired`). */
  expiresAt: string;
}

/** A validated `…/command/broker-change/ack` body. */
export interface CommandAckMessage {
  commandId: string;
  status: CommandAck['status'];
  error?: string;
}

const ACK_STATUSES: ReadonlySet<string> = new Set(['received', 'completed', 'failed']);
// Control characters (NUL included) or a UTF-16 surrogate that is not part of a pair.
// eslint-disable-next-line no-control-regex
const UNSTORABLE_RE = /[\u0000-\u001f\u007f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// eslint-disable-next-line no-control-regex
const UNSTORABLE_RE_G = /\u0000|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

/** Validates an ack payload; returns null when it is malformed (the caller logs and drops it). */
export function parseCommandAck(payload: Buffer | string): CommandAckMessage | null {
  let body: unknown;
  try {
    body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
  } catch {
    return null;
  }
  if (!isObject(body)) return null;
  const { commandId, status, error } = body;
  // A command id is ours (a UUID): control characters or unpaired surrogates mean garbage, not a lookup (PostgreSQL
  // refuses a NUL, and each such ack cost a failed query and a warning; found by test/integration/mqtt-fuzz.test.ts).
  if (typeof commandId !== 'string' || commandId.length === 0 || commandId.length > 128 || UNSTORABLE_RE.test(commandId)) return null;
  if (typeof status !== 'string' || !ACK_STATUSES.has(status)) return null;
  if (error !== undefined && error !== null && typeof error !== 'string') return null;
  // The device's own words are kept, minus what cannot be stored.
  return { commandId, status: status as CommandAck['status'], ...(typeof error === 'string' ? { error: error.slice(0, 500).replace(UNSTORABLE_RE_G, '\ufffd') } : {}) };
}

const iso = (d: Date | string | null): string | null => (d === null ? null : new Date(d).toISOString());

export function toMigration(r: MigrationRow): Migration {
  return {
    id: Number(r.id),
    deviceUuid: r.device_uuid,
    fromBrokerId: r.from_broker_id,
    toBrokerId: r.to_broker_id,
    channel: r.channel,
    status: r.status,
    shadowVersion: Number(r.shadow_version),
    attempts: r.attempts,
    error: r.error,
    requestedBy: r.requested_by,
    deadlineAt: iso(r.deadline_at)!,
    createdAt: iso(r.created_at)!,
    notifiedAt: iso(r.notified_at),
    migratingAt: iso(r.migrating_at),
    completedAt: iso(r.completed_at),
    finishedAt: iso(r.finished_at),
    updatedAt: iso(r.updated_at)!,
    commandId: r.command_id ?? null,
    acks: Array.isArray(r.acks) ? r.acks : [],
  };
}

export function assignmentOf(b: BrokerRow): MqttAssignment {
  return { brokerId: b.id, broker: brokerUrl(b.protocol, b.host, b.port), protocol: b.protocol, host: b.host, port: b.port };
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

