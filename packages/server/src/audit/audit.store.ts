/**
 * Audit rows: who did what to which device, broker, token or job, when, and with which outcome. A service writes
 * the row of a change in the same transaction as the change; refused and failed mutating requests are written by
 * the HTTP layer (`request-audit.ts`). `details` must never hold a secret (passwords, tokens, CA keys, request
 * bodies): record *that* a secret changed, not its value. See docs/operations.md ("Audit log").
 */
import type { Queryable } from '../db/db.ts';

export interface AuditEntry {
  /** Who: `admin` (the bootstrap token), `token:<id>:<name>`, `device:<uuid>`, `system`, `anonymous`. */
  actor: string;
  /** What, as `<resource>.<verb>`: `broker.create`, `device.delete`, … */
  action: string;
  targetType: 'broker' | 'device' | (string & {});
  targetId: string | null;
  outcome?: 'ok' | 'error';
  details?: Record<string, unknown>;
}

export async function insertAudit(q: Queryable, entry: AuditEntry): Promise<void> {
  await q.query(
    `INSERT INTO audit_log (actor, action, target_type, target_id, outcome, details)
     VALUES ($1, $2, $3, $4, $5, $6::jsonb)`,
    [entry.actor, entry.action, entry.targetType, entry.targetId, entry.outcome ?? 'ok', JSON.stringify(entry.details ?? {})],
  );
}

export interface AuditRow {
  id: number;
  at: Date;
  actor: string;
  action: string;
  target_type: string;
  target_id: string | null;
  outcome: string;
  details: Record<string, unknown>;
}

export interface AuditFilter {
  /** Exact actor, or a prefix when it ends with `*` (`device:*`, `token:7:*`). */
  actor?: string;
  /** Exact action, or a prefix when it ends with `*` (`broker.*`, `request.*`). */
  action?: string;
  targetType?: string;
  targetId?: string;
  outcome?: 'ok' | 'error';
  /** Rows at or after this instant. */
  since?: Date;
  /** Rows before this instant. */
  until?: Date;
  /** Rows with a smaller id (a stable cursor: pass the last id of the previous page). */
  beforeId?: number;
  limit: number;
  offset: number;
}

/** `value*` → a LIKE prefix pattern (with `%`, `_` and `\` escaped); anything else → exact match. */
function matcher(column: string, value: string, params: unknown[]): string {
  if (value.endsWith('*')) {
    const prefix = value.slice(0, -1).replace(/[\\%_]/g, (c) => `\\${c}`);
    return `${column} LIKE $${params.push(`${prefix}%`)}`;
  }
  return `${column} = $${params.push(value)}`;
}

/** Audit rows matching `f`, newest first, and how many match in all. */
export async function listAudit(q: Queryable, f: AuditFilter): Promise<{ rows: AuditRow[]; total: number }> {
  const where: string[] = [];
  const params: unknown[] = [];
  if (f.actor !== undefined) where.push(matcher('actor', f.actor, params));
  if (f.action !== undefined) where.push(matcher('action', f.action, params));
  if (f.targetType !== undefined) where.push(`target_type = $${params.push(f.targetType)}`);
  if (f.targetId !== undefined) where.push(`target_id = $${params.push(f.targetId)}`);
  if (f.outcome !== undefined) where.push(`outcome = $${params.push(f.outcome)}`);
  if (f.since !== undefined) where.push(`at >= $${params.push(f.since.toISOString())}::timestamptz`);
  if (f.until !== undefined) where.push(`at < $${params.push(f.until.toISOString())}::timestamptz`);
  if (f.beforeId !== undefined) where.push(`id < $${params.push(f.beforeId)}`);
  const clause = where.length > 0 ? `WHERE ${where.join(' AND ')}` : '';
  const total = await q.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_log ${clause}`, params);
  const { rows } = await q.query<AuditRow>(
    `SELECT id, at, actor, action, target_type, target_id, outcome, details FROM audit_log ${clause}
      ORDER BY id DESC LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
    [...params, f.limit, f.offset],
  );
  return { rows, total: Number(total.rows[0]?.n ?? 0) };
}
