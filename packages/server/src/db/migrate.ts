/**
 * Schema migrations: numbered files `NNN_name.sql` in `./migrations/`, applied in order at start-up, each in
 * its own transaction together with its row in `schema_migrations`. Idempotent.
 *
 * Several server instances may start at once on one PostgreSQL: every migration transaction first takes a
 * transaction-scoped advisory lock, so they apply one at a time and a latecomer sees the version already
 * recorded and skips it. (On PGlite the lock is trivially free; its single connection serialises anyway.)
 */
import { readdir, readFile } from 'node:fs/promises';
import type { Logger } from '../log.ts';
import type { Db, Queryable } from './db.ts';

/** Advisory lock key of the migrator: ASCII "swyd-mig" as a bigint, unlikely to clash with anyone else's. */
const MIGRATION_LOCK_KEY = '8320604460364032359';

const FILE_RE = /^(\d{3})_([a-z0-9_]+)\.sql$/;

export interface MigrationFile {
  version: number;
  name: string;
  sql: string;
}

/** Reads the migration files of `dir` (default: this module's `migrations/`), sorted by version. */
export async function loadMigrations(dir: URL | string = new URL('./migrations/', import.meta.url)): Promise<MigrationFile[]> {
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  const out: MigrationFile[] = [];
  for (const file of files) {
    const m = FILE_RE.exec(file);
    if (!m) throw new Error(`migration file ${file} is not named NNN_name.sql (lower-case name, 3-digit version)`);
    const version = Number(m[1]);
    const previous = out[out.length - 1];
    if (previous?.version === version) throw new Error(`two migration files share version ${version}: ${previous.name}, ${file}`);
    const url = typeof dir === 'string' ? `${dir.replace(/\/?$/, '/')}${file}` : new URL(file, dir);
    out.push({ version, name: file.slice(0, -'.sql'.length), sql: await readFile(url, 'utf8') });
  }
  return out;
}

async function lock(tx: Queryable): Promise<void> {
  await tx.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
}

/** Applies every migration not yet recorded; returns the names it applied (empty when up to date). */
export async function migrate(db: Db, log: Logger, opts: { dir?: URL | string } = {}): Promise<{ applied: string[] }> {
  const mlog = log.child({ component: 'migrate' });
  const files = await loadMigrations(opts.dir);

  // CREATE TABLE IF NOT EXISTS is not safe against a concurrent twin (unique violation in pg_type): lock first.
  const done = await db.transaction(async (tx) => {
    await lock(tx);
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      version    integer PRIMARY KEY,
      name       text NOT NULL,
      applied_at timestamptz NOT NULL DEFAULT now()
    )`);
    const res = await tx.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations ORDER BY version');
    return res.rows;
  });

  const known = new Set(files.map((f) => f.version));
  const unknown = done.filter((r) => !known.has(r.version));
  if (unknown.length > 0) {
    mlog.warn({ versions: unknown.map((r) => `${r.version} ${r.name}`) }, 'the database has migrations this server does not know: it is older than the schema');
  }

  const applied: string[] = [];
  const doneVersions = new Set(done.map((r) => r.version));
  for (const file of files) {
    if (doneVersions.has(file.version)) continue;
    const started = performance.now();
    const didApply = await db.transaction(async (tx) => {
      await lock(tx);
      // Another instance may have applied it while we waited for the lock.
      const seen = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [file.version]);
      if (seen.rows.length > 0) return false;
      try {
        await tx.query(file.sql);
      } catch (err) {
        throw new Error(`migration ${file.name} failed: ${(err as Error).message}`, { cause: err });
      }
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [file.version, file.name]);
      return true;
    });
    if (didApply) {
      applied.push(file.name);
      mlog.info({ migration: file.name, ms: Math.round(performance.now() - started) }, 'migration applied');
    }
  }
  return { applied };
}
