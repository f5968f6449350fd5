/**
 * One database interface over PostgreSQL (`pg`) and PGlite (embedded).
 *
 * Store functions take a {@link Queryable} (the pool or an open transaction), so the
 * service that calls them decides where the transaction boundary is.
 * SQL must be accepted by PostgreSQL 15 (PGlite is 18 and would accept more).
 */

export interface QueryResult<T> {
  rows: T[];
  /** Rows inserted, updated or deleted by the statement (0 for a SELECT on PGlite). */
  rowCount: number;
}

/** Options of {@link Queryable.query}. */
export interface QueryOptions {
  /** Prepared-statement name (PostgreSQL); the same name must always come with the same `sql`. */
  name?: string;
}

export interface Queryable {
  /**
   * Runs one parameterised statement ($1, $2, …). Never interpolate values into `sql`.
   * Without params (both drivers' simple protocol) `sql` may hold several statements; the last one's result
   * is returned (migrations use this). `int8` comes back as a number (a string beyond 2^53), jsonb parsed.
   * A jsonb parameter: pass `JSON.stringify(value)` — `pg` would turn a JS array into a PostgreSQL array.
   * `options.name` (hot paths only, one fixed `sql` per name): PostgreSQL keeps the statement prepared on each
   * pooled connection, so it is parsed and planned once per connection instead of on every call; PGlite ignores it.
   */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[], options?: QueryOptions): Promise<QueryResult<T>>;
}

export type DbKind = 'postgres' | 'pglite';

/** A statement for {@link Db.sqlCall}: `name` unique in the process, `sql` with `$1…$n`, one PostgreSQL type per parameter. */
export interface NamedSql {
  readonly name: string;
  readonly sql: string;
  readonly types: readonly string[];
}

/** Throws unless `args` has one literal per parameter of `stmt`. */
export function checkSqlCallArgs(stmt: NamedSql, args: readonly string[]): void {
  if (args.length !== stmt.types.length) throw new Error(`${stmt.name} takes ${stmt.types.length} arguments, got ${args.length}`);
}

/** {@link NamedSql.sql} with the SQL literals `args` in place of its parameters. */
export function inlineSqlCall(stmt: NamedSql, args: readonly string[]): string {
  checkSqlCallArgs(stmt, args);
  return stmt.sql.replace(/\$(\d+)/g, (_, i: string) => `(${args[Number(i) - 1]!})`);
}

/** The handle of an open {@link Db.transaction}. */
export interface Transaction extends Queryable {
  /**
   * Queues statements (no parameters: build them with {@link sqlLiteral}) to run when `fn` has returned, in the same
   * round trip as the COMMIT and in the order queued: a transaction whose last step is a write saves its round trip.
   * Their results are not returned; if one fails, nothing after it runs and the transaction rolls back and rejects.
   */
  atCommit(sql: string): void;
}

export interface Db extends Queryable {
  readonly kind: DbKind;
  /**
   * Runs `fn` inside BEGIN … COMMIT on one connection; ROLLBACK and rethrow when it throws.
   * On PGlite (one connection) every other query waits until the transaction ends.
   * `opts.begin`: statements (no parameters: build them with {@link sqlLiteral}) run right after BEGIN, before `fn`,
   * in the same round trip as the BEGIN — a transaction that always starts by taking its locks (and reading what
   * they guard) saves a round trip per statement. `fn` gets the last of them's result as `begun` (empty without).
   * See {@link Transaction.atCommit} for the other end.
   */
  transaction<T>(fn: (tx: Transaction, begun: QueryResult<Record<string, unknown>>) => Promise<T>, opts?: { begin?: string }): Promise<T>;
  /**
   * SQL text that runs `stmt` with `args` (SQL literals: {@link sqlLiteral}), for the parameterless SQL of a
   * transaction's `begin` and {@link Transaction.atCommit}: `EXECUTE <name>(args)` where the database keeps the
   * statement prepared on each connection (PostgreSQL with prepared statements on: a transaction prepares every
   * statement a call was made for on its connection first), else the statement with the literals in place of its
   * parameters (PGlite; PostgreSQL behind a transaction pooler). Prepared, the statement is not parsed and planned
   * again on every run — for a statement run on every shadow batch, a good part of the database's CPU. A statement
   * must be valid for the schema: every transaction with a `begin` on a connection that has not prepared it yet
   * carries its PREPARE.
   */
  sqlCall(stmt: NamedSql, args: readonly string[]): string;
  /** LISTEN on `channel`; returns a function that stops listening. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /**
   * Calls `fn` whenever notifications may have been missed: the LISTEN connection dropped (NOTIFYs sent until it is
   * back are lost), and once more when it is back and listening again. A cache kept fresh by NOTIFY forgets
   * everything then. Never on PGlite (its notifications stay in-process). Returns a function that stops the calls.
   */
  onListenGap(fn: () => void): () => void;
  /** NOTIFY `channel` with `payload` (delivered to every listener, in this process or another). */
  notify(channel: string, payload: string): Promise<void>;
  /**
   * Opens a {@link LockSession}: session-level advisory locks on one dedicated connection (PostgreSQL), or an
   * in-memory table shared by the sessions of this Db (PGlite: one process, nobody else to exclude).
   */
  createLockSession(): Promise<LockSession>;
  /** Closes the pool / the PGlite instance (and releases the PGlite lockfile). */
  close(): Promise<void>;
}

/**
 * Class id of every lock taken through a {@link LockSession}: `pg_try_advisory_lock(LOCK_SESSION_CLASS, key)`.
 * The two-int4 form never collides with the one-bigint form used by transaction-scoped locks (migrations, devices).
 */
export const LOCK_SESSION_CLASS = 0x5359_0001;

/**
 * Long-lived, exclusive locks (one per broker for ownership of its request subscriptions), held by a session:
 * every lock lives exactly as long as the session. A session is never re-opened: once lost, open a new one.
 */
export interface LockSession {
  /**
   * Takes lock `key` (an int4) when no other session holds it. Resolves true when this session holds it (also when
   * it already did: locks never stack), false when another session does. Rejects when the session is lost or closed.
   */
  tryLock(key: number): Promise<boolean>;
  /** Releases `key` if this session holds it. Never rejects: a lost session has released everything already. */
  unlock(key: number): Promise<void>;
  /**
   * Calls `cb` once when the session is lost (its connection dropped or stopped answering): every lock it held is
   * released, possibly already taken by another session. Not called after `close()`. Returns an unsubscribe function.
   */
  onLost(cb: (err: Error) => void): () => void;
  /** Releases every lock and closes the session. Idempotent. */
  close(): Promise<void>;
}

/**
 * A string as an SQL literal, for the few statements that must go without parameters ({@link Db.transaction}'s
 * `begin`): single quotes doubled, and the `E''` form with doubled backslashes when there is a backslash (the same
 * rule as `pg`'s `escapeLiteral`). NUL cannot be in a PostgreSQL string and is refused.
 */
export function sqlLiteral(value: string): string {
  if (value.includes('\u0000')) throw new Error('an SQL literal cannot hold NUL');
  const quoted = `'${value.replaceAll("'", "''")}'`;
  return value.includes('\\') ? ` E${quoted.replaceAll('\\', '\\\\')}` : quoted;
}
