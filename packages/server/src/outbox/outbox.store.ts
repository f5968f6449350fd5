/** All SQL of the transactional outbox. */
import type { Queryable } from '../db/db.ts';

/** NOTIFY channel that wakes dispatchers (in this process and others) when rows were committed. */
export const OUTBOX_CHANNEL = 'switchyard_outbox';

export type OutboxKind = 'mqtt.publish';

export interface MqttPublishPayload {
  brokerId: number;
  topic: string;
  /** The message body (JSON text). */
  body: string;
  qos: 0 | 1;
  retain?: boolean;
}

export interface NewOutboxRow {
  kind: OutboxKind;
  payload: MqttPublishPayload;
  deviceUuid?: string;
  migrationId?: number;
  dependsOn?: number;
}

export interface OutboxRow {
  id: number;
  kind: OutboxKind;
  payload: MqttPublishPayload;
  deviceUuid: string | null;
  migrationId: number | null;
  attempts: number;
}

/** Inserts rows in order (each may depend on the previous one) and wakes dispatchers on commit. */
export async function enqueue(q: Queryable, rows: NewOutboxRow[]): Promise<number[]> {
  const ids: number[] = [];
  for (const r of rows) {
    const { rows: out } = await q.query<{ id: number }>(
      `INSERT INTO outbox (kind, payload, device_uuid, migration_id, depends_on)
       VALUES ($1, $2::jsonb, $3, $4, $5) RETURNING id`,
      [r.kind, JSON.stringify(r.payload), r.deviceUuid ?? null, r.migrationId ?? null, r.dependsOn ?? null],
    );
    ids.push(out[0]!.id);
  }
  // pg_notify inside the transaction is delivered only if (and when) it commits.
  await q.query('SELECT pg_notify($1, $2)', [OUTBOX_CHANNEL, '']);
  return ids;
}

/**
 * Leases up to `limit` deliverable rows for `leaseSeconds`: available now, not leased by a live
 * dispatcher, and whose predecessor (`depends_on`) was delivered. SKIP LOCKED lets several server
 * instances claim side by side without waiting on each other.
 */
export async function claim(q: Queryable, limit: number, leaseSeconds: number): Promise<OutboxRow[]> {
  const { rows } = await q.query<{
    id: number;
    kind: OutboxKind;
    payload: MqttPublishPayload;
    device_uuid: string | null;
    migration_id: number | null;
    attempts: number;
  }>(
    `UPDATE outbox SET claimed_until = now() + make_interval(secs => $2), attempts = attempts + 1
      WHERE id IN (
        SELECT o.id FROM outbox o
         WHERE o.available_at <= now()
           AND (o.claimed_until IS NULL OR o.claimed_until < now())
           AND NOT EXISTS (SELECT 1 FROM outbox p WHERE p.id = o.depends_on)
         ORDER BY o.id
         LIMIT $1
         FOR UPDATE SKIP LOCKED)
      RETURNING id, kind, payload, device_uuid, migration_id, attempts`,
    [limit, leaseSeconds],
  );
  return rows
    .map((r) => ({ id: r.id, kind: r.kind, payload: r.payload, deviceUuid: r.device_uuid, migrationId: r.migration_id, attempts: r.attempts }))
    .sort((a, b) => a.id - b.id);
}

export async function markDelivered(q: Queryable, id: number): Promise<void> {
  await q.query('DELETE FROM outbox WHERE id = $1', [id]);
}

export async function markFailed(q: Queryable, id: number, error: string, retryInMs: number): Promise<void> {
  await q.query(
    `UPDATE outbox SET claimed_until = NULL, last_error = $2, available_at = now() + make_interval(secs => $3)
      WHERE id = $1`,
    [id, error.slice(0, 500), retryInMs / 1000],
  );
}

/** Seconds until the next row becomes deliverable (null when the outbox is empty). */
export async function nextDueInSeconds(q: Queryable): Promise<number | null> {
  const { rows } = await q.query<{ s: number | null }>(
    `SELECT EXTRACT(EPOCH FROM (min(GREATEST(available_at, COALESCE(claimed_until, available_at))) - now()))::float8 AS s FROM outbox`,
  );
  const s = rows[0]?.s;
  return s === null || s === undefined ? null : Math.max(0, Number(s));
}

export async function pendingCount(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox');
  return Number(rows[0]?.n ?? 0);
}
