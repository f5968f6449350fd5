import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { migrate } from '../../src/db/migrate.ts';
import { createPgliteDb } from '../../src/db/pglite-db.ts';
import { silentLogger } from '../../src/log.ts';
import { assertError, createHarness } from './harness.ts';
import { apiSuite } from './api-suite.ts';

apiSuite('PGlite', {
  open: () => createPgliteDb(undefined),
  close: (db) => db.close(),
});

describe('readiness without a database (PGlite)', () => {
  it('answers 503 NOT_READY naming the database once it is gone', async () => {
    const db = await createPgliteDb(undefined);
    await migrate(db, silentLogger());
    const h = await createHarness(db);
    try {
      assert.equal((await h.call('GET', '/readyz', { token: null })).statusCode, 200);
      await db.close();
      const err = assertError(await h.call('GET', '/readyz', { token: null }), 503, 'NOT_READY', 'database');
      assert.equal(err.database, 'failed');
      assert.equal((await h.call('GET', '/healthz', { token: null })).statusCode, 200);
    } finally {
      await h.app.close();
    }
  });
});
