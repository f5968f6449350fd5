/**
 * The broker registry: rules around `mqtt_broker_config`.
 *
 * - The server's password for a broker is write-only: encrypted with the secret box before it reaches the
 *   database, never returned by the API, never logged or audited (only *that* it changed). Only
 *   {@link listBrokerConnections} decrypts it, for the broker pool.
 * - Every committed change writes an audit row in the same transaction, then calls `onChange()` (the broker
 *   pool refreshes; other instances hear a NOTIFY).
 * - A `caCert` is checked before it is stored (`broker-tls.ts`: PEM certificates that parse, none expired, no
 *   key) and stored re-encoded; it is refused on a plain `mqtt`/`ws` broker, where it would never be used.
 * - `connection` (when the server runs a broker pool) is this instance's view of its connection to the broker,
 *   with the last error — e.g. why TLS verification failed.
 */
import { isIP } from 'node:net';
import { insertAudit } from '../audit/audit.store.ts';
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Db } from '../db/db.ts';
import { AppError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { parseCaCert } from './broker-tls.ts';
import {
  brokerNameTaken,
  countAssignedDevices,
  deleteBroker,
  getBroker,
  insertBroker,
  listBrokers,
  sqlState,
  updateBroker,
  type BrokerProtocol,
  type BrokerProvisioner,
  type BrokerRecord,
  type BrokerRow,
  type BrokerStatus,
  type MqttProtocolVersion,
} from './brokers.store.ts';

export type { BrokerProtocol, BrokerProvisioner, BrokerStatus, MqttProtocolVersion };
/** For the broker pool; lives in the store (SQL + decryption), re-exported here for discoverability. */
export { listBrokerConnections, type BrokerConnection } from './brokers.store.ts';

/** A broker as the API shows it: no password, no CA text, only whether they are set. */
export interface Broker {
  id: number;
  name: string;
  protocol: BrokerProtocol;
  host: string;
  port: number;
  protocolVersion: MqttProtocolVersion;
  status: BrokerStatus;
  provisioner: BrokerProvisioner;
  username: string | null;
  hasPassword: boolean;
  hasCaCert: boolean;
  /** `protocol://host:port` (IPv6 hosts in brackets). */
  url: string;
  createdAt: string;
  updatedAt: string;
  /** This server instance's connection to the broker; absent when it holds none (disabled broker, no pool). */
  connection?: BrokerConnectionState;
}

/** One broker connection as the answering instance's pool sees it. */
export interface BrokerConnectionState {
  connected: boolean;
  /** This instance owns the broker's request subscriptions. */
  owner: boolean;
  /** Why the last attempt failed or the connection was lost (cleared on connect), e.g. a TLS verification failure. */
  lastError?: string;
}

export interface NewBroker {
  name: string;
  protocol: BrokerProtocol;
  host: string;
  port: number;
  /** MQTT protocol level: 4 (3.1.1, default) or 5. */
  protocolVersion?: MqttProtocolVersion | undefined;
  username?: string | null | undefined;
  password?: string | null | undefined;
  caCert?: string | null | undefined;
  /** Default `static`. */
  provisioner?: BrokerProvisioner | undefined;
  /** Default `active`. */
  status?: BrokerStatus | undefined;
}

/** Fields to change; `null` clears `username`, `password` or `caCert`. */
export type BrokerPatch = Partial<NewBroker>;

export interface BrokerServiceDeps {
  db: Db;
  log: Logger;
  secretBox: SecretBox;
  /** Called after every committed change (the lead wires the pool refresh and a NOTIFY). Failures are logged. */
  onChange?: (() => void | Promise<void>) | undefined;
  /** The broker pool's connection states (`pool.status()`), shown as each broker's `connection`. */
  connections?: (() => ReadonlyArray<BrokerConnectionState & { brokerId: number }>) | undefined;
  /** Current time in ms (to refuse an expired `caCert`); default `Date.now`. */
  now?: (() => number) | undefined;
}

export interface BrokerService {
  list(): Promise<Broker[]>;
  get(id: number): Promise<Broker>;
  create(input: NewBroker, actor: string): Promise<Broker>;
  update(id: number, patch: BrokerPatch, actor: string): Promise<Broker>;
  remove(id: number, actor: string): Promise<void>;
}

/** `mqtt://host:port`, with an IPv6 literal in brackets. */
export function brokerUrl(protocol: string, host: string, port: number): string {
  return `${protocol}://${isIP(host) === 6 ? `[${host}]` : host}:${port}`;
}

export function toBroker(row: BrokerRow): Broker {
  return {
    id: row.id,
    name: row.name,
    protocol: row.protocol,
    host: row.host,
    port: row.port,
    protocolVersion: Number(row.protocol_version) as MqttProtocolVersion,
    status: row.status,
    provisioner: row.provisioner,
    username: row.username,
    hasPassword: row.password_enc !== null,
    hasCaCert: row.ca_cert !== null,
    url: brokerUrl(row.protocol, row.host, row.port),
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString(),
  };
}

/** A 400 naming one body field, in the same shape as schema validation errors. */
function invalidField(field: string, message: string): AppError {
  return new AppError('VALIDATION_FAILED', `${field} ${message}`, { fields: [{ field, message }] });
}

const TLS_PROTOCOLS: readonly BrokerProtocol[] = ['mqtts', 'wss'];

function notFound(id: number): AppError {
  return new AppError('BROKER_NOT_FOUND', `No broker with id ${id}`);
}

function nameTaken(name: string): AppError {
  return new AppError('BROKER_NAME_TAKEN', `Another broker is already named "${name}"`);
}

/** What the audit row says about a change: field names, and values only for non-secret fields. */
function auditFields(input: BrokerPatch): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    if (key === 'password') out.password = value === null ? 'cleared' : 'set';
    else if (key === 'caCert') out.caCert = value === null ? 'cleared' : 'set';
    else out[key] = value;
  }
  return out;
}

export function createBrokerService(deps: BrokerServiceDeps): BrokerService {
  const log = deps.log.child({ component: 'brokers' });

  const changed = (brokerId: number, action: string): void => {
    if (deps.onChange === undefined) return;
    const failed = (err: unknown) => log.error({ err, brokerId, action }, 'broker change committed, but notifying the broker pool failed; it picks the change up at its next refresh');
    try {
      const result = deps.onChange();
      if (result instanceof Promise) result.catch(failed);
    } catch (err) {
      failed(err);
    }
  };

  const encrypt = (password: string | null | undefined): string | null | undefined =>
    password === undefined ? undefined : password === null ? null : deps.secretBox.encrypt(password);

  /** The checked, re-encoded CA text; throws a 400 naming `body.caCert`. */
  const checkCaCert = (value: string | null | undefined): string | null | undefined => {
    if (value === undefined || value === null) return value;
    const parsed = parseCaCert(value, (deps.now ?? Date.now)());
    if (!parsed.ok) throw invalidField('body.caCert', parsed.message);
    return parsed.pem;
  };
  const checkCaCertProtocol = (caCert: string | null | undefined, protocol: BrokerProtocol): void => {
    if (caCert !== undefined && caCert !== null && !TLS_PROTOCOLS.includes(protocol)) {
      throw invalidField('body.caCert', `applies to mqtts and wss brokers only (this broker's protocol is ${protocol}); send null to clear it`);
    }
  };

  const view = (row: BrokerRow): Broker => {
    const broker = toBroker(row);
    const state = deps.connections?.().find((c) => c.brokerId === row.id);
    if (state !== undefined) {
      broker.connection = { connected: state.connected, owner: state.owner, ...(state.lastError !== undefined ? { lastError: state.lastError } : {}) };
    }
    return broker;
  };

  return {
    async list() {
      return (await listBrokers(deps.db)).map(view);
    },

    async get(id) {
      const row = await getBroker(deps.db, id);
      if (row === null) throw notFound(id);
      return view(row);
    },

    async create(input, actor) {
      const caCert = checkCaCert(input.caCert);
      checkCaCertProtocol(caCert, input.protocol);
      const record: BrokerRecord = {
        name: input.name,
        protocol: input.protocol,
        host: input.host,
        port: input.port,
        protocolVersion: input.protocolVersion ?? 4,
        status: input.status ?? 'active',
        provisioner: input.provisioner ?? 'static',
        username: input.username ?? null,
        passwordEnc: encrypt(input.password) ?? null,
        caCert: caCert ?? null,
      };
      let row: BrokerRow | null;
      try {
        row = await deps.db.transaction(async (tx) => {
          const inserted = await insertBroker(tx, record);
          if (inserted === null) throw nameTaken(input.name);
          await insertAudit(tx, { actor, action: 'broker.create', targetType: 'broker', targetId: String(inserted.id), details: auditFields(input) });
          return inserted;
        });
      } catch (err) {
        throw sqlState(err) === '23505' ? nameTaken(input.name) : err;
      }
      log.info({ brokerId: row.id, name: row.name, url: brokerUrl(row.protocol, row.host, row.port) }, 'broker registered');
      changed(row.id, 'create');
      return view(row);
    },

    async update(id, patch, actor) {
      const fields: Partial<BrokerRecord> = {};
      if (patch.name !== undefined) fields.name = patch.name;
      if (patch.protocol !== undefined) fields.protocol = patch.protocol;
      if (patch.host !== undefined) fields.host = patch.host;
      if (patch.port !== undefined) fields.port = patch.port;
      if (patch.protocolVersion !== undefined) fields.protocolVersion = patch.protocolVersion;
      if (patch.status !== undefined) fields.status = patch.status;
      if (patch.provisioner !== undefined) fields.provisioner = patch.provisioner;
      if (patch.username !== undefined) fields.username = patch.username;
      const caCert = checkCaCert(patch.caCert);
      if (caCert !== undefined) fields.caCert = caCert;
      const passwordEnc = encrypt(patch.password);
      if (passwordEnc !== undefined) fields.passwordEnc = passwordEnc;

      let row: BrokerRow;
      try {
        row = await deps.db.transaction(async (tx) => {
          const current = await getBroker(tx, id, { lock: 'update' });
          if (current === null) throw notFound(id);
          checkCaCertProtocol(caCert, fields.protocol ?? current.protocol);
          if (fields.name !== undefined && (await brokerNameTaken(tx, fields.name, id))) throw nameTaken(fields.name);
          const updated = await updateBroker(tx, id, fields);
          if (updated === null) throw notFound(id);
          await insertAudit(tx, { actor, action: 'broker.update', targetType: 'broker', targetId: String(id), details: auditFields(patch) });
          return updated;
        });
      } catch (err) {
        throw sqlState(err) === '23505' && patch.name !== undefined ? nameTaken(patch.name) : err;
      }
      log.info({ brokerId: id, fields: Object.keys(auditFields(patch)) }, 'broker updated');
      changed(id, 'update');
      return view(row);
    },

    async remove(id, actor) {
      const inUse = (count: number | null) =>
        new AppError(
          'BROKER_IN_USE',
          count === null
            ? `Broker ${id} is still referenced (devices or migrations); move its devices to another broker first`
            : `${count} device${count === 1 ? ' is' : 's are'} assigned to broker ${id}; move ${count === 1 ? 'it' : 'them'} to another broker first`,
          count === null ? undefined : { deviceCount: count },
        );
      try {
        await deps.db.transaction(async (tx) => {
          const current = await getBroker(tx, id, { lock: 'update' });
          if (current === null) throw notFound(id);
          const count = await countAssignedDevices(tx, id);
          if (count > 0) throw inUse(count);
          await deleteBroker(tx, id);
          await insertAudit(tx, { actor, action: 'broker.delete', targetType: 'broker', targetId: String(id), details: { name: current.name } });
        });
      } catch (err) {
        // A device assigned between the count and the delete (or a row of another table) still refers to it.
        throw sqlState(err) === '23503' ? inUse(null) : err;
      }
      log.info({ brokerId: id }, 'broker deleted');
      changed(id, 'delete');
    },
  };
}
