import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { FastifyBaseLogger } from 'fastify';
import { createLogger } from '../log.ts';
import { lazyChildLogger } from './lazy-request-logger.ts';

function setup(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const root = createLogger({ level: level as 'warn', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } }) as unknown as FastifyBaseLogger;
  // Counts children without touching `root` (a pino child inherits its parent's own properties).
  let children = 0;
  const parent = Object.create(root) as FastifyBaseLogger;
  parent.child = (b, o) => {
    children++;
    return root.child(b, o);
  };
  return { parent, lines, children: () => children };
}

describe('lazyChildLogger', () => {
  it('builds no child while only disabled levels are called', () => {
    const t = setup('warn');
    const log = lazyChildLogger(t.parent, { reqId: 'r-1' });
    log.info('incoming request');
    log.debug({ a: 1 }, 'detail');
    log.trace('trace');
    assert.equal(t.children(), 0);
    assert.equal(t.lines.length, 0);
    assert.equal(log.level, 'warn');
  });

  it('writes an enabled line through a child with the bindings, created once', () => {
    const t = setup('info');
    const log = lazyChildLogger(t.parent, { reqId: 'r-2' });
    log.info({ code: 'X' }, 'first');
    log.warn('second');
    assert.equal(t.children(), 1);
    assert.deepEqual(
      t.lines.map((l) => [l.reqId, l.msg, l.level]),
      [
        ['r-2', 'first', 30],
        ['r-2', 'second', 40],
      ],
    );
    assert.equal(t.lines[0]!.code, 'X');
  });

  it('passes child() through with the request bindings and follows a level change', () => {
    const t = setup('warn');
    const log = lazyChildLogger(t.parent, { reqId: 'r-3' });
    log.child({ part: 'x' }).error('boom');
    assert.equal(t.lines[0]!.reqId, 'r-3');
    assert.equal(t.lines[0]!.part, 'x');
    log.level = 'debug';
    log.debug('now on');
    assert.equal(t.lines.at(-1)!.msg, 'now on');
  });
});
