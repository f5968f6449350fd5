/**
 * {@link LockSession} over PostgreSQL: one dedicated `pg.Client` (`application_name` `switchyard-locks`, not from
 * the pool) holding session-level advisory locks, `pg_try_advisory_lock(LOCK_SESSION_CLASS, key)`.
 *
 * States: `open` (connected; a heartbeat `SELECT 1` every `heartbeatMs`) → `lost` (the connection failed, ended,
 * or a heartbeat went unanswered for `heartbeatMs`: PostgreSQL releases the locks when it notices, so this side
 * must stop acting on them at once; `onLost` callbacks run) or `closed` (`close()`; no callback). Neither is left.
 *
 * Trap: a silent network partition leaves the server side waiting too. The session asks the server for short TCP
 * keepalives (about 20 s until it drops us and frees the locks); the heartbeat notices sooner on our side.
 * Behind PgBouncer, only *session* pooling keeps advisory locks: point DATABASE_URL past transaction pooling.
 */
import pg from 'pg';
import type { Logger } from '../log.ts';
import { LOCK_SESSION_CLASS, type LockSession } from './db.ts';
import { assertLockKey } from './db-common.ts';

export interface PgLockSessionOptions {
  log: Logger;
  /** How often the session checks its connection, and how long an answer may take, ms. Default 5000. */
  heartbeatMs?: number;
}

export async function openPgLockSession(url: string, opts: PgLockSessionOptions): Promise<LockSession> {
  const log = opts.log.child({ part: 'lock-session' });
  const heartbeatMs = opts.heartbeatMs ?? 5000;
  const client = new pg.Client({ connectionString: url, application_name: 'switchyard-locks', keepAlive: true });
  let state: 'open' | 'lost' | 'closed' = 'open';
  const held = new Set<number>();
  const trying = new Map<number, Promise<boolean>>();
  const lostCallbacks = new Set<(err: Error) => void>();
  let heartbeat: NodeJS.Timeout | undefined = undefined; // set once connected; `lose` may run before

  const lose = (err: Error): void => {
    if (state !== 'open') return;
    state = 'lost';
    clearInterval(heartbeat);
    log.warn({ err, held: [...held] }, 'lock session lost; its locks are released');
    held.clear();
    client.removeAllListeners();
    client.on('error', (e) => log.debug({ err: e }, 'error on the lost lock session')); // late noise; never unhandled
    client.end().catch((e: unknown) => log.debug({ err: e }, 'closing the lost lock session failed'));
    for (const cb of [...lostCallbacks]) {
      try {
        cb(err);
      } catch (cbErr) {
        log.error({ err: cbErr }, 'an onLost callback threw; the others still run');
      }
    }
    lostCallbacks.clear();
  };
  client.on('error', (err) => lose(err));
  client.on('end', () => lose(new Error('lock session connection ended')));

  try {
    await client.connect();
    // Server-side keepalives (ignored on Unix sockets): a vanished instance's locks are freed in ~20 s, not hours.
    await client.query('SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 2');
  } catch (err) {
    state = 'closed';
    client.removeAllListeners();
    await client.end().catch((e: unknown) => log.debug({ err: e }, 'closing a half-open lock session failed'));
    throw new Error(`opening a lock session failed: ${(err as Error).message}`, { cause: err });
  }

  let beating = false;
  heartbeat = setInterval(() => {
    if (beating || state !== 'open') return;
    beating = true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`lock session did not answer within ${heartbeatMs} ms`)), heartbeatMs);
    });
    Promise.race([client.query('SELECT 1'), timeout])
      .catch((err: unknown) => lose(err as Error))
      .finally(() => {
        clearTimeout(timer);
        beating = false;
      });
  }, heartbeatMs);
  heartbeat.unref();

  return {
    async tryLock(key) {
      assertLockKey(key);
      if (state !== 'open') throw new Error(`lock session is ${state}`);
      if (held.has(key)) return true; // pg_try_advisory_lock would stack it, and then need two unlocks
      const pending = trying.get(key);
      if (pending) return pending;
      const attempt = (async () => {
        const res = await client.query<{ ok: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS ok', [LOCK_SESSION_CLASS, key]);
        if (state !== 'open') return false; // lost meanwhile: whatever it answered is gone
        const ok = res.rows[0]?.ok === true;
        if (ok) held.add(key);
        return ok;
      })().finally(() => trying.delete(key));
      trying.set(key, attempt);
      return attempt;
    },
    async unlock(key) {
      if (state !== 'open' || !held.delete(key)) return;
      try {
        await client.query('SELECT pg_advisory_unlock($1, $2)', [LOCK_SESSION_CLASS, key]);
      } catch (err) {
        // The connection is failing: `lose` runs (or ran), and its end releases this lock with the others.
        log.warn({ err, key }, 'advisory unlock failed; the lock goes when the session does');
      }
    },
    onLost(cb) {
      lostCallbacks.add(cb);
      return () => void lostCallbacks.delete(cb);
    },
    async close() {
      if (state === 'closed') return;
      const wasOpen = state === 'open';
      state = 'closed';
      clearInterval(heartbeat);
      held.clear();
      lostCallbacks.clear();
      if (!wasOpen) return; // lost: already ended
      client.removeAllListeners();
      client.on('error', (e) => log.debug({ err: e }, 'error while closing the lock session'));
      await client.end(); // ending the session releases every lock it held
    },
  };
}
