/** One measured move of a device (`PUT /api/v1/devices/:uuid/broker`), as migration-latency and channels time it. */
import type { Api, MigrationStatuses } from './api.ts';
import { now, until } from './api.ts';
import { round } from './stats.ts';

/** Timestamps of a move on this process's clock (ms); the benches add their own. */
export interface MoveTimes {
  index: number;
  warmup: boolean;
  toBrokerId: number;
  /** When the PUT was sent. */
  sent: number;
  migrationId?: number;
  httpDone?: number;
  notified?: number;
  migrating?: number;
  completed?: number;
  failed?: string;
}

const FINAL = ['superseded', 'timed_out', 'failed', 'canceled'];

/**
 * Sends the PUT (`body`) for `move` (its `sent` already set) and waits until the SSE stream (`statuses`) saw its
 * migration completed and `isDone(move)` holds, copying the `keep` statuses and `completed` into the move as they
 * arrive. A PUT that fails, a migration that ends otherwise, or `timeoutMs` passing sets `move.failed`.
 */
export async function putMove<M extends MoveTimes>(o: {
  api: Api;
  uuid: string;
  body: Record<string, unknown>;
  move: M;
  statuses: MigrationStatuses;
  keep: ReadonlyArray<'notified' | 'migrating'>;
  isDone: (m: M) => boolean;
  timeoutMs: number;
  what: string;
}): Promise<void> {
  const m = o.move;
  const res = await o.api('PUT', `/api/v1/devices/${o.uuid}/broker`, o.body);
  m.httpDone = now();
  if (res.status !== 200 || !res.body?.migration?.id) {
    m.failed = `PUT answered ${res.status} ${JSON.stringify(res.body)}`;
    return;
  }
  m.migrationId = Number(res.body.migration.id);
  try {
    await until(
      () => {
        const seen = o.statuses.get(m.migrationId!);
        if (seen) {
          for (const k of o.keep) m[k] = seen[k];
          m.completed = seen.completed;
          const final = FINAL.find((s) => seen[s] !== undefined);
          if (final) throw new Error(`migration ended ${final}`);
        }
        return m.completed !== undefined && o.isDone(m);
      },
      o.timeoutMs,
      o.what,
    );
  } catch (err) {
    m.failed = (err as Error).message;
  }
}

/** A move's timestamps as ms since its PUT (for the JSON); `trace` (migration-latency) likewise. */
export function relative<M extends MoveTimes>(m: M): M {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(m)) {
    if (k === 'trace' && v) out[k] = Object.fromEntries(Object.entries(v as Record<string, number>).map(([t, x]) => [t, round(x - m.sent, 2)]));
    else if (typeof v === 'number' && k !== 'index' && k !== 'toBrokerId' && k !== 'sent' && k !== 'migrationId') out[k] = round(v - m.sent, 2);
    else out[k] = v;
  }
  return out as unknown as M;
}
