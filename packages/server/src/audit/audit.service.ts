/** Reading the audit log (`GET /api/v1/audit`). Rows are written by the services and by `request-audit.ts`. */
import type { Queryable } from '../db/db.ts';
import { AppError } from '../errors.ts';
import { listAudit, type AuditFilter, type AuditRow } from './audit.store.ts';

/** One audit row as the API shows it. */
export interface AuditItem {
  id: number;
  /** When it was written (the change's commit time, to the transaction's start). */
  at: string;
  actor: string;
  action: string;
  targetType: string;
  targetId: string | null;
  outcome: string;
  details: Record<string, unknown>;
}

export interface AuditPage {
  items: AuditItem[];
  total: number;
  limit: number;
  offset: number;
}

const toItem = (r: AuditRow): AuditItem => ({
  id: Number(r.id),
  at: r.at.toISOString(),
  actor: r.actor,
  action: r.action,
  targetType: r.target_type,
  targetId: r.target_id,
  outcome: r.outcome,
  details: r.details,
});

export function createAuditService(deps: { db: Queryable }) {
  return {
    async list(f: AuditFilter): Promise<AuditPage> {
      if (f.since !== undefined && f.until !== undefined && f.since.getTime() >= f.until.getTime()) {
        throw new AppError('VALIDATION_FAILED', 'querystring.since must be earlier than querystring.until');
      }
      const { rows, total } = await listAudit(deps.db, f);
      return { items: rows.map(toItem), total, limit: f.limit, offset: f.offset };
    },
  };
}

export type AuditService = ReturnType<typeof createAuditService>;
