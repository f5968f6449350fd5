/**
 * The contract every {@link Db} implementation keeps, run against PGlite and PostgreSQL alike.
 * Where the two must differ (PGlite has one connection), the case says so and checks each.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { sqlLiteral, type Db, type DbKind, type Queryable, type Transaction } from '../../src/db/db.ts';
import { loadMigrations, migrate } from '../../src/db/migrate.ts';
import { silentLogger } from '../../src/log.ts';

export interface ContractTarget {
  kind: DbKind;
  /** Opens a fresh, empty database (not yet migrated). */
  open(): Promise<Db>;
  /** Called after the suite, once the Db is closed (drop the database, …). */
  cleanup?(): Promise<void>;
}

let seq = 0;
const unique = (prefix: string) => `${prefix}-${process.pid}-${++seq}`;

/** Builder for a broker row's insert parameters. */
function makeBroker(overrides: Partial<{ name: string; host: string; port: number }> = {}) {
  return { name: overrides.name ?? unique('broker'), host: overrides.host ?? '127.0.0.1', port: overrides.port ?? 1883 };
}

async function insertBroker(q: Queryable, b = makeBroker()): Promise<number> {
  const res = await q.query<{ id: number }>(
    `INSERT INTO mqtt_broker_config (name, protocol, host, port) VALUES ($1, 'mqtt', $2, $3) RETURNING id`,
    [b.name, b.host, b.port],
  );
  return res.rows[0]!.id;
}

async function countBrokers(q: Queryable, name: string): Promise<number> {
  const res = await q.query<{ n: number }>('SELECT count(*) AS n FROM mqtt_broker_config WHERE name = $1', [name]);
  return res.rows[0]!.n;
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Collects payloads and lets a test wait for the n-th one. */
function collector() {
  const got: string[] = [];
  const waiters: Array<{ n: number; resolve: () => void }> = [];
  return {
    got,
    push(p: string) {
      got.push(p);
      for (const w of waiters.filter((w) => got.length >= w.n)) w.resolve();
    },
    async waitFor(n: number, ms = 5000): Promise<void> {
      if (got.length >= n) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => waiters.push({ n, resolve })),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`timed out waiting for ${n} notifications, got ${JSON.stringify(got)}`)), ms);
        }),
      ]).finally(() => clearTimeout(timer));
    },
  };
}

/** Handles that keep a process alive, by type (the runner's own are in the baseline). */
function liveHandles(): Map<string, number> {
  const m = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) m.set(r, (m.get(r) ?? 0) + 1);
  return m;
}

export function dbContract(label: string, target: ContractTarget, opts: { skip?: string | false } = {}): void {
  describe(`Db contract (${label})`, { skip: opts.skip }, () => {
    let db: Db;
    let baseline: Map<string, number>;
    let firstRun: { applied: string[] };
    const log = silentLogger();

    before(async () => {
      baseline = liveHandles();
      db = await target.open();
      firstRun = await migrate(db, log);
    });

    after(async () => {
      await db?.close();
      await target.cleanup?.();
    });

    it('applies the migrations once and is idempotent', async () => {
      const all = await loadMigrations();
      assert.deepEqual(firstRun.applied, all.map((m) => m.name));
      assert.deepEqual(await migrate(db, log), { applied: [] });
      const rows = await db.query<{ version: number; name: string }>('SELECT version, name FROM schema_migrations ORDER BY version');
      assert.deepEqual(rows.rows, all.map((m) => ({ version: m.version, name: m.name })));
      const tables = await db.query<{ t: string }>(
        `SELECT table_name AS t FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`,
      );
      for (const t of ['audit_log', 'device_shadows', 'devices', 'mqtt_broker_config']) {
        assert.ok(tables.rows.some((r) => r.t === t), `table ${t} exists`);
      }
    });

    it('runs parameterised statements and stores hostile strings verbatim', async () => {
      const name = `x'); DROP TABLE devices; --${unique('')}`;
      const ins = await db.query(`INSERT INTO mqtt_broker_config (name, protocol, host, port) VALUES ($1, 'mqtt', 'h', $2)`, [name, 1884]);
      assert.equal(ins.rowCount, 1);
      const res = await db.query<{ name: string; port: number }>('SELECT name, port FROM mqtt_broker_config WHERE name = $1', [name]);
      assert.deepEqual(res.rows, [{ name, port: 1884 }]);
      assert.equal(res.rowCount, 1);
      const upd = await db.query('UPDATE mqtt_broker_config SET port = port WHERE name = $1 OR name = $2', [name, 'nobody']);
      assert.equal(upd.rowCount, 1);
    });

    it('runs several statements when given no params and returns the last result', async () => {
      const res = await db.query<{ n: number }>('CREATE TEMP TABLE multi_t (a int); INSERT INTO multi_t VALUES (1), (2); SELECT count(*) AS n FROM multi_t');
      assert.deepEqual(res.rows, [{ n: 2 }]);
      await db.query('DROP TABLE multi_t');
    });

    it('runs a transaction\'s `begin` statements first, and SQL literals round-trip exactly', async () => {
      for (const v of ["it's", 'a\\b', "\\'; DROP TABLE devices; --", '["dev-1","dev:2"]', 'ünïcødé ✓', '']) {
        assert.deepEqual((await db.query<{ v: string }>(`SELECT ${sqlLiteral(v)} AS v`)).rows, [{ v }], v);
      }
      const seen = await db.transaction(
        async (tx) => (await tx.query<{ v: string }>("SELECT current_setting('switchyard.test_begin') AS v")).rows[0]!.v,
        { begin: `SELECT set_config('switchyard.test_begin', ${sqlLiteral("o'k")}, true)` },
      );
      assert.equal(seen, "o'k", 'set inside the same transaction, before fn');
      // SET LOCAL semantics: gone with the transaction.
      assert.equal((await db.query<{ v: string }>("SELECT current_setting('switchyard.test_begin', true) AS v")).rows[0]!.v, '');
    });

    it("hands fn the last `begin` statement's result, and runs `atCommit` statements in order with the COMMIT", async () => {
      const [a, b] = [makeBroker(), makeBroker()];
      const insert = (x: { name: string; host: string; port: number }) =>
        `INSERT INTO mqtt_broker_config (name, protocol, host, port) VALUES (${sqlLiteral(x.name)}, 'mqtt', ${sqlLiteral(x.host)}, ${x.port})`;
      const seen = await db.transaction(
        async (tx, begun) => {
          tx.atCommit(insert(a));
          tx.atCommit(`UPDATE mqtt_broker_config SET port = 2001 WHERE name = ${sqlLiteral(a.name)}`); // after the insert
          // Queued, not run yet: inside the transaction the row is not there.
          assert.equal(await countBrokers(tx, a.name), 0);
          return begun.rows;
        },
        { begin: `SELECT 1 AS first; SELECT ${sqlLiteral("o'k")} AS v, 2 AS n` },
      );
      assert.deepEqual(seen, [{ v: "o'k", n: 2 }]);
      assert.deepEqual((await db.query('SELECT port FROM mqtt_broker_config WHERE name = $1', [a.name])).rows, [{ port: 2001 }]);
      assert.deepEqual(await db.transaction(async (_tx, begun) => begun.rows), [], 'no begin: no rows');

      // A failing queued statement: the statements before it, fn's own writes and the ones after it all roll back.
      await assert.rejects(
        db.transaction(async (tx) => {
          await insertBroker(tx, b);
          tx.atCommit(insert({ ...b, name: `${b.name}-2` }));
          tx.atCommit(insert(b)); // duplicate name
          tx.atCommit(insert({ ...b, name: `${b.name}-3` }));
        }),
        /duplicate key|unique/i,
      );
      for (const name of [b.name, `${b.name}-2`, `${b.name}-3`]) assert.equal(await countBrokers(db, name), 0, name);
      assert.equal(await insertBroker(db, b) > 0, true, 'the database stays usable');

      let leaked: Transaction | undefined;
      await db.transaction(async (tx) => void (leaked = tx));
      assert.throws(() => leaked!.atCommit('SELECT 1'), /transaction is closed/);
    });

    it('rejects a bad statement with the database error and stays usable', async () => {
      await assert.rejects(db.query('SELECT * FROM no_such_table WHERE a = $1', [1]), /no_such_table/);
      assert.deepEqual((await db.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    });

    it('commits a transaction and returns its result', async () => {
      const b = makeBroker();
      const id = await db.transaction(async (tx) => {
        const id = await insertBroker(tx, b);
        await tx.query('UPDATE mqtt_broker_config SET port = $2 WHERE id = $1', [id, 2000]);
        return id;
      });
      const res = await db.query<{ port: number }>('SELECT port FROM mqtt_broker_config WHERE id = $1', [id]);
      assert.deepEqual(res.rows, [{ port: 2000 }]);
    });

    it('rolls back and rethrows when the callback throws', async () => {
      const b = makeBroker();
      const boom = new Error('boom');
      await assert.rejects(
        db.transaction(async (tx) => {
          await insertBroker(tx, b);
          throw boom;
        }),
        (err) => err === boom,
      );
      assert.equal(await countBrokers(db, b.name), 0);
    });

    it('does not commit when a failed statement was caught inside the transaction', async () => {
      const b = makeBroker();
      await assert.rejects(
        db.transaction(async (tx) => {
          await insertBroker(tx, b);
          await tx.query('SELECT 1/0').catch(() => undefined); // swallowed: the transaction is aborted anyway
          return 'looks fine';
        }),
      );
      assert.equal(await countBrokers(db, b.name), 0);
    });

    it('refuses a transaction handle used after the transaction ended', async () => {
      let leaked: Queryable | undefined;
      await db.transaction(async (tx) => {
        leaked = tx;
      });
      await assert.rejects(leaked!.query('SELECT 1'), /transaction is closed/);
    });

    it(
      target.kind === 'pglite'
        ? 'makes a concurrent query wait until the transaction commits (PGlite: one connection)'
        : 'runs a concurrent query at once, without the uncommitted rows',
      async () => {
        const b = makeBroker();
        let release!: () => void;
        const gate = new Promise<void>((resolve) => (release = resolve));
        let signalInserted!: () => void;
        const inserted = new Promise<void>((resolve) => (signalInserted = resolve));
        const txDone = db.transaction(async (tx) => {
          await insertBroker(tx, b);
          signalInserted();
          await gate;
        });
        await inserted;
        const order: string[] = [];
        const count = countBrokers(db, b.name).then((n) => {
          order.push('query');
          return n;
        });
        await sleep(150);
        order.push('commit');
        release();
        await txDone;
        const n = await count;
        if (db.kind === 'pglite') {
          assert.deepEqual(order, ['commit', 'query']);
          assert.equal(n, 1);
        } else {
          assert.deepEqual(order, ['query', 'commit']);
          assert.equal(n, 0);
        }
      },
    );

    const pgliteOnly = target.kind === 'pglite' ? false : 'PostgreSQL runs it on another pooled connection';
    it('throws instead of deadlocking when db.query runs inside a transaction on PGlite', { skip: pgliteOnly }, async () => {
      await db.transaction(async () => {
        await assert.rejects(db.query('SELECT 1'), /deadlock/);
        await assert.rejects(db.transaction(async () => undefined), /deadlock/);
      });
      assert.deepEqual((await db.query('SELECT 1 AS one')).rows, [{ one: 1 }]);
    });

    it('delivers NOTIFY to every listener of the channel, and unlisten stops delivery', async () => {
      const a = collector();
      const b = collector();
      const sentinel = collector();
      const stopA = await db.listen('sy_contract', (p) => a.push(p));
      const stopB = await db.listen('sy_contract', (p) => b.push(p));
      const stopSentinel = await db.listen('sy_sentinel', (p) => sentinel.push(p));

      await db.notify('sy_contract', 'one');
      await a.waitFor(1);
      await b.waitFor(1);
      assert.deepEqual([a.got, b.got], [['one'], ['one']]);

      await stopA();
      await stopA(); // idempotent
      await db.notify('sy_contract', 'two');
      await b.waitFor(2);

      await stopB();
      await db.notify('sy_contract', 'three');
      // Notifications arrive in order on one connection: once the sentinel is here, 'three' would have been too.
      await db.notify('sy_sentinel', 'mark');
      await sentinel.waitFor(1);
      await sleep(50);
      assert.deepEqual(a.got, ['one']);
      assert.deepEqual(b.got, ['one', 'two']);
      await stopSentinel();
    });

    it('delivers a NOTIFY sent inside a transaction only when it commits', async () => {
      const c = collector();
      const stop = await db.listen('sy_tx', (p) => c.push(p));
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('SELECT pg_notify($1, $2)', ['sy_tx', 'rolled-back']);
          throw new Error('abort');
        }),
        /abort/,
      );
      await db.transaction(async (tx) => {
        await tx.query('SELECT pg_notify($1, $2)', ['sy_tx', 'committed']);
      });
      await c.waitFor(1);
      await sleep(50);
      assert.deepEqual(c.got, ['committed']);
      await stop();
    });

    it('refuses channel names that are not lower-case identifiers', async () => {
      await assert.rejects(db.listen('Bad-Name', () => undefined), /invalid LISTEN\/NOTIFY channel/);
      await assert.rejects(db.listen('x; DROP TABLE devices', () => undefined), /invalid LISTEN\/NOTIFY channel/);
      await assert.rejects(db.notify('Upper', 'p'), /invalid LISTEN\/NOTIFY channel/);
    });

    it('round-trips bigint as a number (a string beyond 2^53) and jsonb as parsed JSON', async () => {
      const uuid = unique('dev');
      await db.query('INSERT INTO devices (uuid, token_hash) VALUES ($1, $2)', [uuid, 'h']);
      const doc = { a: 1, nested: { list: [1, 'two', null, { deep: true }] }, text: 'grüße ✓', empty: {} };
      const cases: Array<[string, unknown, number | string]> = [
        ['small', { k: 1 }, 42],
        ['max-safe', doc, Number.MAX_SAFE_INTEGER],
        ['beyond', [1, 2, 3], '9223372036854775807'],
      ];
      for (const [name, desired, version] of cases) {
        await db.query(
          'INSERT INTO device_shadows (device_uuid, shadow_name, desired, version) VALUES ($1, $2, $3::jsonb, $4)',
          [uuid, name, JSON.stringify(desired), String(version)],
        );
        const res = await db.query<{ desired: unknown; version: unknown; metadata: unknown }>(
          'SELECT desired, version, metadata FROM device_shadows WHERE device_uuid = $1 AND shadow_name = $2',
          [uuid, name],
        );
        assert.deepEqual(res.rows[0], { desired, version, metadata: {} });
      }
      // A plain object parameter is serialised as JSON by both drivers (arrays are not: stringify those).
      const res = await db.query<{ j: unknown; n: unknown }>('SELECT $1::jsonb AS j, count(*) AS n FROM device_shadows WHERE device_uuid = $2', [
        { x: [1, 2] },
        uuid,
      ]);
      assert.deepEqual(res.rows[0], { j: { x: [1, 2] }, n: 3 });
    });

    it('upserts a batch encoded as one jsonb parameter (jsonb_to_recordset)', async () => {
      const prefix = unique('batch');
      const upsert = (rows: Array<{ uuid: string; name: string; token_hash: string }>) =>
        db.query<{ uuid: string; inserted: boolean }>(
          `INSERT INTO devices (uuid, name, token_hash)
           SELECT r.uuid, r.name, r.token_hash FROM jsonb_to_recordset($1::jsonb) AS r(uuid text, name text, token_hash text)
           ON CONFLICT (uuid) DO UPDATE SET name = EXCLUDED.name, updated_at = now()
           RETURNING uuid, (xmax = 0) AS inserted`,
          [JSON.stringify(rows)],
        );
      const first = Array.from({ length: 300 }, (_, i) => ({ uuid: `${prefix}-${i}`, name: `n${i}`, token_hash: `h${i}` }));
      const r1 = await upsert(first);
      assert.equal(r1.rowCount, 300);
      assert.ok(r1.rows.every((r) => r.inserted));

      const second = Array.from({ length: 200 }, (_, i) => ({ uuid: `${prefix}-${i + 200}`, name: `m${i + 200}`, token_hash: 'x' }));
      const r2 = await upsert(second);
      assert.equal(r2.rowCount, 200);
      assert.equal(r2.rows.filter((r) => r.inserted).length, 100);

      const res = await db.query<{ n: number; renamed: number }>(
        `SELECT count(*) AS n, count(*) FILTER (WHERE name LIKE 'm%') AS renamed FROM devices WHERE uuid LIKE $1`,
        [`${prefix}-%`],
      );
      assert.deepEqual(res.rows[0], { n: 400, renamed: 200 });
    });

    it('grants a lock session key to one session at a time; unlock and close free it', async () => {
      const a = await db.createLockSession();
      const b = await db.createLockSession();
      const key = 4242;
      try {
        assert.equal(await a.tryLock(key), true);
        assert.equal(await a.tryLock(key), true, 'held already: granted again, without stacking');
        assert.equal(await b.tryLock(key), false);
        assert.equal(await b.tryLock(key + 1), true, 'another key is free');
        await a.unlock(key); // once frees it: the second tryLock did not stack
        assert.equal(await b.tryLock(key), true);
        assert.equal(await a.tryLock(key), false);
        await a.unlock(key); // not held by a: no effect
        assert.equal(await a.tryLock(key), false);
        await b.close();
        assert.equal(await a.tryLock(key), true, 'closing a session releases its locks');
        assert.equal(await a.tryLock(key + 1), true);
        await assert.rejects(b.tryLock(key), /closed/);
        await assert.rejects(a.tryLock(2 ** 31), TypeError);
        await assert.rejects(a.tryLock(1.5), TypeError);
      } finally {
        await a.close();
        await a.close(); // idempotent
        await b.close();
      }
      const c = await db.createLockSession();
      assert.equal(await c.tryLock(key), true, 'nothing left behind');
      await c.close();
    });

    // Keep last: it closes the shared Db.
    it('close() leaves no open handle and is idempotent', async () => {
      const stop = await db.listen('sy_close', () => undefined);
      void stop;
      await db.close();
      await db.close();
      assert.equal(db.kind, target.kind);
      await sleep(0); // the sockets' close requests finish on the next turn
      const now = liveHandles();
      const leaked = [...now].filter(([type, n]) => n > (baseline.get(type) ?? 0));
      assert.deepEqual(leaked, [], `handles left open: ${JSON.stringify(leaked)}`);
    });
  });
}
