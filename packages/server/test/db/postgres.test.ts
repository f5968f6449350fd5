import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { loadMigrations, migrate } from '../../src/db/migrate.ts';
import { openDb } from '../../src/db/open-db.ts';
import { createPgDb } from '../../src/db/pg-db.ts';
import { LOAD_ROUTES_AND_SHADOWS_SQL, loadRoutesAndShadowsSqlCall, lockDevicesSql, routesAndShadowsOf } from '../../src/shadows/shadows.store.ts';
import { LOCK_SESSION_CLASS, inlineSqlCall } from '../../src/db/db.ts';
import { createLogger, silentLogger } from '../../src/log.ts';
import { startPostgres, type TestPostgres } from '../../../../test/helpers/postgres.ts';
import { realServers } from '../../../../test/helpers/real.ts';
import { dbContract } from './db-contract.ts';

const { skip } = realServers(['postgres']);
let contractServer: TestPostgres | undefined;

dbContract(
  'PostgreSQL',
  {
    kind: 'postgres',
    async open() {
      contractServer = await startPostgres();
      return createPgDb(contractServer.url, { max: 4 });
    },
    cleanup: async () => contractServer?.stop(),
  },
  { skip },
);

describe('createPgDb (PostgreSQL only)', { skip }, () => {
  let server: TestPostgres;
  let admin: pg.Client;
  const lines: string[] = [];
  const log = createLogger({ level: 'debug', destination: { write: (s: string) => void lines.push(s) } });

  before(async () => {
    server = await startPostgres();
    admin = new pg.Client({ connectionString: server.url });
    await admin.connect();
  });
  after(async () => {
    await admin?.end();
    await server?.stop();
  });

  const terminate = (appName: string) =>
    // This database only: the cluster is shared with other test files' servers, whose connections carry the same names.
    admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND datname = current_database() AND pid <> pg_backend_pid()', [appName]);

  it('re-LISTENs every channel after the listener connection is killed, and logs it', async () => {
    const db = await createPgDb(server.url, { log, listenRetryBaseMs: 20, listenRetryMaxMs: 200 });
    try {
      const got: string[] = [];
      const stop = await db.listen('sy_reconnect', (p) => got.push(p));
      await db.notify('sy_reconnect', 'before');
      await waitUntil(() => got.includes('before'));
      const killed = await terminate('switchyard-listen');
      assert.equal(killed.rowCount, 1);
      // Until the reconnect lands, notifications are lost: keep sending until one arrives.
      const deadline = Date.now() + 10_000;
      let i = 0;
      while (!got.some((p) => p.startsWith('after-')) && Date.now() < deadline) {
        await db.notify('sy_reconnect', `after-${i++}`);
        await sleep(50);
      }
      assert.ok(got.some((p) => p.startsWith('after-')), `delivered after reconnect: ${JSON.stringify(got)}`);
      assert.ok(lines.some((l) => l.includes('LISTEN connection lost')), 'drop logged');
      assert.ok(lines.some((l) => l.includes('LISTEN connection re-established')), 'reconnect logged');
      await stop();
    } finally {
      await db.close();
    }
  });

  it('tells onListenGap handlers when the listener connection drops and again when it is back', async () => {
    const db = await createPgDb(server.url, { log, listenRetryBaseMs: 20, listenRetryMaxMs: 200 });
    try {
      let gaps = 0;
      const stopGaps = db.onListenGap(() => gaps++);
      const got: string[] = [];
      await db.listen('sy_gap', (p) => got.push(p));
      assert.equal(gaps, 0);
      assert.equal((await terminate('switchyard-listen')).rowCount, 1);
      await waitUntil(() => gaps >= 2); // dropped, then listening again
      await db.notify('sy_gap', 'after');
      await waitUntil(() => got.includes('after'));
      stopGaps();
      assert.equal((await terminate('switchyard-listen')).rowCount, 1);
      await db.notify('sy_gap', 'x').catch(() => undefined);
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(gaps, 2, 'a stopped handler is not called again');
    } finally {
      await db.close();
    }
  });

  it('logs a pooled connection that dies while idle and keeps serving queries', async () => {
    const db = await createPgDb(server.url, { log, max: 2 });
    try {
      await Promise.all([db.query('SELECT pg_sleep(0.05)'), db.query('SELECT pg_sleep(0.05)')]); // two idle clients
      lines.length = 0;
      const killed = await terminate('switchyard');
      // Wait for every killed client: one not yet noticed would be handed to the next query, which then fails.
      await waitUntil(() => lines.filter((l) => l.includes('idle PostgreSQL connection failed')).length >= (killed.rowCount ?? 0));
      assert.deepEqual((await db.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    } finally {
      await db.close();
    }
  });

  it('survives the connection dying inside a transaction: rejects, and the pool recovers', async () => {
    const db = await createPgDb(server.url, { log, max: 1 });
    try {
      await assert.rejects(
        db.transaction(async (tx) => {
          const { rows } = await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
          await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
          await tx.query('SELECT 1');
        }),
      );
      assert.deepEqual((await db.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    } finally {
      await db.close();
    }
  });

  it('reports a lock session lost when its backend is terminated, and its locks go to another session', async () => {
    const db = await createPgDb(server.url, { log });
    try {
      const a = await db.createLockSession();
      const b = await db.createLockSession();
      const lost: Error[] = [];
      a.onLost((err) => lost.push(err));
      assert.equal(await a.tryLock(7), true);
      assert.equal(await b.tryLock(7), false);
      const holder = await admin.query<{ pid: number; app: string }>(
        `SELECT l.pid, a.application_name AS app FROM pg_locks l JOIN pg_stat_activity a USING (pid)
          WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 2 AND l.granted
            AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        [LOCK_SESSION_CLASS, 7],
      );
      assert.deepEqual(holder.rows.map((r) => r.app), ['switchyard-locks'], 'held on the dedicated connection');
      await admin.query('SELECT pg_terminate_backend($1)', [holder.rows[0]!.pid]);
      await waitUntil(() => lost.length === 1);
      assert.equal(await b.tryLock(7), true, 'PostgreSQL released the lock with the connection');
      await assert.rejects(a.tryLock(7), /lost/);
      await a.unlock(7); // never rejects
      await a.close();
      await b.close();
      await sleep(20);
      assert.equal(lost.length, 1, 'onLost runs once');
    } finally {
      await db.close();
    }
  });

  it('declares a lock session lost when its heartbeat goes unanswered', async (t) => {
    const db = await createPgDb(server.url, { log, lockHeartbeatMs: 100 });
    try {
      const a = await db.createLockSession();
      const lost: Error[] = [];
      a.onLost((err) => lost.push(err));
      assert.equal(await a.tryLock(8), true);
      // Stop the backend (SIGSTOP): the socket stays open but nothing answers, as in a network partition.
      const { rows } = await admin.query<{ pid: number }>(
        // pg_locks spans the whole (shared) cluster: only this test's database.
        `SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND classid = $1 AND objid = $2 AND granted
            AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`,
        [LOCK_SESSION_CLASS, 8],
      );
      const pid = rows[0]!.pid;
      try {
        process.kill(pid, 0);
      } catch (err) {
        t.skip(`cannot signal the PostgreSQL backend from here (${(err as Error).message})`);
        await a.close();
        return;
      }
      process.kill(pid, 'SIGSTOP');
      try {
        await waitUntil(() => lost.length === 1, 3000);
        assert.match(lost[0]!.message, /did not answer within 100 ms/);
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await a.close();
    } finally {
      await db.close();
    }
  });

  it('applies each migration exactly once when two instances migrate a fresh database at once', async () => {
    const fresh = await startPostgres();
    const [a, b] = await Promise.all([createPgDb(fresh.url), createPgDb(fresh.url)]);
    try {
      const [ra, rb] = await Promise.all([migrate(a, silentLogger()), migrate(b, silentLogger())]);
      const all = (await loadMigrations()).map((m) => m.name);
      assert.deepEqual([...ra.applied, ...rb.applied].sort(), all);
      const rows = await a.query('SELECT version FROM schema_migrations');
      assert.equal(rows.rowCount, all.length);
    } finally {
      await Promise.all([a.close(), b.close()]);
      await fresh.stop();
    }
  });

  it('keeps parameterised statements prepared per connection, at most `preparedStatements` distinct texts', async () => {
    const countPrepared = async (db: Awaited<ReturnType<typeof createPgDb>>) =>
      // No params: the simple protocol, never prepared itself.
      Number((await db.query<{ n: string }>("SELECT count(*) AS n FROM pg_prepared_statements WHERE name LIKE 'switchyard_s%'")).rows[0]!.n);
    const bounded = await createPgDb(server.url, { max: 1, preparedStatements: 2 });
    try {
      for (let round = 0; round < 2; round++) for (let i = 1; i <= 4; i++) assert.equal((await bounded.query<{ x: number }>(`SELECT $1::int + ${i} AS x`, [round])).rows[0]!.x, round + i);
      assert.equal(await countPrepared(bounded), 2, 'the first two texts prepared once, the other two unnamed');
      await bounded.transaction(async (tx) => assert.equal((await tx.query<{ x: number }>('SELECT $1::int + 1 AS x', [5])).rows[0]!.x, 6));
    } finally {
      await bounded.close();
    }
    const off = await createPgDb(server.url, { max: 1, preparedStatements: 0 });
    try {
      await off.query('SELECT $1::int AS x', [1]);
      assert.equal(await countPrepared(off), 0);
    } finally {
      await off.close();
    }
  });

  it('runs a prepared `SELECT *` again, unnamed, after its table changed shape under it', async () => {
    const db = await createPgDb(server.url, { max: 1 });
    try {
      await db.query('CREATE TABLE stale_plan (a int)');
      await db.query('INSERT INTO stale_plan VALUES ($1)', [1]);
      assert.deepEqual((await db.query('SELECT * FROM stale_plan WHERE a = $1', [1])).rows, [{ a: 1 }]);
      await admin.query('ALTER TABLE stale_plan ADD COLUMN b int'); // another instance's migration, say
      assert.deepEqual((await db.query('SELECT * FROM stale_plan WHERE a = $1', [1])).rows, [{ a: 1, b: null }]);
      await db.transaction(async (tx) => assert.deepEqual((await tx.query('SELECT * FROM stale_plan WHERE a = $1', [1])).rows, [{ a: 1, b: null }]));
    } finally {
      await db.query('DROP TABLE IF EXISTS stale_plan');
      await db.close();
    }
  });

  it('prepares sqlCall statements once per connection, and a connection whose preparing transaction failed is replaced', async () => {
    const db = await createPgDb(server.url, { max: 1, log: silentLogger() });
    try {
      const stmt = { name: 'switchyard_t_double', sql: 'SELECT ($1::int * 2) AS v', types: ['int'] };
      const backend = async (begin: string) =>
        db.transaction(async (tx, begun) => ({ v: begun.rows[0]?.v, pid: (await tx.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid }), { begin });
      const first = await backend(db.sqlCall(stmt, ['21']));
      const again = await backend(db.sqlCall(stmt, ['5']));
      assert.deepEqual([first.v, again.v], [42, 10]);
      assert.equal(again.pid, first.pid, 'one pooled connection');
      // A new statement's PREPARE rides on a message that then fails: the connection is dropped, not trusted.
      const other = { name: 'switchyard_t_triple', sql: 'SELECT ($1::int * 3) AS v', types: ['int'] };
      await assert.rejects(db.transaction(async () => undefined, { begin: `${db.sqlCall(other, ['1'])}; SELECT 1/0` }), /division by zero/);
      const after = await backend(`${db.sqlCall(other, ['3'])}`);
      assert.equal(after.v, 9);
      assert.notEqual(after.pid, first.pid, 'a fresh connection, which prepared both statements again');
    } finally {
      await db.close();
    }
  });

  it('takes device locks in the BEGIN round trip: a second writer of the device waits for the first to commit', async () => {
    const db = await createPgDb(server.url, { max: 2 });
    try {
      const order: string[] = [];
      let releaseFirst!: () => void;
      const firstHolds = new Promise<void>((r) => (releaseFirst = r));
      let firstIn!: () => void;
      const firstStarted = new Promise<void>((r) => (firstIn = r));
      const first = db.transaction(
        async () => {
          order.push('first in');
          firstIn();
          await firstHolds;
          order.push('first out');
        },
        { begin: lockDevicesSql(db, ["dev-'quoted'", 'dev-b']) },
      );
      await firstStarted;
      const second = db.transaction(async () => void order.push('second in'), { begin: lockDevicesSql(db, ['dev-b']) });
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(order, ['first in'], 'the second waits on the lock');
      releaseFirst();
      await Promise.all([first, second]);
      assert.deepEqual(order, ['first in', 'first out', 'second in']);
    } finally {
      await db.close();
    }
  });

  it("reads a shadow batch's devices and shadows by index probes, even under the generic plan", async () => {
    const fresh = await startPostgres();
    const db = await openDb({ databaseUrl: fresh.url, dataDir: '/nonexistent-unused', log: silentLogger() });
    try {
      // A fleet big enough that a planner guessing 100 keys would rather hash them against a sequential scan.
      await db.query(`INSERT INTO devices (uuid, name, token_hash) SELECT 'dev-' || i, 'dev-' || i, 'x' FROM generate_series(1, 2000) AS i`);
      await db.query(`INSERT INTO device_shadows (device_uuid, shadow_name, reported, metadata, version)
                        SELECT 'dev-' || i, 'bench', '{"n":1}', '{}', 1 FROM generate_series(1, 2000) AS i`);
      await db.query('ANALYZE devices, device_shadows');
      const plan = await db.transaction(async (tx) => {
        await tx.query('SET LOCAL plan_cache_mode = force_generic_plan');
        await tx.query(`PREPARE batch_read(jsonb, jsonb) AS ${LOAD_ROUTES_AND_SHADOWS_SQL}`);
        const { rows } = await tx.query<{ 'QUERY PLAN': string }>(
          `EXPLAIN EXECUTE batch_read('["dev-1","dev-2","nobody"]', '[{"u":"dev-1","n":"bench"},{"u":"dev-2","n":"other"}]')`,
        );
        const read = await tx.query<{ routes: unknown[]; shadows: unknown[] }>(
          `EXECUTE batch_read('["dev-1","dev-2","nobody"]', '[{"u":"dev-1","n":"bench"},{"u":"dev-2","n":"other"}]')`,
        );
        await tx.query('DEALLOCATE batch_read');
        return { text: rows.map((r) => r['QUERY PLAN']).join('\n'), read: read.rows[0]! };
      });
      assert.doesNotMatch(plan.text, /Seq Scan/, plan.text);
      assert.match(plan.text, /Index Scan using devices_pkey/);
      assert.match(plan.text, /Index Scan using device_shadows_pkey/);
      // One entry per key, null where nothing is stored.
      assert.equal(plan.read.routes.filter((r) => r !== null).length, 2);
      assert.equal(plan.read.routes.length, 3);
      assert.deepEqual(plan.read.shadows.map((s) => (s === null ? null : (s as { version: number }).version)), [1, null]);

      const keys = [
        { deviceUuid: 'dev-1', shadowName: 'bench' },
        { deviceUuid: "dev-'2", shadowName: 'other' },
      ];
      // Behind a transaction pooler a writing batch sends the statement with its values as literals, planned each
      // time: index probes as well.
      const inline = loadRoutesAndShadowsSqlCall({ sqlCall: inlineSqlCall }, ['dev-1', "dev-'2", 'nobody'], keys);
      const inlinePlan = (await db.query<{ 'QUERY PLAN': string }>(`EXPLAIN ${inline}`)).rows.map((r) => r['QUERY PLAN']).join('\n');
      assert.doesNotMatch(inlinePlan, /Seq Scan/, inlinePlan);
      assert.match(inlinePlan, /Index Scan using device_shadows_pkey/);
      // Else as a call of the statement, prepared on the connection by the transaction that first needs it.
      const call = loadRoutesAndShadowsSqlCall(db, ['dev-1', "dev-'2", 'nobody'], keys);
      assert.match(call, /^EXECUTE switchyard_shadow_load\('/);
      for (const sql of [inline, call]) {
        const { read, statements } = await db.transaction(
          async (tx, begun) => ({
            read: routesAndShadowsOf(begun.rows[0]!),
            statements: (await tx.query<{ name: string }>('SELECT name FROM pg_prepared_statements ORDER BY name')).rows.map((r) => r.name),
          }),
          { begin: sql },
        );
        assert.deepEqual([...read.routes.keys()], ['dev-1']);
        assert.deepEqual([...read.shadows.values()].map((s) => [s.deviceUuid, s.shadowName, s.version]), [['dev-1', 'bench', 1]]);
        assert.ok(statements.includes('switchyard_shadow_load'), statements.join());
      }
    } finally {
      await db.close();
      await fresh.stop();
    }
  });

  it('fails to open with a clear error and no password in it', async () => {
    const url = 'postgres://someone:s3cret@127.0.0.1:1/nowhere';
    await assert.rejects(createPgDb(url), (err: Error) => {
      assert.match(err.message, /cannot connect to PostgreSQL at postgres:\/\/someone:\*\*\*@127\.0\.0\.1:1\/nowhere/);
      assert.doesNotMatch(err.message, /s3cret/);
      return true;
    });
  });

  it('opens through openDb when a database URL is given, migrated', async () => {
    const fresh = await startPostgres();
    const db = await openDb({ databaseUrl: fresh.url, dataDir: '/nonexistent-unused', log: silentLogger() });
    try {
      assert.equal(db.kind, 'postgres');
      assert.equal((await db.query('SELECT version FROM schema_migrations')).rowCount, (await loadMigrations()).length);
    } finally {
      await db.close();
      await fresh.stop();
    }
  });
});

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}
