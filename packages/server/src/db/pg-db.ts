/**
 * {@link Db} over PostgreSQL with `pg`: a pool for queries and transactions, plus one dedicated connection that
 * carries every LISTEN channel of this process. Each lock session (`createLockSession`) is one more dedicated
 * connection, see `pg-lock-session.ts`.
 *
 * Listener connection states:
 * - `idle`: no channel is listened to yet (no connection opened).
 * - `connected`: a client is open and has LISTENed to every channel in the registry.
 * - `backoff`: the connection dropped; a timer (owned here) reconnects after an exponential, jittered delay and
 *   re-LISTENs every channel. Notifications sent while disconnected are lost: NOTIFY is a wake-up hint, and
 *   consumers must also poll (outbox, jobs) — that is how PostgreSQL itself defines it.
 * - `closed`: after `close()`; no timer, no client.
 */
import pg from 'pg';
import type { Logger } from '../log.ts';
import { silentLogger } from '../log.ts';
import type { Db, QueryOptions, QueryResult, Transaction } from './db.ts';
import { INT8_OID, assertChannel, parseInt8, transactionClosedError } from './db-common.ts';
import { openPgLockSession } from './pg-lock-session.ts';
import { createSqlCalls, createStatementNames, isStalePlan, type StatementNames } from './pg-statements.ts';

export interface PgDbOptions {
  /** Maximum pool connections (default 10). The listener connection comes on top of these. */
  max?: number;
  /** Logger (default: silent). */
  log?: Logger;
  /** First reconnect delay of the listener connection, ms (default 250). */
  listenRetryBaseMs?: number;
  /** Longest reconnect delay of the listener connection, ms (default 10 000). */
  listenRetryMaxMs?: number;
  /** Heartbeat of each lock session's connection, ms (default 5000): how soon a silent drop is noticed. */
  lockHeartbeatMs?: number;
  /**
   * How many distinct parameterised statements are kept prepared on each pooled connection (default
   * {@link DEFAULT_PREPARED_STATEMENTS}; 0 = none, e.g. behind PgBouncer in transaction mode). See {@link createStatementNames}.
   */
  preparedStatements?: number;
}

export const DEFAULT_PREPARED_STATEMENTS = 256;

/**
 * Per-pool type parsers: int8 as a number where safe (see {@link parseInt8}); everything else as `pg` does
 * (jsonb parsed, timestamptz as Date, numeric as string). Never touches `pg.types`, the process-wide registry.
 */
const typeParsers: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === INT8_OID && format !== 'binary') return parseInt8;
    return pg.types.getTypeParser(oid, format ?? 'text');
  }) as pg.CustomTypesConfig['getTypeParser'],
};

type PgResultLike = { rows: unknown[]; rowCount: number | null };

/**
 * A statement without params goes over the simple query protocol (pg's own rule), so it may hold several
 * statements (migrations); `pg` then answers with one result per statement and we return the last one.
 */
function toResult<T>(res: PgResultLike | PgResultLike[]): QueryResult<T> {
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  return { rows: (last?.rows ?? []) as T[], rowCount: last?.rowCount ?? 0 };
}

async function runQuery<T>(
  target: pg.Pool | pg.PoolClient,
  names: StatementNames,
  sql: string,
  params?: readonly unknown[],
  options?: QueryOptions,
): Promise<QueryResult<T>> {
  if (!params || params.length === 0) return toResult<T>((await target.query(sql)) as unknown as PgResultLike | PgResultLike[]);
  const name = options?.name ?? names.of(sql);
  if (name === undefined) return toResult<T>((await target.query(sql, params as unknown[])) as unknown as PgResultLike);
  try {
    return toResult<T>((await target.query({ name, text: sql, values: params as unknown[] })) as unknown as PgResultLike);
  } catch (err) {
    if (!isStalePlan(err) || options?.name) throw err;
    names.drop(sql);
    // Inside a transaction the error has already aborted it; on the pool the same statement can run again, unnamed.
    if (target instanceof pg.Pool) return toResult<T>((await target.query(sql, params as unknown[])) as unknown as PgResultLike);
    throw err;
  }
}

export async function createPgDb(url: string, opts: PgDbOptions = {}): Promise<Db> {
  const log = (opts.log ?? silentLogger()).child({ component: 'db', db: 'postgres' });
  const pool = new pg.Pool({ connectionString: url, max: opts.max ?? 10, types: typeParsers, application_name: 'switchyard' });
  // An idle client that loses its connection emits here; without a listener the process would crash.
  pool.on('error', (err) => log.error({ err }, 'idle PostgreSQL connection failed; the pool drops it and opens another on demand'));
  // pg-pool's end() resolves once its connections are asked to close, not once their sockets are: close() waits for these.
  const connections = new Set<pg.PoolClient>();
  pool.on('connect', (c) => {
    connections.add(c);
    c.once('end', () => connections.delete(c));
  });

  // Fail fast on a wrong URL / unreachable server instead of at the first request.
  try {
    await pool.query('SELECT 1');
  } catch (err) {
    await pool.end().catch((endErr: unknown) => log.warn({ err: endErr }, 'closing the pool after a failed start failed'));
    throw new Error(`cannot connect to PostgreSQL at ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  }

  const listener = createListener(url, log, opts);
  const names = createStatementNames(opts.preparedStatements ?? DEFAULT_PREPARED_STATEMENTS);
  const calls = createSqlCalls((opts.preparedStatements ?? DEFAULT_PREPARED_STATEMENTS) > 0);
  let closed = false;

  const db: Db = {
    kind: 'postgres',
    query: <T = Record<string, unknown>>(sql: string, params?: readonly unknown[], options?: QueryOptions) => runQuery<T>(pool, names, sql, params, options),
    sqlCall: (stmt, args) => calls.call(stmt, args),

    async transaction<T>(fn: (tx: Transaction, begun: QueryResult<Record<string, unknown>>) => Promise<T>, txOpts: { begin?: string } = {}): Promise<T> {
      const client = await pool.connect();
      // While checked out, pg-pool removes its own error listener: a connection lost mid-transaction would
      // otherwise be an unhandled 'error' event and kill the process. The failing query rejects as well.
      const onError = (err: Error) => log.warn({ err }, 'PostgreSQL connection failed during a transaction; it will be rolled back');
      client.on('error', onError);
      let open = true;
      const atCommit: string[] = [];
      const tx: Transaction = {
        query: <R = Record<string, unknown>>(sql: string, params?: readonly unknown[], options?: QueryOptions) => {
          if (!open) return Promise.reject(transactionClosedError());
          return runQuery<R>(client, names, sql, params, options);
        },
        atCommit(sql: string) {
          if (!open) throw transactionClosedError();
          atCommit.push(sql);
        },
      };
      let releaseErr: Error | undefined;
      // A message that prepares statements and fails may have stopped before a PREPARE: the connection goes then.
      let prepared = false;
      const prepare = (): string => {
        const sql = calls.toPrepare(client);
        if (sql !== '') prepared = true;
        return sql;
      };
      try {
        // With `begin`: one simple-protocol message, so BEGIN and the transaction's first statements share a round trip.
        const begun = toResult<Record<string, unknown>>((await client.query(txOpts.begin ? `BEGIN; ${prepare()}${txOpts.begin}` : 'BEGIN')) as unknown as PgResultLike | PgResultLike[]);
        const result = await fn(tx, begun);
        // The queued statements and COMMIT in one simple-protocol message: PostgreSQL stops at the first error.
        const sent = (await client.query(atCommit.length > 0 ? `${prepare()}${atCommit.join('; ')}; COMMIT` : 'COMMIT')) as unknown as PgResultLike | PgResultLike[];
        const commit = (Array.isArray(sent) ? sent[sent.length - 1] : sent) as { command?: string } | undefined;
        // A COMMIT of a transaction that already failed (an error fn caught and swallowed) is answered with
        // ROLLBACK, not an error. PGlite throws here; so do we, or the caller would believe its writes landed.
        if (commit?.command === 'ROLLBACK') {
          throw new Error('transaction was rolled back at COMMIT: a statement inside it failed and the error was caught');
        }
        return result;
      } catch (err) {
        if (prepared) releaseErr = new Error('a transaction that prepared statements failed');
        try {
          await client.query('ROLLBACK');
        } catch (rollbackErr) {
          log.warn({ err: rollbackErr }, 'ROLLBACK failed; discarding the connection');
          releaseErr = rollbackErr as Error;
        }
        throw err;
      } finally {
        open = false;
        client.off('error', onError);
        client.release(releaseErr);
      }
    },

    listen: (channel, onPayload) => listener.listen(channel, onPayload),
    onListenGap: (fn) => listener.onGap(fn),

    async notify(channel: string, payload: string): Promise<void> {
      assertChannel(channel);
      await pool.query('SELECT pg_notify($1, $2)', [channel, payload]);
    },

    createLockSession() {
      if (closed) return Promise.reject(new Error('database is closed'));
      return openPgLockSession(url, { log, ...(opts.lockHeartbeatMs !== undefined ? { heartbeatMs: opts.lockHeartbeatMs } : {}) });
    },

    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      await listener.close();
      const closing = [...connections].map((c) => new Promise<void>((resolve) => c.once('end', () => resolve())));
      await pool.end();
      // Bounded: a connection whose socket never reports its end must not hang shutdown.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(closing), new Promise<void>((resolve) => (timer = setTimeout(resolve, 5_000)))]);
      clearTimeout(timer);
    },
  };
  return db;
}

/** The URL without its password, for error messages and logs. */
function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '<unparseable DATABASE_URL>';
  }
}

type Callback = (payload: string) => void;

interface Listener {
  listen(channel: string, cb: Callback): Promise<() => Promise<void>>;
  onGap(fn: () => void): () => void;
  close(): Promise<void>;
}

/** The multiplexed LISTEN connection (see the states in the file comment). */
function createListener(url: string, parentLog: Logger, opts: PgDbOptions): Listener {
  const log = parentLog.child({ part: 'listener' });
  const baseMs = opts.listenRetryBaseMs ?? 250;
  const maxMs = opts.listenRetryMaxMs ?? 10_000;
  const channels = new Map<string, Set<Callback>>();
  let client: pg.Client | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let attempt = 0;
  let closed = false;
  // Every LISTEN/UNLISTEN/connect runs through this chain, so they never interleave on the one connection.
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(op: () => Promise<T>): Promise<T> => {
    const next = chain.then(op, op);
    chain = next.catch(() => undefined); // the caller gets the rejection; the chain itself must go on
    return next;
  };

  const gapHandlers = new Set<() => void>();
  const gap = (): void => {
    for (const fn of [...gapHandlers]) {
      try {
        fn();
      } catch (err) {
        log.error({ err }, 'a listen-gap handler threw; the other handlers still run');
      }
    }
  };

  const deliver = (msg: pg.Notification) => {
    const set = channels.get(msg.channel);
    if (!set) return;
    for (const cb of [...set]) {
      try {
        cb(msg.payload ?? '');
      } catch (err) {
        log.error({ err, channel: msg.channel }, 'a NOTIFY handler threw; the other handlers still run');
      }
    }
  };

  async function connect(): Promise<pg.Client> {
    const c = new pg.Client({ connectionString: url, types: typeParsers, application_name: 'switchyard-listen' });
    c.on('notification', deliver);
    c.on('error', (err) => onDrop(c, err));
    c.on('end', () => onDrop(c, undefined));
    try {
      await c.connect();
      for (const ch of channels.keys()) await c.query(`LISTEN ${c.escapeIdentifier(ch)}`);
    } catch (err) {
      c.removeAllListeners('end');
      await c.end().catch((endErr: unknown) => log.debug({ err: endErr }, 'closing a half-open listener connection failed'));
      throw err;
    }
    return c;
  }

  function onDrop(c: pg.Client, err: Error | undefined): void {
    if (client !== c || closed) return; // an old client, or our own close()
    client = undefined;
    c.removeAllListeners('notification');
    c.end().catch((endErr: unknown) => log.debug({ err: endErr }, 'closing the dropped listener connection failed'));
    log.warn({ err, channels: [...channels.keys()] }, 'LISTEN connection lost; reconnecting (notifications sent meanwhile are lost)');
    gap();
    scheduleReconnect();
  }

  function scheduleReconnect(): void {
    if (closed || retryTimer) return;
    // Exponential, capped, full jitter. TODO: use the protocol package's nextDelay() once it exists.
    const delay = Math.random() * Math.min(maxMs, baseMs * 2 ** attempt);
    attempt++;
    retryTimer = setTimeout(() => {
      retryTimer = undefined;
      void serial(async () => {
        if (closed || client) return;
        try {
          client = await connect();
          log.info({ attempt, channels: [...channels.keys()] }, 'LISTEN connection re-established');
          attempt = 0;
          gap(); // what was sent while it was down is lost: caches start over
        } catch (err) {
          log.warn({ err, attempt, nextAttemptWithinMs: Math.min(maxMs, baseMs * 2 ** attempt) }, 'LISTEN reconnect failed; retrying');
          scheduleReconnect();
        }
      });
    }, delay);
  }

  return {
    onGap(fn: () => void): () => void {
      gapHandlers.add(fn);
      return () => void gapHandlers.delete(fn);
    },

    async listen(channel: string, cb: Callback): Promise<() => Promise<void>> {
      assertChannel(channel);
      if (closed) throw new Error('database is closed');
      await serial(async () => {
        let set = channels.get(channel);
        const isNew = !set;
        if (!set) channels.set(channel, (set = new Set()));
        set.add(cb);
        try {
          if (!client && !retryTimer) {
            client = await connect(); // connect() LISTENs every registered channel, this one included
          } else if (client && isNew) {
            await client.query(`LISTEN ${client.escapeIdentifier(channel)}`);
          }
          // In backoff: the channel is registered and will be LISTENed on reconnect.
        } catch (err) {
          set.delete(cb);
          if (set.size === 0) channels.delete(channel);
          throw new Error(`LISTEN ${channel} failed: ${(err as Error).message}`, { cause: err });
        }
      });
      let active = true;
      return () => {
        if (!active) return Promise.resolve();
        active = false;
        return serial(async () => {
          const set = channels.get(channel);
          if (!set) return;
          set.delete(cb);
          if (set.size > 0) return;
          channels.delete(channel);
          // If this fails the connection is dropping: the reconnect will not LISTEN this channel any more.
          if (client) {
            await client.query(`UNLISTEN ${client.escapeIdentifier(channel)}`).catch((err: unknown) =>
              log.warn({ err, channel }, 'UNLISTEN failed; the channel is forgotten and not listened to after reconnect'),
            );
          }
        });
      };
    },

    async close(): Promise<void> {
      closed = true;
      if (retryTimer) clearTimeout(retryTimer);
      retryTimer = undefined;
      await serial(async () => {
        const c = client;
        client = undefined;
        channels.clear();
        if (c) {
          c.removeAllListeners('notification');
          await c.end();
        }
      });
    },
  };
}
