import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ERROR_CATALOGUE } from '../errors.ts';
import { clientErrorAnswer } from './client-errors.ts';
import { MAX_BODY_DEPTH, bodyProblem } from './json-body.ts';

/** `levels` nested arrays around 1, built without recursion. */
const deep = (levels: number): unknown => JSON.parse(`${'['.repeat(levels)}1${']'.repeat(levels)}`);

describe('JSON body checks', () => {
  it('accepts ordinary documents, surrogate pairs and nesting up to the limit', () => {
    assert.equal(bodyProblem({ a: 'x', b: [1, { c: 'é🙂' }], d: null }), null);
    assert.equal(bodyProblem(deep(MAX_BODY_DEPTH - 1)), null);
    assert.equal(bodyProblem('plain'), null);
  });

  it('names the first NUL or unpaired surrogate, in a value or a key, at any depth', () => {
    assert.match(bodyProblem({ a: { b: ['ok', 'x\u0000'] } })!, /^body\.a\.b\[1\] holds a NUL character/);
    assert.match(bodyProblem({ s: '\ud800' })!, /^body\.s holds .*unpaired UTF-16 surrogate/);
    assert.match(bodyProblem({ s: 'a\udc00' })!, /^body\.s /);
    assert.match(bodyProblem({ a: { 'k\udfff': 1 } })!, /^body\.a has a key with/);
    assert.match(bodyProblem({ 'ctl\u0001': { x: '\u0000' } })!, /^body\.ctl\?\.x holds/, 'control characters of keys are not echoed');
  });

  it('refuses nesting deeper than the limit without recursing (any depth)', () => {
    assert.equal(bodyProblem(deep(MAX_BODY_DEPTH + 1)), `body is nested more than ${MAX_BODY_DEPTH} levels deep`);
    assert.match(bodyProblem(deep(100_000))!, /nested more than/);
  });

  it('maps every parser error to a catalogued code', () => {
    assert.equal(clientErrorAnswer('HPE_HEADER_OVERFLOW').code, 'HEADERS_TOO_LARGE');
    assert.equal(ERROR_CATALOGUE.HEADERS_TOO_LARGE.status, 431);
    assert.equal(clientErrorAnswer('ERR_HTTP_REQUEST_TIMEOUT').code, 'REQUEST_TIMEOUT');
    assert.equal(ERROR_CATALOGUE.REQUEST_TIMEOUT.status, 408);
    for (const code of ['HPE_INVALID_METHOD', 'HPE_INVALID_URL', undefined]) assert.equal(clientErrorAnswer(code).code, 'VALIDATION_FAILED');
  });
});
