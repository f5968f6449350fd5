/**
 * Opens the server's database: PostgreSQL when `databaseUrl` is set (production), otherwise PGlite under
 * `<dataDir>/pgdata` (embedded mode) — then brings the schema up to date.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.ts';
import type { Db } from './db.ts';
import { migrate } from './migrate.ts';
import { createPgDb } from './pg-db.ts';
import { createPgliteDb } from './pglite-db.ts';

export interface OpenDbConfig {
  /** `postgres://…` (env `DATABASE_URL`); unset = embedded PGlite. */
  databaseUrl?: string;
  /** Server data directory (env `SWITCHYARD_DATA_DIR`, default `.switchyard`); PGlite lives in `<dataDir>/pgdata`. */
  dataDir: string;
  log: Logger;
  /** PostgreSQL pool size (default 10). */
  poolMax?: number;
  /** Distinct statements kept prepared per PostgreSQL connection (default 256; 0 = none). */
  preparedStatements?: number;
}

export async function openDb(config: OpenDbConfig): Promise<Db> {
  const { log } = config;
  let db: Db;
  if (config.databaseUrl) {
    db = await createPgDb(config.databaseUrl, { log, max: config.poolMax, preparedStatements: config.preparedStatements });
  } else {
    const pgdata = join(config.dataDir, 'pgdata');
    await mkdir(pgdata, { recursive: true });
    const started = performance.now();
    db = await createPgliteDb(pgdata, { log });
    log.info({ component: 'db', dir: pgdata, ms: Math.round(performance.now() - started) }, 'embedded PGlite database opened');
  }
  try {
    await migrate(db, log);
  } catch (err) {
    await db.close().catch((closeErr: unknown) => log.warn({ err: closeErr }, 'closing the database after a failed migration failed'));
    throw err;
  }
  return db;
}
