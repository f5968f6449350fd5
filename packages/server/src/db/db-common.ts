/**
 * Pieces shared by the two {@link Db} implementations, so that PostgreSQL and PGlite behave alike.
 */

/** Type OID of PostgreSQL `int8` / `bigint`. */
export const INT8_OID = 20;

/**
 * Parses an `int8` column. A value in the safe-integer range becomes a JS `number` (versions, ids and counters
 * all live there); a larger one stays the exact decimal string that `pg` would return by default, rather than
 * silently losing precision or becoming a `BigInt` that `JSON.stringify` refuses.
 */
export function parseInt8(text: string): number | string {
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : text;
}

/**
 * LISTEN/NOTIFY channel names accepted by both implementations: a lower-case SQL identifier.
 *
 * Why so strict: PGlite interpolates the channel into `LISTEN …` unquoted (so anything else is an injection
 * risk there) and folds unquoted names to lower case, while `pg_notify()` takes the name verbatim. Restricting
 * names to lower-case identifiers makes the two spell a channel the same way.
 */
export const CHANNEL_RE = /^[a-z_][a-z0-9_]{0,62}$/;

export function assertChannel(channel: string): void {
  if (!CHANNEL_RE.test(channel)) {
    throw new TypeError(`invalid LISTEN/NOTIFY channel ${JSON.stringify(channel)}: use a lower-case identifier matching ${String(CHANNEL_RE)}`);
  }
}

/** Thrown by a transaction handle used after its transaction ended (a forgotten `await`, a leaked handle). */
export function transactionClosedError(): Error {
  return new Error('transaction is closed: a query ran on a transaction handle after COMMIT/ROLLBACK (missing await?)');
}

/** A {@link LockSession} key is the second int4 of `pg_try_advisory_lock(int4, int4)`. */
export function assertLockKey(key: number): void {
  if (!Number.isInteger(key) || key < -2_147_483_648 || key > 2_147_483_647) {
    throw new TypeError(`invalid lock key ${String(key)}: use an int4 (a broker id)`);
  }
}
