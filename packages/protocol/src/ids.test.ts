import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { BROKER_SHADOW, CLASSIC_SHADOW, isValidDeviceUuid, isValidShadowName } from './ids.ts';

describe('ids', () => {
  it('accepts device uuids of 1–128 allowed characters', () => {
    for (const ok of ['d', 'a:b_c-D9', 'x'.repeat(128), '123e4567-e89b-12d3-a456-426614174000']) {
      assert.equal(isValidDeviceUuid(ok), true, ok);
    }
  });

  it('rejects device uuids that could break a topic', () => {
    for (const bad of ['', 'x'.repeat(129), 'a/b', 'a+b', 'a#', '$aws', 'a b', 'a\u0000', 'd1\n', 'é', 42, null, undefined]) {
      assert.equal(isValidDeviceUuid(bad), false, String(bad));
    }
  });

  it('accepts shadow names of 1–64 allowed characters and rejects $ and the empty classic name', () => {
    assert.equal(isValidShadowName('device-state'), true);
    assert.equal(isValidShadowName('n'.repeat(64)), true);
    assert.equal(isValidShadowName('n'.repeat(65)), false);
    assert.equal(isValidShadowName('$name'), false);
    assert.equal(isValidShadowName(CLASSIC_SHADOW), false);
    assert.equal(isValidShadowName({}), false);
  });

  it('names the classic shadow with the empty string and the broker shadow device-state', () => {
    assert.equal(CLASSIC_SHADOW, '');
    assert.equal(BROKER_SHADOW, 'device-state');
  });
});
