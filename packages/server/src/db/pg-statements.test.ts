import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { inlineSqlCall, sqlLiteral, type NamedSql } from './db.ts';
import { createSqlCalls } from './pg-statements.ts';

const load: NamedSql = { name: 'switchyard_t_load', sql: 'SELECT $1::jsonb AS a, $2::jsonb AS b, $1::jsonb AS again', types: ['jsonb', 'jsonb'] };
const save: NamedSql = { name: 'switchyard_t_save', sql: 'INSERT INTO t SELECT * FROM jsonb_to_recordset($1::jsonb) AS r(x int)', types: ['jsonb'] };

describe('inlineSqlCall', () => {
  it('puts each literal in place of its parameter, every time it appears', () => {
    assert.equal(
      inlineSqlCall(load, [sqlLiteral('[1]'), sqlLiteral("{\"o'k\":1}")]),
      `SELECT ('[1]')::jsonb AS a, ('{"o''k":1}')::jsonb AS b, ('[1]')::jsonb AS again`,
    );
  });

  it('refuses a call with the wrong number of arguments', () => {
    assert.throws(() => inlineSqlCall(load, [sqlLiteral('[]')]), /switchyard_t_load takes 2 arguments, got 1/);
  });
});

describe('createSqlCalls (PostgreSQL)', () => {
  it('calls by name, and prepares each statement once per connection, in the first message that asks', () => {
    const calls = createSqlCalls(true);
    const [a, b] = [{}, {}];
    assert.equal(calls.toPrepare(a), '', 'nothing called yet');
    assert.equal(calls.call(load, ["'1'", "'2'"]), "EXECUTE switchyard_t_load('1', '2')");
    assert.equal(calls.toPrepare(a), `PREPARE switchyard_t_load(jsonb, jsonb) AS ${load.sql}; `);
    assert.equal(calls.toPrepare(a), '', 'prepared on a already');
    calls.call(save, ["'[]'"]);
    calls.call(load, ["'3'", "'4'"]);
    assert.equal(calls.toPrepare(a), `PREPARE switchyard_t_save(jsonb) AS ${save.sql}; `, 'only the new one');
    assert.equal(calls.toPrepare(b), `PREPARE switchyard_t_load(jsonb, jsonb) AS ${load.sql}; PREPARE switchyard_t_save(jsonb) AS ${save.sql}; `);
  });

  it('refuses two different statements under one name, a bad name, and a wrong argument count', () => {
    const calls = createSqlCalls(true);
    calls.call(load, ["'1'", "'2'"]);
    assert.throws(() => calls.call({ ...load, sql: 'SELECT $1, $2' }, ["'1'", "'2'"]), /two different statements named switchyard_t_load/);
    assert.throws(() => calls.call({ ...save, name: 'x; DROP TABLE t' }, ["'1'"]), /not a statement name/);
    assert.throws(() => calls.call(save, []), /takes 1 arguments, got 0/);
  });

  it('inlines the literals when statements may not be prepared (transaction pooler)', () => {
    const calls = createSqlCalls(false);
    assert.equal(calls.call(save, ["'[]'"]), inlineSqlCall(save, ["'[]'"]));
    assert.equal(calls.toPrepare({}), '');
  });
});
