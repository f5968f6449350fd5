/**
 * SQL of `api_tokens` (migration 005). Rows leave this file without their hash: {@link ApiTokenRow} has no
 * `token_hash`, so no caller can put it into an answer, a log line or an audit row by accident.
 */
import type { Queryable } from '../db/db.ts';

export type ApiTokenScope = 'admin' | 'operator' | 'viewer';

export const API_TOKEN_SCOPES: readonly ApiTokenScope[] = ['admin', 'operator', 'viewer'];

export interface ApiTokenRow {
  id: number;
  name: string;
  scope: ApiTokenScope;
  created_at: Date;
  created_by: string;
  last_used_at: Date | null;
  revoked_at: Date | null;
  revoked_by: string | null;
}

/** Every column but the hash. */
const COLUMNS = 'id, name, scope, created_at, created_by, last_used_at, revoked_at, revoked_by';

export async function insertApiToken(q: Queryable, t: { name: string; scope: ApiTokenScope; tokenHash: string; createdBy: string }): Promise<ApiTokenRow> {
  const { rows } = await q.query<ApiTokenRow>(
    `INSERT INTO api_tokens (name, scope, token_hash, created_by) VALUES ($1, $2, $3, $4) RETURNING ${COLUMNS}`,
    [t.name, t.scope, t.tokenHash, t.createdBy],
  );
  return rows[0]!;
}

/** The active (not revoked) token with this sha256, or null. One indexed lookup (the UNIQUE index on the hash). */
export async function findActiveTokenByHash(q: Queryable, tokenHash: string): Promise<ApiTokenRow | null> {
  const { rows } = await q.query<ApiTokenRow>(
    `SELECT ${COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL`,
    [tokenHash],
    { name: 'api-token-by-hash' },
  );
  return rows[0] ?? null;
}

/**
 * Records a use: sets `last_used_at` when it is older than `minIntervalS` seconds (or unset), so a busy token
 * costs one write a minute, not one per request.
 */
export async function touchApiToken(q: Queryable, id: number, minIntervalS: number): Promise<void> {
  await q.query(
    `UPDATE api_tokens SET last_used_at = now()
      WHERE id = $1 AND revoked_at IS NULL AND (last_used_at IS NULL OR last_used_at < now() - make_interval(secs => $2))`,
    [id, minIntervalS],
  );
}

export async function getApiToken(q: Queryable, id: number, o: { lock?: boolean } = {}): Promise<ApiTokenRow | null> {
  const { rows } = await q.query<ApiTokenRow>(`SELECT ${COLUMNS} FROM api_tokens WHERE id = $1${o.lock ? ' FOR UPDATE' : ''}`, [id]);
  return rows[0] ?? null;
}

export async function listApiTokens(q: Queryable, f: { includeRevoked: boolean; limit: number; offset: number }): Promise<{ rows: ApiTokenRow[]; total: number }> {
  const where = f.includeRevoked ? '' : 'WHERE revoked_at IS NULL';
  const total = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM api_tokens ${where}`);
  const { rows } = await q.query<ApiTokenRow>(`SELECT ${COLUMNS} FROM api_tokens ${where} ORDER BY id LIMIT $1 OFFSET $2`, [f.limit, f.offset]);
  return { rows, total: Number(total.rows[0]?.n ?? 0) };
}

/** Revokes an active token; returns the row when this call revoked it, null when it was revoked already or is unknown. */
export async function revokeApiToken(q: Queryable, id: number, revokedBy: string): Promise<ApiTokenRow | null> {
  const { rows } = await q.query<ApiTokenRow>(
    `UPDATE api_tokens SET revoked_at = now(), revoked_by = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING ${COLUMNS}`,
    [id, revokedBy],
  );
  return rows[0] ?? null;
}
