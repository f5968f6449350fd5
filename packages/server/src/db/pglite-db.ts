/**
 * {@link Db} over PGlite (PostgreSQL in WASM, in-process), through PGlite's own API.
 *
 * PGlite has ONE connection. `transaction` holds PGlite's transaction mutex for its whole duration, so every
 * other query of the process waits until COMMIT/ROLLBACK — the same isolation a pool would give, serialised.
 * The trap that follows: a `db.query()` or `db.transaction()` issued from inside a transaction callback would
 * wait for the transaction that is waiting for it — a silent deadlock. We detect that case (AsyncLocalStorage)
 * and throw instead; inside a transaction, use the `tx` handle.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { PGlite, type Results, type Transaction } from '@electric-sql/pglite';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import { inlineSqlCall, type Db, type QueryResult, type Transaction as DbTransaction } from './db.ts';
import { INT8_OID, assertChannel, parseInt8, transactionClosedError } from './db-common.ts';
import { acquireDirLock, type DirLock } from './lockfile.ts';
import { createMemoryLockTable } from './memory-lock-session.ts';

export interface PgliteDbOptions {
  /** Logger (default: silent). */
  log?: Logger;
}

interface TxScope {
  open: boolean;
}

function toResult<T>(res: Results<T> | undefined): QueryResult<T> {
  // PGlite reports `rowCount` per statement (rows returned or changed) when it has a command tag.
  return { rows: res?.rows ?? [], rowCount: res?.rowCount ?? res?.affectedRows ?? 0 };
}

/**
 * Like `pg`: with params, one statement over the extended protocol; without, the simple protocol (`exec`),
 * which accepts several statements (migrations) and whose last result we return.
 */
async function runQuery<T>(target: PGlite | Transaction, sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> {
  if (params && params.length > 0) return toResult<T>(await target.query<T>(sql, [...params]));
  const all = await target.exec(sql);
  return toResult<T>(all[all.length - 1] as Results<T> | undefined);
}

/**
 * Opens PGlite on `dataDir` (taking its lockfile), or in memory when `dataDir` is undefined.
 * A fresh directory takes several seconds (initdb); reopening one takes about one.
 */
export async function createPgliteDb(dataDir: string | undefined, opts: PgliteDbOptions = {}): Promise<Db> {
  const log = (opts.log ?? silentLogger()).child({ component: 'db', db: 'pglite' });
  const lock: DirLock | undefined = dataDir === undefined ? undefined : await acquireDirLock(dataDir, { log });

  let pglite: PGlite;
  try {
    pglite = await PGlite.create({ dataDir, parsers: { [INT8_OID]: parseInt8 } });
  } catch (err) {
    await lock?.release().catch((releaseErr: unknown) => log.warn({ err: releaseErr }, 'releasing the lock after a failed open failed'));
    throw new Error(`cannot open PGlite ${dataDir === undefined ? 'in memory' : `in ${dataDir}`}: ${(err as Error).message}`, { cause: err });
  }

  const scope = new AsyncLocalStorage<TxScope>();
  const assertNotInTransaction = (what: string) => {
    if (scope.getStore()?.open) {
      throw new Error(`db.${what}() inside db.transaction() would deadlock on PGlite's single connection: use the tx handle`);
    }
  };
  let closed = false;
  const locks = createMemoryLockTable();

  const db: Db = {
    kind: 'pglite',
    // In-process: parse and plan are the whole cost either way, and a PREPARE per statement is no cheaper.
    sqlCall: inlineSqlCall,

    async query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>> {
      assertNotInTransaction('query');
      return runQuery<T>(pglite, sql, params);
    },

    async transaction<T>(fn: (tx: DbTransaction, begun: QueryResult<Record<string, unknown>>) => Promise<T>, txOpts: { begin?: string } = {}): Promise<T> {
      assertNotInTransaction('transaction');
      // PGlite's transaction(): BEGIN, fn, COMMIT (throws if the COMMIT turned into a ROLLBACK), or ROLLBACK
      // and rethrow — all while holding the mutex every other query waits on.
      return pglite.transaction(async (ptx) => {
        const txScope: TxScope = { open: true };
        const atCommit: string[] = [];
        const tx: DbTransaction = {
          query: <R = Record<string, unknown>>(sql: string, params?: readonly unknown[]) => {
            if (!txScope.open) return Promise.reject(transactionClosedError());
            return runQuery<R>(ptx, sql, params);
          },
          atCommit(sql: string) {
            if (!txScope.open) throw transactionClosedError();
            atCommit.push(sql);
          },
        };
        try {
          // In-process: no round trips to save, just the order.
          const begun = txOpts.begin ? await runQuery<Record<string, unknown>>(ptx, txOpts.begin) : { rows: [], rowCount: 0 };
          const result = await scope.run(txScope, () => fn(tx, begun));
          if (atCommit.length > 0) await ptx.exec(atCommit.join('; '));
          return result;
        } finally {
          // Work that fn started but did not await may call db.query later: that is legal once we are done.
          txScope.open = false;
        }
      });
    },

    // In-process notifications are never lost.
    onListenGap: () => () => undefined,

    async listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>> {
      assertChannel(channel);
      assertNotInTransaction('listen');
      const cb = (payload: string) => {
        try {
          onPayload(payload);
        } catch (err) {
          log.error({ err, channel }, 'a NOTIFY handler threw; the other handlers still run');
        }
      };
      const unlisten = await pglite.listen(channel, cb);
      let active = true;
      return async () => {
        if (!active || closed) return;
        active = false;
        await unlisten();
      };
    },

    async notify(channel: string, payload: string): Promise<void> {
      assertChannel(channel);
      // Delivered to this process's listeners (PGlite has no other). For a NOTIFY that must only go out if a
      // transaction commits, run `SELECT pg_notify($1, $2)` on the tx handle instead.
      await db.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },

    // One process owns the database: advisory locks would exclude nobody, an in-memory table does the same.
    createLockSession: async () => locks.open(),

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      try {
        await pglite.close();
      } finally {
        await lock?.release();
      }
    },
  };
  return db;
}
