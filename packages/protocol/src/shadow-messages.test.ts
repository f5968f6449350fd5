import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  SHADOW_LIMITS,
  applyUpdate,
  computeDelta,
  deleteAcceptedMessage,
  getAcceptedMessage,
  parseUpdateRequest,
  stateByteSize,
  type ApplyUpdateResult,
  type JsonObject,
  type ShadowDocument,
  type UpdateShadowRequest,
} from './shadow.ts';

const T0 = 1_700_000_000;
const T1 = T0 + 60;

/** Builds a request through the real parser, so tests use only what a device could send. */
function req(body: unknown): UpdateShadowRequest {
  const r = parseUpdateRequest(JSON.stringify(body));
  assert.ok(r.ok, JSON.stringify(r));
  return r.request;
}

function ok(r: ApplyUpdateResult): Extract<ApplyUpdateResult, { ok: true }> {
  assert.ok(r.ok, JSON.stringify(r));
  return r;
}

/** A shadow built by applying `bodies` in order at T0. */
function makeShadow(...bodies: unknown[]): ShadowDocument {
  let doc: ShadowDocument | null = null;
  for (const b of bodies) doc = ok(applyUpdate(doc, req(b), T0)).document;
  assert.ok(doc);
  return doc;
}

describe('applyUpdate', () => {
  it('creates a shadow at version 1 with per-leaf metadata', () => {
    const r = ok(applyUpdate(null, req({ state: { desired: { color: 'red', l: { on: true } } } }), T0));
    assert.deepStrictEqual(r.document, {
      state: { desired: { color: 'red', l: { on: true } } },
      metadata: { desired: { color: { timestamp: T0 }, l: { on: { timestamp: T0 } } } },
      version: 1,
    });
  });

  it('raises the version by one per accepted update', () => {
    const doc = makeShadow({ state: { reported: { a: 1 } } }, { state: { reported: { a: 2 } } });
    assert.equal(doc.version, 2);
    assert.equal(ok(applyUpdate(doc, req({ state: {} }), T1)).document.version, 3);
  });

  it('applies a request whose version equals the current one', () => {
    const doc = makeShadow({ state: { reported: { a: 1 } } });
    assert.equal(ok(applyUpdate(doc, req({ state: { reported: { a: 2 } }, version: 1 }), T1)).document.version, 2);
  });

  it('rejects a stale version with 409 Version conflict and echoes the clientToken', () => {
    const doc = makeShadow({ state: { reported: { a: 1 } } }, { state: { reported: { a: 2 } } });
    const r = applyUpdate(doc, req({ state: { reported: { a: 3 } }, version: 1, clientToken: 'c9' }), T1);
    assert.deepStrictEqual(r, { ok: false, error: { code: 409, message: 'Version conflict', timestamp: T1, clientToken: 'c9' } });
  });

  it('rejects a version on a missing shadow unless it equals the prior version', () => {
    assert.equal(applyUpdate(null, req({ state: {}, version: 3 }), T0).ok, false);
    assert.equal(applyUpdate(null, req({ state: {}, version: 0 }), T0).ok, true);
    assert.equal(applyUpdate(null, req({ state: {}, version: 3 }), T0, { priorVersion: 3 }).ok, true);
  });

  it('continues the numbering of a deleted shadow through priorVersion', () => {
    const r = ok(applyUpdate(null, req({ state: { reported: { a: 1 } } }), T0, { priorVersion: 7 }));
    assert.equal(r.document.version, 8);
    assert.equal(r.documents.previous, null);
  });

  it('continues the numbering of a deleted-shadow marker', () => {
    assert.equal(ok(applyUpdate({ deleted: true, version: 4 }, req({ state: {} }), T0)).document.version, 5);
  });

  it('deletes a key set to null, with its metadata', () => {
    const doc = makeShadow({ state: { reported: { a: 1, b: { c: 2, d: 3 } } } });
    const r = ok(applyUpdate(doc, req({ state: { reported: { a: null, b: { c: null } } } }), T1));
    assert.deepStrictEqual(r.document.state, { reported: { b: { d: 3 } } });
    assert.deepStrictEqual(r.document.metadata, { reported: { b: { d: { timestamp: T0 } } } });
  });

  it('drops the whole desired section when desired is null, and keeps counting versions', () => {
    const doc = makeShadow({ state: { desired: { a: 1 }, reported: { a: 2 } } });
    const r = ok(applyUpdate(doc, req({ state: { desired: null } }), T1));
    assert.deepStrictEqual(r.document.state, { reported: { a: 2 } });
    assert.deepStrictEqual(r.document.metadata, { reported: { a: { timestamp: T0 } } });
    assert.equal(r.document.version, 2);
    assert.equal(r.delta, undefined);
    assert.deepStrictEqual(r.accepted.state, { desired: null });
    assert.deepStrictEqual(r.accepted.metadata, { desired: { timestamp: T1 } });
  });

  it('leaves an empty document when both sections are nulled', () => {
    const doc = makeShadow({ state: { desired: { a: 1 }, reported: { a: 2 } } });
    const r = ok(applyUpdate(doc, req({ state: { desired: null, reported: null } }), T1));
    assert.deepStrictEqual(r.document, { state: {}, metadata: {}, version: 2 });
  });

  it('replaces arrays whole, with one timestamp per element', () => {
    const doc = makeShadow({ state: { reported: { list: [1, 2, 3] } } });
    const r = ok(applyUpdate(doc, req({ state: { reported: { list: ['x', { y: 1 }] } } }), T1));
    assert.deepStrictEqual(r.document.state.reported, { list: ['x', { y: 1 }] });
    assert.deepStrictEqual(r.document.metadata.reported, { list: [{ timestamp: T1 }, { y: { timestamp: T1 } }] });
  });

  it('stamps only the leaves a request touched', () => {
    const doc = makeShadow({ state: { desired: { a: 1, n: { x: 1, y: 2 } } } });
    const r = ok(applyUpdate(doc, req({ state: { desired: { n: { y: 3 } } } }), T1));
    assert.deepStrictEqual(r.document.metadata.desired, {
      a: { timestamp: T0 },
      n: { x: { timestamp: T0 }, y: { timestamp: T1 } },
    });
  });

  it('restamps a whole subtree that replaces a scalar', () => {
    const doc = makeShadow({ state: { reported: { a: 1, timestamp: 5 } } });
    const r = ok(applyUpdate(doc, req({ state: { reported: { a: { timestamp: 2, b: [1] } } } }), T1));
    assert.deepStrictEqual(r.document.metadata.reported, {
      a: { timestamp: { timestamp: T1 }, b: [{ timestamp: T1 }] },
      timestamp: { timestamp: T0 },
    });
  });

  it('rejects with 413 when the merged state passes 8 KB even for a tiny request, changing nothing', () => {
    const big = 'x'.repeat(8000);
    const doc = makeShadow({ state: { reported: { big } } });
    const before = structuredClone(doc);
    const r = applyUpdate(doc, req({ state: { reported: { more: 'y'.repeat(200) } }, clientToken: 't' }), T1);
    assert.deepStrictEqual(r, {
      ok: false,
      error: { code: 413, message: 'The payload exceeds the maximum size allowed', timestamp: T1, clientToken: 't' },
    });
    assert.deepStrictEqual(doc, before);
  });

  it('accepts a large request that leaves the merged state under 8 KB', () => {
    const doc = makeShadow({ state: { reported: { big: 'x'.repeat(8000) } } });
    const r = applyUpdate(doc, req({ state: { reported: { big: null, other: 'y'.repeat(8100) } } }), T1);
    assert.equal(r.ok, true);
  });

  it('counts exactly 8192 bytes of merged state as within the limit', () => {
    const overhead = stateByteSize({ reported: { a: '' } });
    const fits = req({ state: { reported: { a: 'x'.repeat(SHADOW_LIMITS.maxStateBytes - overhead) } } });
    assert.equal(applyUpdate(null, fits, T0).ok, true);
    const over = req({ state: { reported: { a: 'x'.repeat(SHADOW_LIMITS.maxStateBytes - overhead + 1) } } });
    assert.equal(applyUpdate(null, over, T0).ok, false);
  });

  it('takes limits and priorVersion from one options object', () => {
    const r = applyUpdate(null, req({ state: { reported: { a: 'xxxx' } } }), T0, { maxStateBytes: 10 });
    assert.equal(r.ok, false);
    assert.equal(applyUpdate(null, req({ state: {} }), T0, SHADOW_LIMITS).ok, true);
    assert.equal(applyUpdate(null, req({ state: { reported: { a: 'xxxx' } } }), T0, { limits: { maxStateBytes: 10 } }).ok, false);
  });

  it('echoes only what the request sent in update/accepted, nulls kept', () => {
    const doc = makeShadow({ state: { desired: { a: 1 }, reported: { b: 2 } } });
    const r = ok(applyUpdate(doc, req({ state: { reported: { b: null, c: [1, 2] } }, clientToken: 'tok' }), T1));
    assert.deepStrictEqual(r.accepted, {
      state: { reported: { b: null, c: [1, 2] } },
      metadata: { reported: { b: { timestamp: T1 }, c: [{ timestamp: T1 }, { timestamp: T1 }] } },
      version: 2,
      timestamp: T1,
      clientToken: 'tok',
    });
  });

  it('publishes a delta holding every differing desired leaf, with desired metadata', () => {
    const doc = makeShadow({ state: { desired: { a: 1, l: { c: { r: 0, g: 255 } } }, reported: { l: { c: { r: 0, g: 0 } } } } });
    const r = ok(applyUpdate(doc, req({ state: { desired: { z: true } }, clientToken: 'k' }), T1));
    assert.deepStrictEqual(r.delta, {
      state: { a: 1, l: { c: { g: 255 } }, z: true },
      metadata: { a: { timestamp: T0 }, l: { c: { g: { timestamp: T0 } } }, z: { timestamp: T1 } },
      version: 2,
      timestamp: T1,
      clientToken: 'k',
    });
  });

  it('publishes no delta when reported catches up, and keeps desired', () => {
    const doc = makeShadow({ state: { desired: { a: 1 } } });
    const r = ok(applyUpdate(doc, req({ state: { reported: { a: 1 } } }), T1));
    assert.equal(r.delta, undefined);
    assert.deepStrictEqual(r.document.state.desired, { a: 1 });
  });

  it('publishes a delta after a reported-only update that diverges from stored desired', () => {
    const doc = makeShadow({ state: { desired: { a: 1 }, reported: { a: 1 } } });
    const r = ok(applyUpdate(doc, req({ state: { reported: { a: 2 } } }), T1));
    assert.deepStrictEqual(r.delta?.state, { a: 1 });
  });

  it('publishes documents with previous and current snapshots', () => {
    const doc = makeShadow({ state: { reported: { a: 1 } } });
    const r = ok(applyUpdate(doc, req({ state: { reported: { a: 2 } }, clientToken: 'd' }), T1));
    assert.deepStrictEqual(r.documents, {
      previous: { state: { reported: { a: 1 } }, metadata: { reported: { a: { timestamp: T0 } } }, version: 1 },
      current: { state: { reported: { a: 2 } }, metadata: { reported: { a: { timestamp: T1 } } }, version: 2 },
      timestamp: T1,
      clientToken: 'd',
    });
  });

  it('omits clientToken from every message when the request had none', () => {
    const r = ok(applyUpdate(null, req({ state: { desired: { a: 1 } } }), T0));
    for (const m of [r.accepted, r.delta, r.documents]) assert.ok(m !== undefined && !('clientToken' in m));
  });

  it('never mutates the current document', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 3 }), (v) => {
      const doc = makeShadow({ state: { desired: { a: { b: 1 } }, reported: { c: [1] } } });
      const before = structuredClone(doc);
      const patch = (v !== null && typeof v === 'object' && !Array.isArray(v) ? v : { v }) as JsonObject;
      const parsed = parseUpdateRequest(JSON.stringify({ state: { desired: patch } }));
      if (parsed.ok) applyUpdate(doc, parsed.request, T1);
      assert.deepStrictEqual(doc, before);
    }), { numRuns: 200 });
  });

  it('leaves no delta after reported is set to desired', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
      const desired = { v } as JsonObject;
      const parsed = parseUpdateRequest(JSON.stringify({ state: { desired } }));
      if (!parsed.ok) return;
      const doc = ok(applyUpdate(null, parsed.request, T0, { maxStateBytes: Infinity })).document;
      const echo = doc.state.desired === undefined ? {} : { reported: doc.state.desired };
      const r = ok(applyUpdate(doc, req({ state: echo }), T1, { maxStateBytes: Infinity }));
      assert.equal(r.delta, undefined);
      assert.equal(computeDelta(r.document.state.desired, r.document.state.reported), undefined);
    }), { numRuns: 300 });
  });
});

describe('getAcceptedMessage', () => {
  it('includes the delta and its desired metadata when sections differ', () => {
    const doc = makeShadow({ state: { desired: { a: 1, b: 2 }, reported: { a: 1 } } });
    assert.deepStrictEqual(getAcceptedMessage(doc, T1, 'g'), {
      state: { desired: { a: 1, b: 2 }, reported: { a: 1 }, delta: { b: 2 } },
      metadata: {
        desired: { a: { timestamp: T0 }, b: { timestamp: T0 } },
        reported: { a: { timestamp: T0 } },
        delta: { b: { timestamp: T0 } },
      },
      version: 1,
      timestamp: T1,
      clientToken: 'g',
    });
  });

  it('omits delta when nothing differs and clientToken when none was sent', () => {
    const doc = makeShadow({ state: { reported: { a: 1 } } });
    assert.deepStrictEqual(getAcceptedMessage(doc, T1), {
      state: { reported: { a: 1 } },
      metadata: { reported: { a: { timestamp: T0 } } },
      version: 1,
      timestamp: T1,
    });
  });
});

describe('deleteAcceptedMessage', () => {
  it('carries version, timestamp and the clientToken when given', () => {
    assert.deepStrictEqual(deleteAcceptedMessage(4, T1), { version: 4, timestamp: T1 });
    assert.deepStrictEqual(deleteAcceptedMessage(4, T1, 'x'), { version: 4, timestamp: T1, clientToken: 'x' });
  });
});
