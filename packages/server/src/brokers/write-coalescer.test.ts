import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { writeCoalescer } from './write-coalescer.ts';

function fakeStream() {
  const calls: string[] = [];
  return { calls, cork: () => void calls.push('cork'), uncork: () => void calls.push('uncork') };
}

describe('writeCoalescer', () => {
  it('corks once per turn, however often it is held, and uncorks once when the turn ends', () => {
    const s = fakeStream();
    const deferred: Array<() => void> = [];
    const hold = writeCoalescer(s, (fn) => deferred.push(fn));
    hold();
    hold();
    hold();
    assert.deepEqual(s.calls, ['cork']);
    assert.equal(deferred.length, 1);
    deferred.shift()!();
    assert.deepEqual(s.calls, ['cork', 'uncork']);
    // The next turn corks again.
    hold();
    assert.deepEqual(s.calls, ['cork', 'uncork', 'cork']);
    deferred.shift()!();
    assert.deepEqual(s.calls, ['cork', 'uncork', 'cork', 'uncork']);
  });

  it('on a real stream, the writes of one turn reach the sink as one batch (writev), after the turn', async () => {
    const { Writable } = await import('node:stream');
    const batches: number[] = [];
    const sink = new Writable({
      writev(chunks, cb) {
        batches.push(chunks.length);
        cb();
      },
      write(_chunk, _enc, cb) {
        batches.push(1);
        cb();
      },
    });
    const hold = writeCoalescer(sink);
    for (let i = 0; i < 5; i++) {
      hold();
      // mqtt-packet's own pattern: cork per packet, uncork on the next tick.
      sink.cork();
      sink.write(Buffer.from([i]));
      process.nextTick(() => sink.uncork());
    }
    await new Promise((r) => process.nextTick(r));
    assert.deepEqual(batches, [], 'still held after the next ticks');
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(batches, [5]);
  });
});
