/** All SQL of the broker registry (`mqtt_broker_config`). Every function takes a {@link Queryable}. */
import type { SecretBox } from '../crypto/secret-box.ts';
import type { Queryable } from '../db/db.ts';
import type { Logger } from '../log.ts';

export type BrokerProtocol = 'mqtt' | 'mqtts' | 'ws' | 'wss';
export type BrokerStatus = 'active' | 'draining' | 'disabled';
export type BrokerProvisioner = 'embedded' | 'mosquitto-dynsec' | 'static';
export type MqttProtocolVersion = 4 | 5;

export interface BrokerRow {
  id: number;
  name: string;
  protocol: BrokerProtocol;
  host: string;
  port: number;
  protocol_version: MqttProtocolVersion;
  status: BrokerStatus;
  ca_cert: string | null;
  username: string | null;
  /** secret-box ciphertext; never leaves the service layer except decrypted for the broker pool. */
  password_enc: string | null;
  provisioner: BrokerProvisioner;
  created_at: Date;
  updated_at: Date;
}

const COLUMNS =
  'id, name, protocol, host, port, protocol_version, status, ca_cert, username, password_enc, provisioner, created_at, updated_at';

/** A broker record as stored (password already encrypted). */
export interface BrokerRecord {
  name: string;
  protocol: BrokerProtocol;
  host: string;
  port: number;
  protocolVersion: MqttProtocolVersion;
  status: BrokerStatus;
  provisioner: BrokerProvisioner;
  username: string | null;
  passwordEnc: string | null;
  caCert: string | null;
}

/** Record field → column. The only column names an UPDATE may name (values always go as parameters). */
const COLUMN_OF: Record<keyof BrokerRecord, string> = {
  name: 'name',
  protocol: 'protocol',
  host: 'host',
  port: 'port',
  protocolVersion: 'protocol_version',
  status: 'status',
  provisioner: 'provisioner',
  username: 'username',
  passwordEnc: 'password_enc',
  caCert: 'ca_cert',
};

/** Inserts a broker; null when the name is taken (no exception, so an open transaction stays usable). */
export async function insertBroker(q: Queryable, r: BrokerRecord): Promise<BrokerRow | null> {
  const res = await q.query<BrokerRow>(
    `INSERT INTO mqtt_broker_config (name, protocol, host, port, protocol_version, status, provisioner, username, password_enc, ca_cert)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
     ON CONFLICT (name) DO NOTHING
     RETURNING ${COLUMNS}`,
    [r.name, r.protocol, r.host, r.port, r.protocolVersion, r.status, r.provisioner, r.username, r.passwordEnc, r.caCert],
  );
  return res.rows[0] ?? null;
}

export async function listBrokers(q: Queryable): Promise<BrokerRow[]> {
  const res = await q.query<BrokerRow>(`SELECT ${COLUMNS} FROM mqtt_broker_config ORDER BY id`);
  return res.rows;
}

/** One broker; `lock: 'update'` takes a row lock (for changes), `'share'` keeps it from changing under a reader. */
export async function getBroker(q: Queryable, id: number, opts: { lock?: 'update' | 'share' } = {}): Promise<BrokerRow | null> {
  const lock = opts.lock === 'update' ? ' FOR UPDATE' : opts.lock === 'share' ? ' FOR SHARE' : '';
  const res = await q.query<BrokerRow>(`SELECT ${COLUMNS} FROM mqtt_broker_config WHERE id = $1${lock}`, [id]);
  return res.rows[0] ?? null;
}

/**
 * SQL of one expression: broker `param` (e.g. `$3`) as JSON, its row share-locked (like `getBroker(…, {lock:
 * 'share'})`), or NULL — for a statement that reads the broker beside something else; {@link brokerRowFromJson}
 * reads it back.
 */
export const brokerJsonSharedSql = (param: string): string =>
  `(SELECT to_json(b) FROM (SELECT ${COLUMNS} FROM mqtt_broker_config WHERE id = ${param} FOR SHARE) b)`;

/** A broker row that came as JSON: its timestamps as `Date`s, like a read row. */
export function brokerRowFromJson(r: Record<string, unknown>): BrokerRow {
  return { ...r, created_at: new Date(r.created_at as string), updated_at: new Date(r.updated_at as string) } as unknown as BrokerRow;
}

/** True when a broker other than `exceptId` has this name. */
export async function brokerNameTaken(q: Queryable, name: string, exceptId: number): Promise<boolean> {
  const res = await q.query('SELECT 1 FROM mqtt_broker_config WHERE name = $1 AND id <> $2', [name, exceptId]);
  return res.rows.length > 0;
}

/** Sets the given fields (and `updated_at`); null when there is no such broker. */
export async function updateBroker(q: Queryable, id: number, fields: Partial<BrokerRecord>): Promise<BrokerRow | null> {
  const sets: string[] = [];
  const params: unknown[] = [id];
  for (const [key, column] of Object.entries(COLUMN_OF) as Array<[keyof BrokerRecord, string]>) {
    if (!(key in fields)) continue;
    params.push(fields[key] ?? null);
    sets.push(`${column} = $${params.length}`);
  }
  sets.push('updated_at = now()');
  const res = await q.query<BrokerRow>(`UPDATE mqtt_broker_config SET ${sets.join(', ')} WHERE id = $1 RETURNING ${COLUMNS}`, params);
  return res.rows[0] ?? null;
}

/** Deletes a broker; false when there was none. Fails with a foreign-key violation (23503) if still referenced. */
export async function deleteBroker(q: Queryable, id: number): Promise<boolean> {
  const res = await q.query<{ id: number }>('DELETE FROM mqtt_broker_config WHERE id = $1 RETURNING id', [id]);
  return res.rows.length > 0;
}

/** How many devices are assigned to the broker (`devices.mqtt_broker_id`). */
export async function countAssignedDevices(q: Queryable, id: number): Promise<number> {
  const res = await q.query<{ n: number }>('SELECT count(*)::int AS n FROM devices WHERE mqtt_broker_id = $1', [id]);
  return res.rows[0]?.n ?? 0;
}

/** Ids and names of the brokers whose status is `active` (readiness: each must be connected). */
export async function listActiveBrokers(q: Queryable): Promise<Array<{ id: number; name: string }>> {
  const res = await q.query<{ id: number; name: string }>("SELECT id, name FROM mqtt_broker_config WHERE status = 'active' ORDER BY id");
  return res.rows;
}

/** SQLSTATE of a database error (`23505` unique violation, `23503` foreign-key violation), if any. */
export function sqlState(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined;
}

/** What the broker pool needs to connect: the record with its password decrypted. */
export interface BrokerConnection {
  id: number;
  name: string;
  protocol: BrokerProtocol;
  host: string;
  port: number;
  protocolVersion: MqttProtocolVersion;
  status: BrokerStatus;
  provisioner: BrokerProvisioner;
  username?: string;
  password?: string;
  caCert?: string;
  /**
   * Set when the stored password could not be decrypted (the key changed since it was stored: `SWITCHYARD_SECRET`
   * or `secret.key`); `password` is then absent. Fix: PATCH the broker's password again.
   */
  secretError?: string;
}

/**
 * Every broker with its credentials in clear, for the broker pool (never for an HTTP answer). One broker whose
 * password cannot be decrypted does not hide the others: it comes back with `secretError` (and is logged).
 */
export async function listBrokerConnections(db: Queryable, secretBox: SecretBox, log?: Logger): Promise<BrokerConnection[]> {
  const rows = await listBrokers(db);
  return rows.map((row) => {
    const conn: BrokerConnection = {
      id: row.id,
      name: row.name,
      protocol: row.protocol,
      host: row.host,
      port: row.port,
      protocolVersion: Number(row.protocol_version) as MqttProtocolVersion,
      status: row.status,
      provisioner: row.provisioner,
    };
    if (row.username !== null) conn.username = row.username;
    if (row.ca_cert !== null) conn.caCert = row.ca_cert;
    if (row.password_enc !== null) {
      try {
        conn.password = secretBox.decrypt(row.password_enc);
      } catch (err) {
        conn.secretError = `the stored password of broker ${row.id} cannot be decrypted (${(err as Error).message}); set it again with PATCH /api/v1/brokers/${row.id}`;
        log?.error({ brokerId: row.id, name: row.name }, conn.secretError);
      }
    }
    return conn;
  });
}
