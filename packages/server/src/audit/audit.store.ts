/**
 * Audit rows: who did what to which device or broker. Written in the same transaction as the change it records.
 * `details` must never hold a secret (passwords, tokens, CA keys): record *that* a secret changed, not its value.
 */
import type { Queryable } from '../db/db.ts';

export interface AuditEntry {
  /** Who: `admin`, `device:<uuid>`, `system`, … */
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
