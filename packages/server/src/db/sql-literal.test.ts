import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sqlLiteral } from './db.ts';

describe('sqlLiteral', () => {
  it('quotes, doubling single quotes', () => {
    assert.equal(sqlLiteral('abc'), "'abc'");
    assert.equal(sqlLiteral("it's"), "'it''s'");
    assert.equal(sqlLiteral(''), "''");
    assert.equal(sqlLiteral('["dev-1","dev:2"]'), `'["dev-1","dev:2"]'`);
  });

  it('uses the E form with doubled backslashes when there is a backslash', () => {
    assert.equal(sqlLiteral('a\\b'), " E'a\\\\b'");
    assert.equal(sqlLiteral("\\'"), " E'\\\\'''");
  });

  it('refuses NUL', () => {
    assert.throws(() => sqlLiteral('a\u0000b'), /NUL/);
  });
});
