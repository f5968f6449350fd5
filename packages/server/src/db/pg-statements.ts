/**
 * Statements PostgreSQL keeps prepared on each pooled connection, so that it parses and plans them once per
 * connection instead of on every call: parameterised queries by protocol-level name ({@link createStatementNames}),
 * and the parameterless SQL of transactions' `begin`/`atCommit` messages by SQL `PREPARE`/`EXECUTE`
 * ({@link createSqlCalls}).
 */
import { checkSqlCallArgs, inlineSqlCall, type NamedSql } from './db.ts';

/** PostgreSQL's answer to a prepared `SELECT *` whose table gained or lost a column since it was prepared. */
export const isStalePlan = (err: unknown): boolean =>
  (err as { code?: string }).code === '0A000' && /cached plan must not change result type/.test((err as Error).message);

/**
 * Names for parameterised statements, so that `pg` prepares each on a connection once and later only binds and
 * executes it: PostgreSQL then skips parsing, analysing and (after a few runs, when its generic plan is as good)
 * planning. Measured on bench/migration-latency: the database's CPU −30 %, a move's completion −4 ms. Our SQL keeps
 * values out of the text (jsonb arrays rather than variable VALUES lists), so the set of texts is small; the first
 * `max` distinct texts of the process get a name, later ones run unnamed, so a connection never holds more than
 * `max` statements. A statement PostgreSQL refuses as stale after a schema change (a newer instance migrated the
 * tables under this one) is dropped from the names and from then on runs unnamed.
 */
export function createStatementNames(max: number) {
  const names = new Map<string, string | null>();
  let next = 0;
  return {
    of(sql: string): string | undefined {
      let name = names.get(sql);
      if (name === undefined && next < max) names.set(sql, (name = `switchyard_s${++next}`));
      return name ?? undefined;
    },
    /** Never again prepare this text (its prepared form went stale). */
    drop(sql: string): void {
      names.set(sql, null);
    },
  };
}
export type StatementNames = ReturnType<typeof createStatementNames>;

/**
 * {@link Db.sqlCall} on PostgreSQL: with `prepare`, every statement a call was made for is prepared (SQL `PREPARE`,
 * which outlives the transaction) on each pooled connection by the first transaction that has a `begin` or
 * `atCommit` message there, in that message; without (a transaction pooler would hand the next transaction another
 * server connection), calls are the statements with their literals in place.
 */
export function createSqlCalls(prepare: boolean) {
  const statements = new Map<string, NamedSql>();
  const preparedOn = new WeakMap<object, Set<string>>();
  return {
    call(stmt: NamedSql, args: readonly string[]): string {
      if (!prepare) return inlineSqlCall(stmt, args);
      checkSqlCallArgs(stmt, args); // not the inline text: a regex pass over the SQL per call, on every shadow batch
      const known = statements.get(stmt.name);
      if (known === undefined) {
        if (!/^[a-z_][a-z0-9_]{0,62}$/.test(stmt.name)) throw new Error(`not a statement name: ${JSON.stringify(stmt.name)}`);
        statements.set(stmt.name, stmt);
      } else if (known.sql !== stmt.sql || known.types.join() !== stmt.types.join()) {
        throw new Error(`two different statements named ${stmt.name}`);
      }
      return `EXECUTE ${stmt.name}(${args.join(', ')})`;
    },
    /** `PREPARE …; ` for every statement not yet prepared on `client` (marked prepared from now on), or ''. */
    toPrepare(client: object): string {
      let done = preparedOn.get(client);
      if (done === undefined) preparedOn.set(client, (done = new Set()));
      let sql = '';
      for (const [name, stmt] of statements) {
        if (done.has(name)) continue;
        done.add(name);
        sql += `PREPARE ${name}(${stmt.types.join(', ')}) AS ${stmt.sql}; `;
      }
      return sql;
    },
  };
}
