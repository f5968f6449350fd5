import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Batcher, QueueFullError } from './shadow-batcher.ts';

/** A `process` whose batches the test finishes by hand, recording what each held. */
function manual() {
  const batches: Array<{ reqs: string[]; finish: () => void; fail: (err: Error) => void }> = [];
  const process = (reqs: string[]): Promise<string[]> =>
    new Promise((resolve, reject) => {
      batches.push({ reqs, finish: () => resolve(reqs.map((r) => `done ${r}`)), fail: reject });
    });
  return { batches, process };
}

const tick = () => new Promise<void>((r) => setImmediate(r));

describe('Batcher', () => {
  it('runs the first request at once, and batches what queues while a batch runs', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ keyOf: (r) => r, process: m.process });
    const first = b.submit('a');
    await tick();
    assert.deepEqual(m.batches.map((x) => x.reqs), [['a']]);
    const later = ['b', 'c', 'd'].map((r) => b.submit(r));
    await tick();
    assert.equal(m.batches.length, 1, 'one batch at a time per lane');
    m.batches[0]!.finish();
    assert.equal(await first, 'done a');
    await tick();
    assert.deepEqual(m.batches[1]!.reqs, ['b', 'c', 'd']);
    m.batches[1]!.finish();
    assert.deepEqual(await Promise.all(later), ['done b', 'done c', 'done d']);
    await b.idle();
    assert.deepEqual(b.stats(), { batches: 2, requests: 4 });
  });

  it('requests submitted in one turn share the first batch', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ keyOf: (r) => r, process: m.process });
    const all = ['a', 'b', 'c'].map((r) => b.submit(r));
    await tick();
    assert.deepEqual(m.batches.map((x) => x.reqs), [['a', 'b', 'c']]);
    m.batches[0]!.finish();
    await Promise.all(all);
  });

  it('a failed batch rejects its own requests only; the lane goes on', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ keyOf: (r) => r, process: m.process });
    const first = b.submit('a');
    await tick();
    const second = b.submit('b');
    m.batches[0]!.fail(new Error('boom'));
    await assert.rejects(first, /boom/);
    await tick();
    m.batches[1]!.finish();
    assert.equal(await second, 'done b');
    await b.idle();
  });

  it('a process that throws synchronously rejects its batch', async () => {
    const b = new Batcher<string, string>({
      keyOf: (r) => r,
      process: () => {
        throw new Error('sync boom');
      },
    });
    await assert.rejects(b.submit('a'), /sync boom/);
    await b.idle();
  });

  it('refuses past maxQueued with QueueFullError', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ keyOf: (r) => r, process: m.process, maxQueued: 2 });
    const first = b.submit('a');
    await tick();
    const queued = [b.submit('b'), b.submit('c')];
    await assert.rejects(b.submit('d'), QueueFullError);
    m.batches[0]!.finish();
    await first;
    await tick();
    m.batches[1]!.finish();
    await Promise.all(queued);
  });
});

describe('Batcher.push (no promise)', () => {
  it('settles each request once with its result, or with the batch error, in batch order', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ keyOf: (r) => r, process: m.process });
    const seen: string[] = [];
    const settle = (name: string) => (err: unknown, res?: string) => seen.push(err === undefined ? `${name}=${res}` : `${name}!${(err as Error).message}`);
    b.push('a', settle('a'));
    await tick();
    b.push('b', settle('b'));
    b.push('c', settle('c'));
    assert.deepEqual(seen, []);
    m.batches[0]!.finish();
    await tick();
    m.batches[1]!.fail(new Error('boom'));
    await tick();
    assert.deepEqual(seen, ['a=done a', 'b!boom', 'c!boom']);
    await b.idle();
  });

  it('settles at once (synchronously) with QueueFullError past maxQueued, and takes the request nowhere', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ keyOf: (r) => r, process: m.process, maxQueued: 1 });
    b.push('a', () => undefined);
    await tick();
    b.push('b', () => undefined);
    let refused: unknown;
    b.push('c', (err) => (refused = err));
    assert.ok(refused instanceof QueueFullError);
    m.batches[0]!.finish();
    await tick();
    assert.deepEqual(m.batches[1]!.reqs, ['b']);
    m.batches[1]!.finish();
    await b.idle();
    assert.equal(b.stats().requests, 2);
  });
});

describe('Batcher: a settle callback that throws', () => {
  it('does not stop the lane: the error goes to onSettleError, the next batch still runs and settles', async () => {
    const m = manual();
    const errors: unknown[] = [];
    const b = new Batcher<string, string>({ keyOf: (r) => r, process: m.process, onSettleError: (err) => errors.push(err) });
    b.push('a', () => {
      throw new Error('caller bug');
    });
    await tick();
    const later = b.submit('b');
    m.batches[0]!.finish();
    await tick();
    m.batches[1]!.finish();
    assert.equal(await later, 'done b');
    assert.deepEqual(errors.map((e) => (e as Error).message), ['caller bug']);
    await b.idle();
  });
});

describe('Batcher lanes', () => {
  it('runs lanes side by side, and keeps each key on its own lane in submission order', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ lanes: 8, keyOf: (r) => r.split(':')[0]!, process: m.process });
    const all = Array.from({ length: 40 }, (_, i) => b.submit(`k${i % 10}:${i}`));
    await tick();
    assert.ok(m.batches.length > 1, 'several lanes busy at once');
    // Every key's requests landed in exactly one batch, in the order submitted.
    for (let k = 0; k < 10; k++) {
      const holding = m.batches.filter((x) => x.reqs.some((r) => r.startsWith(`k${k}:`)));
      assert.equal(holding.length, 1, `key k${k} on one lane`);
      const mine = holding[0]!.reqs.filter((r) => r.startsWith(`k${k}:`)).map((r) => Number(r.split(':')[1]));
      assert.deepEqual(mine, [...mine].sort((x, y) => x - y));
    }
    for (const x of m.batches) x.finish();
    await Promise.all(all);
  });
});

describe('Batcher spillAt', () => {
  it('fills the first lane until spillAt requests wait, then spills new keys; a pending key stays on its lane', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ lanes: 2, spillAt: 2, keyOf: (r) => r.split(':')[0]!, process: m.process });
    const first = b.submit('a:1');
    await tick();
    assert.deepEqual(m.batches.map((x) => x.reqs), [['a:1']], 'lane 0 runs');
    // Lane 0 is busy: b and c wait there (queue below 2); d spills to lane 1; a, pending on lane 0, stays there.
    const rest = ['b:2', 'c:3', 'd:4', 'a:5', 'e:6'].map((r) => b.submit(r));
    await tick();
    assert.deepEqual(m.batches.map((x) => x.reqs), [['a:1'], ['d:4', 'e:6']]);
    m.batches[0]!.finish();
    await first;
    await tick();
    assert.deepEqual(m.batches[2]!.reqs, ['b:2', 'c:3', 'a:5']);
    m.batches[1]!.finish();
    m.batches[2]!.finish();
    await Promise.all(rest);
    // Nothing pending: a key goes by the rule again (lane 0 idle and empty).
    const again = b.submit('d:7');
    await tick();
    assert.deepEqual(m.batches[3]!.reqs, ['d:7']);
    m.batches[3]!.finish();
    await again;
    await b.idle();
  });

  it('a failed batch releases its keys: they go by the rule again', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ lanes: 2, spillAt: 1, keyOf: (r) => r.split(':')[0]!, process: m.process });
    const first = b.submit('a:1');
    await tick();
    const second = b.submit('b:2'); // lane 0 has nothing queued: b waits there
    m.batches[0]!.fail(new Error('boom'));
    await assert.rejects(first, /boom/);
    await tick();
    assert.deepEqual(m.batches[1]!.reqs, ['b:2'], 'lane 0 goes on with b');
    const third = b.submit('x:3'); // queued on lane 0 behind b
    // Still owned by lane 0, a would queue there too; released, it finds lane 0 full and takes idle lane 1.
    const again = b.submit('a:4');
    await tick();
    assert.deepEqual(m.batches[2]!.reqs, ['a:4']);
    for (const x of m.batches.slice(1)) x.finish();
    await Promise.all([second, again]);
    await tick();
    m.batches[3]!.finish();
    await third;
    await b.idle();
  });

  it('without spillAt, a new key takes an idle lane first', async () => {
    const m = manual();
    const b = new Batcher<string, string>({ lanes: 2, keyOf: (r) => r, process: m.process });
    const all = [b.submit('a')];
    await tick();
    all.push(b.submit('b'));
    await tick();
    assert.deepEqual(m.batches.map((x) => x.reqs), [['a'], ['b']], 'both lanes busy');
    for (const x of m.batches) x.finish();
    await Promise.all(all);
  });
});
