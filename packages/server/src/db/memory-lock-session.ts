/**
 * {@link LockSession}s over an in-memory lock table, for PGlite: one process holds the only connection, so
 * there is nobody else to exclude, but the sessions of one Db still exclude each other exactly as PostgreSQL
 * sessions do (the shared contract test checks both). A session here is never lost.
 */
import type { LockSession } from './db.ts';
import { assertLockKey } from './db-common.ts';

export interface MemoryLockTable {
  open(): LockSession;
}

export function createMemoryLockTable(): MemoryLockTable {
  const holders = new Map<number, object>();
  return {
    open(): LockSession {
      const self = {};
      let closed = false;
      return {
        async tryLock(key) {
          assertLockKey(key);
          if (closed) throw new Error('lock session is closed');
          const holder = holders.get(key);
          if (holder === undefined) holders.set(key, self);
          return (holder ?? self) === self;
        },
        async unlock(key) {
          if (holders.get(key) === self) holders.delete(key);
        },
        onLost: () => () => undefined, // nothing to lose: no connection
        async close() {
          closed = true;
          for (const [key, holder] of holders) if (holder === self) holders.delete(key);
        },
      };
    },
  };
}
