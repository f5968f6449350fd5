/**
 * Rows an assignment inserts already leased to its own instance (`enqueueLeased`) and delivers the moment it
 * commits (`deliverLeased`): no other dispatcher takes them while the lease holds, a failed delivery is retried
 * like any row, and rows whose instance died before delivering go out once the lease has run out.
 * On PGlite (the SQL is the same on PostgreSQL, where the assignment suites drive this path end to end).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { systemClock } from '../../src/clock.ts';
import type { Db } from '../../src/db/db.ts';
import { migrate } from '../../src/db/migrate.ts';
import { createPgliteDb } from '../../src/db/pglite-db.ts';
import { silentLogger } from '../../src/log.ts';
import { createOutboxDispatcher, type OutboxDispatcher } from '../../src/outbox/outbox-dispatcher.ts';
import { enqueueLeased, type OutboxRow } from '../../src/outbox/outbox.store.ts';
import { waitFor } from '../../../../test/helpers/wait.ts';

describe('outbox rows leased at insert', () => {
  let db: Db;
  const dispatchers: OutboxDispatcher[] = [];
  before(async () => {
    db = await createPgliteDb(undefined);
    await migrate(db, silentLogger());
  });
  after(async () => {
    await Promise.all(dispatchers.map((d) => d.stop()));
    await db?.close();
  });

  function dispatcher(deliver: (row: OutboxRow, ctx: { justCommitted: boolean }) => Promise<void>, leaseSeconds = 15): OutboxDispatcher {
    const d = createOutboxDispatcher({ db, log: silentLogger(), clock: systemClock, deliver, leaseSeconds, backoff: { baseMs: 50, maxMs: 50 }, safetyIntervalMs: 0 });
    dispatchers.push(d);
    return d;
  }
  const publish = (topic: string) => ({ kind: 'mqtt.publish' as const, payload: { brokerId: 1, topic, body: '{}', qos: 1 as const } });
  const left = async (): Promise<number> => Number((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM outbox')).rows[0]!.n);

  it('is delivered by its own instance at once, in order, and never claimed by another dispatcher meanwhile', async () => {
    const other: string[] = [];
    const bystander = dispatcher(async (row) => void other.push(row.kind === 'mqtt.publish' ? row.payload.topic : row.kind));
    await bystander.start();
    const rows = await db.transaction((tx) => enqueueLeased(tx, [publish('t/1'), publish('t/2')], 15));
    assert.deepEqual(rows.map((r) => r.attempts), [1, 1]);
    bystander.wake();
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(other, [], 'leased rows are not claimable');
    assert.equal(await left(), 2);

    const seen: Array<[string, boolean]> = [];
    const own = dispatcher(async (row, ctx) => void seen.push([row.kind === 'mqtt.publish' ? row.payload.topic : row.kind, ctx.justCommitted]));
    own.deliverLeased(rows);
    await waitFor(async () => (await left()) === 0, { message: 'rows delivered and deleted' });
    assert.deepEqual(seen, [['t/1', true], ['t/2', true]]);
    assert.equal(own.leasedDelivered, 2);
    assert.deepEqual(other, []);
  });

  it('retries a failed delivery the ordinary way', async () => {
    const seen: boolean[] = [];
    let failures = 1;
    const d = dispatcher(async (_row, ctx) => {
      seen.push(ctx.justCommitted);
      if (failures-- > 0) throw new Error('broker away');
    });
    const rows = await db.transaction((tx) => enqueueLeased(tx, [publish('t/retry')], 15));
    d.deliverLeased(rows);
    await waitFor(async () => (await left()) === 0, { message: 'delivered on the retry' });
    assert.deepEqual(seen, [true, false], 'first at commit, then by a round (which re-checks what it delivers)');
  });

  it('goes out through any dispatcher once the lease of an instance that died has run out', async () => {
    const seen: boolean[] = [];
    const survivor = dispatcher(async (_row, ctx) => void seen.push(ctx.justCommitted));
    await survivor.start();
    // The instance that inserted these dies before delivering: nobody calls deliverLeased.
    await db.transaction((tx) => enqueueLeased(tx, [publish('t/orphan')], 1));
    survivor.wake();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await left(), 1, 'still leased');
    await waitFor(
      async () => {
        survivor.wake();
        return (await left()) === 0;
      },
      { timeoutMs: 5000, intervalMs: 200, message: 'delivered after the lease' },
    );
    assert.deepEqual(seen, [false]);
  });
});
