/** All SQL of the transactional outbox. */
import type { Queryable } from '../db/db.ts';

/** NOTIFY channel that wakes dispatchers (in this process and others) when rows were committed. */
export const OUTBOX_CHANNEL = 'switchyard_outbox';

/**
 * What a row does once its transaction committed:
 * - `mqtt.publish`: one MQTT publish through the server's connection to `payload.brokerId`;
 * - `broker.provision`: make the device's account on a broker exist, enabled, with its current token (read from
 *   `devices.token_enc` at delivery: no secret is ever written into the outbox); `setPassword` also replaces the
 *   password of an existing account and drops its live sessions (token rotation);
 * - `broker.deprovision`: remove the device's account from a broker (and with it any live session).
 */
export type OutboxKind = 'mqtt.publish' | 'broker.provision' | 'broker.deprovision';

export interface MqttPublishPayload {
  brokerId: number;
  topic: string;
  /** The message body (JSON text). */
  body: string;
  qos: 0 | 1;
  retain?: boolean;
}

export interface BrokerProvisionPayload {
  brokerId: number;
  /** Why (for logs and audit): the device was registered there, assigned there, or its token was rotated. */
  reason: 'create' | 'assign' | 'rotate';
  /** The assignment this provisioning prepares (notifications of that migration wait for this row). */
  migrationId?: number;
  /** Set the password even when the account exists already (rotation; drops the device's live sessions). */
  setPassword?: boolean;
}

export interface BrokerDeprovisionPayload {
  brokerId: number;
  /** The device completed a move away from this broker, or it was deleted. */
  reason: 'migrated' | 'deleted';
}

/** A row's kind with its payload. */
export type OutboxMessage =
  | { kind: 'mqtt.publish'; payload: MqttPublishPayload }
  | { kind: 'broker.provision'; payload: BrokerProvisionPayload }
  | { kind: 'broker.deprovision'; payload: BrokerDeprovisionPayload };

/** Kinds that change credentials on a broker; each (device, broker) pair has one chain of them, in order. */
export const CREDENTIAL_KINDS = ['broker.provision', 'broker.deprovision'] as const;

export type NewOutboxRow = OutboxMessage & {
  deviceUuid?: string;
  migrationId?: number;
  /** Id of a row that must be delivered first; `null`: none, and the caller knows (no provisioning lookup). */
  dependsOn?: number | null;
};

export type OutboxRow = OutboxMessage & {
  id: number;
  deviceUuid: string | null;
  migrationId: number | null;
  attempts: number;
};

/**
 * Inserts rows in order and wakes dispatchers on commit.
 *
 * A publish of a migration (`migrationId` set) given no `dependsOn` waits for that migration's pending
 * `broker.provision` row, if it has one: whichever module writes a notification (the assignment's delta or
 * command, the jobs engine's `change-broker` job), the device is never told to move to a broker that cannot
 * let it in yet.
 */
export async function enqueue(q: Queryable, rows: NewOutboxRow[], opts: { leaseSeconds?: number } = {}): Promise<number[]> {
  const provisionOf = new Map<number, number | null>();
  const values: unknown[] = [];
  for (const r of rows) {
    let dependsOn = r.dependsOn ?? null;
    if (r.dependsOn === undefined && r.kind === 'mqtt.publish' && r.migrationId !== undefined && r.deviceUuid !== undefined) {
      if (!provisionOf.has(r.migrationId)) provisionOf.set(r.migrationId, await pendingProvisionOf(q, r.deviceUuid, r.migrationId));
      dependsOn = provisionOf.get(r.migrationId) ?? null;
    }
    values.push(r.kind, JSON.stringify(r.payload), r.deviceUuid ?? null, r.migrationId ?? null, dependsOn);
  }
  if (rows.length === 0) return [];
  if (opts.leaseSeconds !== undefined) {
    // Leased to the caller from the start (see enqueueLeased): no dispatcher may claim them before the lease ends,
    // so nobody is woken.
    const lease = values.push(opts.leaseSeconds);
    const tuples = rows.map((_, i) => `($${i * 5 + 1}, $${i * 5 + 2}::jsonb, $${i * 5 + 3}, $${i * 5 + 4}, $${i * 5 + 5}::bigint, now() + make_interval(secs => $${lease}), 1)`).join(', ');
    const { rows: out } = await q.query<{ id: number }>(
      `INSERT INTO outbox (kind, payload, device_uuid, migration_id, depends_on, claimed_until, attempts) VALUES ${tuples} RETURNING id`,
      values,
    );
    return out.map((r) => Number(r.id)).sort((a, b) => a - b);
  }
  // One statement for the lot (ids ascend in VALUES order: delivery order). pg_notify in the same statement is
  // delivered only if (and when) the transaction commits.
  const tuples = rows.map((_, i) => `($${i * 5 + 1}, $${i * 5 + 2}::jsonb, $${i * 5 + 3}, $${i * 5 + 4}, $${i * 5 + 5}::bigint)`).join(', ');
  const { rows: out } = await q.query<{ id: number }>(
    `WITH ins AS (
       INSERT INTO outbox (kind, payload, device_uuid, migration_id, depends_on) VALUES ${tuples} RETURNING id
     ), woke AS (SELECT pg_notify('${OUTBOX_CHANNEL}', ''))
     SELECT id FROM ins, woke ORDER BY id`,
    values,
  );
  return out.map((r) => Number(r.id));
}

/**
 * Inserts rows that need no predecessor, already leased (for `leaseSeconds`) to the caller, who delivers them itself
 * the moment its transaction commits (the dispatcher's `deliverLeased`): no NOTIFY round, no claim query on
 * the way to the broker. Should the caller die first, the lease runs out and any dispatcher delivers them — the
 * same at-least-once as every row. Returns the rows as the dispatcher takes them.
 */
export async function enqueueLeased(q: Queryable, rows: Array<OutboxMessage & { deviceUuid?: string; migrationId?: number }>, leaseSeconds: number): Promise<OutboxRow[]> {
  const ids = await enqueue(q, rows.map((r) => ({ ...r, dependsOn: null })), { leaseSeconds });
  return rows.map((r, i) => ({ ...r, id: ids[i]!, deviceUuid: r.deviceUuid ?? null, migrationId: r.migrationId ?? null, attempts: 1 }) as OutboxRow);
}

/** The pending `broker.provision` row that prepares `migrationId`, if any. */
async function pendingProvisionOf(q: Queryable, deviceUuid: string, migrationId: number): Promise<number | null> {
  const { rows } = await q.query<{ id: number | null }>(
    `SELECT max(id) AS id FROM outbox
      WHERE device_uuid = $1 AND kind = 'broker.provision' AND payload->>'migrationId' = $2`,
    [deviceUuid, String(migrationId)],
  );
  const id = rows[0]?.id;
  return id === null || id === undefined ? null : Number(id);
}

/**
 * The newest undelivered credential row (`broker.provision` / `broker.deprovision`) of a device on a broker, or
 * null. A new credential row of that pair depends on it, so the pair's changes reach the broker in the order they
 * were decided, even with several dispatchers (a deprovision after a completed move is never overtaken by a
 * provision of a newer assignment back to that broker). Call it inside the transaction that locked the device.
 */
export async function credentialChainTail(q: Queryable, deviceUuid: string, brokerId: number): Promise<number | null> {
  const { rows } = await q.query<{ id: number | null }>(
    `SELECT max(id) AS id FROM outbox
      WHERE device_uuid = $1 AND kind IN ('broker.provision', 'broker.deprovision') AND payload->>'brokerId' = $2`,
    [deviceUuid, String(brokerId)],
  );
  const id = rows[0]?.id;
  return id === null || id === undefined ? null : Number(id);
}

/** Which of `ids` are still in the outbox (not delivered yet). */
export async function undelivered(q: Queryable, ids: readonly number[]): Promise<number[]> {
  if (ids.length === 0) return [];
  const { rows } = await q.query<{ id: number }>(
    'SELECT id FROM outbox WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint)',
    [JSON.stringify(ids.map(String))],
  );
  return rows.map((r) => Number(r.id));
}

/** Extends the lease of rows this dispatcher still works on (a slow round must not be taken over mid-way). */
export async function extendLease(q: Queryable, ids: readonly number[], leaseSeconds: number): Promise<void> {
  if (ids.length === 0) return;
  await q.query(
    `UPDATE outbox SET claimed_until = now() + make_interval(secs => $2)
      WHERE id IN (SELECT (jsonb_array_elements_text($1::jsonb))::bigint)`,
    [JSON.stringify(ids.map(String)), leaseSeconds],
  );
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
    payload: OutboxMessage['payload'];
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
    .map(
      (r) =>
        ({
          id: Number(r.id),
          kind: r.kind,
          payload: r.payload,
          deviceUuid: r.device_uuid,
          migrationId: r.migration_id === null ? null : Number(r.migration_id),
          attempts: r.attempts,
        }) as OutboxRow,
    )
    .sort((a, b) => a.id - b.id);
}

export async function markDelivered(q: Queryable, ids: readonly number[]): Promise<void> {
  await q.query('DELETE FROM outbox WHERE id IN (SELECT jsonb_array_elements_text($1::jsonb)::bigint)', [JSON.stringify(ids)]);
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
