/** The SQL that `/metrics` runs at scrape time: cheap aggregate reads, never a lock, never a write. */
import type { Queryable } from '../db/db.ts';

/** Open migrations (whole fleet, every instance's) by status; statuses with none are absent. */
export async function countOpenMigrations(q: Queryable): Promise<Map<string, number>> {
  const { rows } = await q.query<{ status: string; n: number }>(
    `SELECT status, count(*)::int AS n FROM broker_migrations
      WHERE status IN ('pending', 'notified', 'migrating') GROUP BY status`,
  );
  return new Map(rows.map((r) => [r.status, Number(r.n)]));
}
