/**
 * The MQTT command channel (DESIGN §4, docs/protocol.md): `iot/device/{uuid}/command/broker-change`, acknowledged
 * on `…/command/broker-change/ack` with `{commandId, status: received|completed|failed, error?}`.
 *
 * A command is handled in this order:
 * 1. not JSON / no `commandId` → dropped with a warning (there is nothing to acknowledge);
 * 2. a `commandId` already handled → dropped (QoS 1 may deliver twice; the device is on both brokers mid-move);
 * 3. `received` is acknowledged at once;
 * 4. `command` is not `change-broker` → `failed` `unknown command`; a malformed body → `failed` with the problem;
 *    `expiresAt` in the past → `failed` `expired`, NOT acted on — the device asks its shadow instead (`refresh`),
 *    so it still converges on `desired.mqtt`, the source of truth, rather than on a stale order;
 * 5. otherwise the assignment `{target, version}` goes to the migration machine (which deduplicates by version
 *    across every channel) and the command waits for the machine: `completed` once the device is idle on the
 *    target at a version ≥ the command's, `failed` (`superseded by assignment vN`) when a newer assignment to
 *    another broker wins. Attempt failures are not acks: the machine retries with backoff and reports them on the
 *    shadow (`reported.mqtt.status: "error"`); the command stays pending until one of the two ends above.
 *
 * Pending commands are bounded (`maxPending`, default 16; the oldest is failed `too many pending commands`) and
 * so is the memory of handled ids (`rememberIds`, default 64).
 */
import type { Logger } from 'pino';
import { commandTopic } from '@switchyard/protocol';
import { brokerTargetFromDesired, formatBrokerUrl, sameBroker, type BrokerProtocol, type BrokerTarget } from '../broker-target.ts';
import type { Clock } from '../clock.ts';
import type { MigrationState, MigrationStateEvent } from '../migration/migration-types.ts';

/** Ack statuses (docs/protocol.md). */
export type CommandAckStatus = 'received' | 'completed' | 'failed';

/** Options of {@link CommandChannel}. */
export interface CommandChannelOptions {
  deviceUuid: string;
  clock: Clock;
  log: Logger;
  /** Publishes an ack (QoS 1, through the publish queue: it survives reconnects and the switch). */
  publish(topic: string, payload: string): Promise<void>;
  /** Feeds an assignment to the migration machine. */
  assign(assignment: { target: BrokerTarget; version: number }): void;
  /** The migration machine's state now (null before boot). */
  state(): MigrationState | null;
  /** Asks the source of truth (a `device-state` shadow `get`); used after an expired command. */
  refresh(reason: string): void;
  /** Most commands waiting for their move; default 16. */
  maxPending?: number;
  /** Command ids remembered to drop redeliveries; default 64. */
  rememberIds?: number;
}

interface Pending {
  commandId: string;
  target: BrokerTarget;
  version: number;
}

/** See the module comment. */
export class CommandChannel {
  readonly #o: CommandChannelOptions;
  readonly #log: Logger;
  readonly #topic: string;
  readonly #ackTopic: string;
  readonly #pending = new Map<string, Pending>();
  readonly #seen = new Set<string>();

  constructor(options: CommandChannelOptions) {
    this.#o = options;
    this.#log = options.log.child({ component: 'command-channel' });
    this.#topic = commandTopic(options.deviceUuid, 'broker-change');
    this.#ackTopic = commandTopic(options.deviceUuid, 'broker-change', true);
  }

  /** Topics to subscribe to on every connection. */
  topics(): string[] {
    return [this.#topic];
  }

  /** Feed every message of every connection; ignores other topics. */
  handleMessage(topic: string, payload: Buffer | string): void {
    if (topic !== this.#topic) return;
    let body: unknown;
    try {
      body = JSON.parse(typeof payload === 'string' ? payload : payload.toString('utf8'));
    } catch {
      this.#log.warn({ topic }, 'ignored a command that is not JSON');
      return;
    }
    const o = typeof body === 'object' && body !== null && !Array.isArray(body) ? (body as Record<string, unknown>) : null;
    const commandId = o?.commandId;
    if (!o || typeof commandId !== 'string' || commandId.length === 0 || commandId.length > 128) {
      this.#log.warn({ topic }, 'ignored a command without a commandId (nothing to acknowledge)');
      return;
    }
    if (this.#seen.has(commandId)) {
      this.#log.debug({ commandId }, 'command delivered again; already handled');
      return;
    }
    this.#remember(commandId);
    this.#ack(commandId, 'received');

    if (o.command !== 'change-broker') {
      this.#ack(commandId, 'failed', 'unknown command');
      return;
    }
    const parsed = parseBrokerChange(o);
    if (!parsed.ok) {
      this.#ack(commandId, 'failed', `invalid command: ${parsed.error}`);
      return;
    }
    if (parsed.expiresAt <= this.#o.clock.now()) {
      this.#log.info({ commandId, expiresAt: new Date(parsed.expiresAt).toISOString() }, 'command expired before it arrived; not acting on it, asking the shadow instead');
      this.#ack(commandId, 'failed', 'expired');
      this.#o.refresh(`expired command ${commandId}`);
      return;
    }
    const pending: Pending = { commandId, target: parsed.target, version: parsed.version };
    // Already there (another channel was faster, or a retry): done.
    if (this.#settle(pending)) return;
    this.#pending.set(commandId, pending);
    this.#boundPending();
    this.#log.info({ commandId, brokerId: parsed.target.brokerId, version: parsed.version }, 'broker-change command accepted');
    this.#o.assign({ target: parsed.target, version: parsed.version });
    this.#settle(pending);
  }

  /** Feed every `migration:state` event: pending commands complete or fail with the machine. */
  onMigrationState(_event: MigrationStateEvent): void {
    for (const p of [...this.#pending.values()]) this.#settle(p);
  }

  /** Forgets pending commands (agent stopping); their moves may still finish, unacknowledged. */
  close(): void {
    this.#pending.clear();
  }

  /** Acks `completed`/`failed` when the machine's state decides the command; returns true if it did. */
  #settle(p: Pending): boolean {
    const s = this.#o.state();
    if (!s) return false;
    let status: 'completed' | 'failed' | null = null;
    let error: string | undefined;
    if (s.name === 'idle' && sameBroker(s.current, p.target) && s.appliedVersion >= p.version) {
      status = 'completed';
    } else if (s.name === 'idle' && s.appliedVersion >= p.version) {
      status = 'failed';
      error = `superseded by assignment v${s.appliedVersion} to broker ${s.current.brokerId}`;
    } else if (s.name !== 'idle' && s.assignmentVersion > p.version && !sameBroker(s.target, p.target)) {
      status = 'failed';
      error = `superseded by assignment v${s.assignmentVersion} to broker ${s.target.brokerId}`;
    }
    if (!status) return false;
    this.#pending.delete(p.commandId);
    this.#ack(p.commandId, status, error);
    return true;
  }

  #ack(commandId: string, status: CommandAckStatus, error?: string): void {
    const body = JSON.stringify({ commandId, status, ...(error !== undefined ? { error } : {}) });
    this.#log.debug({ commandId, status, error }, 'command ack');
    this.#o.publish(this.#ackTopic, body).catch((err: unknown) => this.#log.warn({ err: (err as Error).message, commandId, status }, 'command ack not sent; the move itself is reported on the shadow'));
  }

  #remember(commandId: string): void {
    this.#seen.add(commandId);
    const max = this.#o.rememberIds ?? 64;
    while (this.#seen.size > max) this.#seen.delete(this.#seen.values().next().value!);
  }

  #boundPending(): void {
    const max = this.#o.maxPending ?? 16;
    while (this.#pending.size > max) {
      const oldest = this.#pending.values().next().value!;
      this.#pending.delete(oldest.commandId);
      this.#ack(oldest.commandId, 'failed', 'too many pending commands');
    }
  }
}

/** A validated `change-broker` command. */
type ParsedBrokerChange = { ok: true; target: BrokerTarget; version: number; expiresAt: number } | { ok: false; error: string };

/** Validates the body of a `change-broker` command (docs/protocol.md). Never throws. */
export function parseBrokerChange(o: Record<string, unknown>): ParsedBrokerChange {
  const b = o.broker;
  if (typeof b !== 'object' || b === null || Array.isArray(b)) return { ok: false, error: 'broker: expected {protocol, host, port}' };
  const { protocol, host, port } = b as Record<string, unknown>;
  const url = typeof protocol === 'string' && typeof host === 'string' && typeof port === 'number' ? formatBrokerUrl(protocol as BrokerProtocol, host, port) : undefined;
  const target = brokerTargetFromDesired({ brokerId: o.brokerId, protocol, host, port, broker: url }, 'command');
  if (!target.ok) return { ok: false, error: target.errors.join('; ') };
  const version = o.version;
  if (typeof version !== 'number' || !Number.isSafeInteger(version) || version < 1) return { ok: false, error: 'version: expected a positive integer (the shadow version)' };
  const expiresAt = typeof o.expiresAt === 'string' ? Date.parse(o.expiresAt) : typeof o.expiresAt === 'number' ? o.expiresAt : Number.NaN;
  if (!Number.isFinite(expiresAt)) return { ok: false, error: 'expiresAt: expected an ISO 8601 instant' };
  return { ok: true, target: target.value, version, expiresAt };
}
