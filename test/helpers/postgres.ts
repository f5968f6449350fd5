/**
 * A fresh PostgreSQL database per caller.
 *
 * Fast path: with `SWITCHYARD_TEST_PG_URL` (a superuser URL to a running cluster — `npm test` and `.ci/run` start
 * one shared cluster and set it), `startPostgres()` creates database `sy_<random>` there (≈ tens of ms) and
 * `stop()` drops it, terminating its connections. Without it, `startPostgres()` runs its own throwaway cluster
 * (initdb + pg_ctl, ≈ 1–2 s) holding one fresh database, and `stop()` stops it and removes its temp dir.
 *
 * Guard the suite with `realServers(['postgres'])` from `./real.ts`.
 */
import { createDatabase, dropDatabase, startPgCluster } from '../../scripts/test-servers.mjs';

export interface TestPostgres {
  /** URL of a fresh, empty database owned by a superuser (trust auth on 127.0.0.1, no password). */
  url: string;
  /** Drops the database (or stops the private cluster). Close your pools first. Idempotent. */
  stop(): Promise<void>;
}

export async function startPostgres(): Promise<TestPostgres> {
  const shared = process.env.SWITCHYARD_TEST_PG_URL;
  if (shared) {
    const db = await createDatabase(shared);
    let stopped = false;
    return {
      url: db.url,
      async stop() {
        if (stopped) return;
        stopped = true;
        await dropDatabase(shared, db.name);
      },
    };
  }
  const cluster = await startPgCluster();
  try {
    const db = await createDatabase(cluster.url);
    return { url: db.url, stop: () => cluster.stop() };
  } catch (err) {
    await cluster.stop();
    throw err;
  }
}
