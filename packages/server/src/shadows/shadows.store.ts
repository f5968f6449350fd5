/**
 * All SQL of the shadow service. Batches are encoded as ONE JSON parameter
 * (`jsonb_to_recordset`), which PostgreSQL parses far faster than `pg` array escaping
 * (stack-notes: ≈ 56 µs per row for arrays).
 */
import { sqlLiteral, type Db, type NamedSql, type Queryable } from '../db/db.ts';
import type { JsonObject, ShadowDocument } from '@switchyard/protocol';

export interface DeviceRoute {
  uuid: string;
  /** The broker the device is assigned to (`devices.mqtt_broker_id`). */
  brokerId: number | null;
  /** The broker the device last announced itself on (presence), if known. */
  connectedBrokerId: number | null;
}

/** A stored shadow row; `deleted` rows keep their version so numbering continues. */
export interface StoredShadow {
  deviceUuid: string;
  shadowName: string;
  document: ShadowDocument | null;
  version: number;
}

/**
 * The statement that serialises every writer of these devices' shadows, across server instances, until the
 * transaction ends. Keys are locked in sorted order so two batches never deadlock. Without parameters (a
 * {@link Db.sqlCall}), for `db.transaction(fn, {begin})`: the locks are taken in the BEGIN's round trip.
 */
export function lockDevicesSql(db: SqlCaller, uuids: readonly string[]): string {
  return db.sqlCall(LOCK_DEVICES, [sqlLiteral(JSON.stringify([...uuids].sort()))]);
}

const LOCK_DEVICES: NamedSql = {
  name: 'switchyard_lock_devices',
  sql: 'SELECT pg_advisory_xact_lock(hashtextextended(u, 7411)) FROM jsonb_array_elements_text($1::jsonb) WITH ORDINALITY AS t(u, i) ORDER BY i',
  types: ['jsonb'],
};

type SqlCaller = Pick<Db, 'sqlCall'>;

export async function loadDeviceRoutes(q: Queryable, uuids: readonly string[]): Promise<Map<string, DeviceRoute>> {
  const { rows } = await q.query<{ uuid: string; mqtt_broker_id: number | null; connected_broker_id: number | null }>(
    `SELECT uuid, mqtt_broker_id, connected_broker_id FROM devices WHERE uuid = ANY (ARRAY(SELECT jsonb_array_elements_text($1::jsonb)))`,
    [JSON.stringify(uuids)],
  );
  return new Map(
    rows.map((r) => [r.uuid, { uuid: r.uuid, brokerId: r.mqtt_broker_id, connectedBrokerId: r.connected_broker_id }]),
  );
}

/** A `device_shadows` row (alias `s`) as one JSON object of the {@link ShadowRow} keys, for statements that read more. */
export const SHADOW_ROW_JSON = `json_build_object('device_uuid', s.device_uuid, 'shadow_name', s.shadow_name, 'desired', s.desired,
  'reported', s.reported, 'metadata', s.metadata, 'version', s.version, 'deleted', s.deleted)`;

/** A `device_shadows` row as read (also through `json_build_object`, where `version` arrives as a number). */
export interface ShadowRow {
  device_uuid: string;
  shadow_name: string;
  desired: JsonObject | null;
  reported: JsonObject | null;
  metadata: { desired?: JsonObject; reported?: JsonObject } | null;
  version: number | string;
  deleted: boolean;
}

/** A read shadow row as the service holds it. */
export function storedShadowOf(r: ShadowRow): StoredShadow {
  const version = Number(r.version);
  if (r.deleted) return { deviceUuid: r.device_uuid, shadowName: r.shadow_name, document: null, version };
  const state: ShadowDocument['state'] = {};
  if (r.desired) state.desired = r.desired;
  if (r.reported) state.reported = r.reported;
  const metadata: ShadowDocument['metadata'] = {};
  if (r.metadata?.desired) metadata.desired = r.metadata.desired;
  if (r.metadata?.reported) metadata.reported = r.metadata.reported;
  return { deviceUuid: r.device_uuid, shadowName: r.shadow_name, document: { state, metadata, version }, version };
}

export function shadowKey(deviceUuid: string, shadowName: string): string {
  return `${deviceUuid}\u0000${shadowName}`;
}

/**
 * What every shadow batch reads, after its locks: the devices' routes (as {@link loadDeviceRoutes}) and the requested
 * shadow rows, in one round trip (one row, two JSON arrays; `$1` the uuids, `$2` the `{u, n}` keys).
 *
 * Each key is looked up by its own scalar subquery — an index probe per key, whatever the table's size. Written as a
 * join (`uuid IN (SELECT jsonb_array_elements_text(…))`), PostgreSQL's generic plan, which guesses 100 keys, hashed
 * them against a sequential scan of `devices` and `device_shadows`, dead row versions included: ≈ 1 ms a batch with
 * 1,000 devices, growing with the fleet (bench/shadow-throughput, EXPLAIN ANALYZE). Missing keys come back as `null`.
 */
export const LOAD_ROUTES_AND_SHADOWS_SQL = loadRoutesAndShadowsSql('$1', '$2');

function loadRoutesAndShadowsSql(uuids: string, keys: string): string {
  return `SELECT
  (SELECT coalesce(json_agg((SELECT json_build_object('uuid', d.uuid, 'b', d.mqtt_broker_id, 'c', d.connected_broker_id)
                               FROM devices d WHERE d.uuid = t.u)), '[]')
     FROM jsonb_array_elements_text(${uuids}::jsonb) AS t(u)) AS routes,
  (SELECT coalesce(json_agg((SELECT ${SHADOW_ROW_JSON} FROM device_shadows s WHERE s.device_uuid = k.u AND s.shadow_name = k.n)), '[]')
     FROM jsonb_to_recordset(${keys}::jsonb) AS k(u text, n text)) AS shadows`;
}

type ShadowKeys = ReadonlyArray<{ deviceUuid: string; shadowName: string }>;
type RoutesAndShadowsRow = { routes: Array<{ uuid: string; b: number | null; c: number | null } | null>; shadows: Array<ShadowRow | null> };
export type RoutesAndShadows = { routes: Map<string, DeviceRoute>; shadows: Map<string, StoredShadow> };

const keysParam = (keys: ShadowKeys): string => JSON.stringify(keys.map((k) => ({ u: k.deviceUuid, n: k.shadowName })));

/** Runs {@link LOAD_ROUTES_AND_SHADOWS_SQL}. */
export async function loadRoutesAndShadows(q: Queryable, uuids: readonly string[], keys: ShadowKeys): Promise<RoutesAndShadows> {
  const { rows } = await q.query<RoutesAndShadowsRow>(LOAD_ROUTES_AND_SHADOWS_SQL, [JSON.stringify(uuids), keysParam(keys)]);
  return routesAndShadowsOf(rows[0]!);
}

/**
 * {@link LOAD_ROUTES_AND_SHADOWS_SQL} without parameters (a {@link Db.sqlCall}), for a transaction's `begin`: the
 * rows are read in the round trip that takes their locks. Read its result with {@link routesAndShadowsOf}.
 */
export function loadRoutesAndShadowsSqlCall(db: SqlCaller, uuids: readonly string[], keys: ShadowKeys): string {
  return db.sqlCall(LOAD_ROUTES_AND_SHADOWS, [sqlLiteral(JSON.stringify(uuids)), sqlLiteral(keysParam(keys))]);
}

const LOAD_ROUTES_AND_SHADOWS: NamedSql = { name: 'switchyard_shadow_load', sql: LOAD_ROUTES_AND_SHADOWS_SQL, types: ['jsonb', 'jsonb'] };

/** The one row of {@link LOAD_ROUTES_AND_SHADOWS_SQL}, as maps by uuid and by {@link shadowKey}. */
export function routesAndShadowsOf(row: Record<string, unknown>): RoutesAndShadows {
  const r0 = row as RoutesAndShadowsRow;
  const routes = new Map<string, DeviceRoute>();
  for (const r of r0.routes) if (r) routes.set(r.uuid, { uuid: r.uuid, brokerId: r.b, connectedBrokerId: r.c });
  const shadows = new Map<string, StoredShadow>();
  for (const r of r0.shadows) if (r) shadows.set(shadowKey(r.device_uuid, r.shadow_name), storedShadowOf(r));
  return { routes, shadows };
}

/**
 * The statement that writes the final state of every shadow a batch touched (one row per key), without parameters
 * (a {@link Db.sqlCall}): a shadow batch queues it with `tx.atCommit`, so it travels with the COMMIT.
 */
export function saveShadowsSqlCall(db: SqlCaller, shadows: readonly StoredShadow[]): string {
  return db.sqlCall(SAVE_SHADOWS, [sqlLiteral(shadowRowsParam(shadows))]);
}

/**
 * The upsert of shadow rows, reading them from the jsonb `param` (a parameter or a literal of
 * {@link shadowRowsParam}): usable as a data-modifying CTE of a statement that writes more beside the shadows.
 */
export function saveShadowsSql(param: string): string {
  return `INSERT INTO device_shadows AS s (device_uuid, shadow_name, desired, reported, metadata, version, deleted)
     SELECT u, n, d, r, m, v, x FROM jsonb_to_recordset(${param}::jsonb)
         AS t(u text, n text, d jsonb, r jsonb, m jsonb, v bigint, x boolean)
     ON CONFLICT (device_uuid, shadow_name) DO UPDATE
        SET desired = EXCLUDED.desired, reported = EXCLUDED.reported, metadata = EXCLUDED.metadata,
            version = EXCLUDED.version, deleted = EXCLUDED.deleted, updated_at = now()`;
}

const SAVE_SHADOWS: NamedSql = { name: 'switchyard_shadow_save', sql: saveShadowsSql('$1'), types: ['jsonb'] };

/** The rows parameter of {@link saveShadowsSql}. */
export function shadowRowsParam(shadows: readonly StoredShadow[]): string {
  return JSON.stringify(
    shadows.map((s) => ({
      u: s.deviceUuid,
      n: s.shadowName,
      d: s.document?.state.desired,
      r: s.document?.state.reported,
      m: s.document ? s.document.metadata : {},
      v: s.version,
      x: s.document === null,
    })),
  );
}

/** Names of a device's live shadows ('' = the classic shadow is left out), paged by name. */
export async function listShadowNames(
  q: Queryable,
  deviceUuid: string,
  opts: { limit: number; after?: string },
): Promise<string[]> {
  const { rows } = await q.query<{ shadow_name: string }>(
    `SELECT shadow_name FROM device_shadows
      WHERE device_uuid = $1 AND deleted = false AND shadow_name <> '' AND shadow_name > $2
      ORDER BY shadow_name LIMIT $3`,
    [deviceUuid, opts.after ?? '', opts.limit],
  );
  return rows.map((r) => r.shadow_name);
}
