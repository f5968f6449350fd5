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

export interface Queryable {
  /**
   * Runs one parameterised statement ($1, $2, …). Never interpolate values into `sql`.
   * Without params (both drivers' simple protocol) `sql` may hold several statements; the last one's result
   * is returned (migrations use this). `int8` comes back as a number (a string beyond 2^53), jsonb parsed.
   * A jsonb parameter: pass `JSON.stringify(value)` — `pg` would turn a JS array into a PostgreSQL array.
   */
  query<T = Record<string, unknown>>(sql: string, params?: readonly unknown[]): Promise<QueryResult<T>>;
}

export type DbKind = 'postgres' | 'pglite';

export interface Db extends Queryable {
  readonly kind: DbKind;
  /**
   * Runs `fn` inside BEGIN … COMMIT on one connection; ROLLBACK and rethrow when it throws.
   * On PGlite (one connection) every other query waits until the transaction ends.
   */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** LISTEN on `channel`; returns a function that stops listening. */
  listen(channel: string, onPayload: (payload: string) => void): Promise<() => Promise<void>>;
  /** NOTIFY `channel` with `payload` (delivered to every listener, in this process or another). */
  notify(channel: string, payload: string): Promise<void>;
  /** Closes the pool / the PGlite instance (and releases the PGlite lockfile). */
  close(): Promise<void>;
}
