import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { JOB_STATUSES, isJobStatus, isTerminal, nextJobState, type JobActor, type JobStatus } from './jobs.ts';

const allowed: Array<[JobStatus, JobStatus, JobActor, boolean?]> = [
  ['QUEUED', 'IN_PROGRESS', 'device'],
  ['QUEUED', 'REJECTED', 'device'],
  ['IN_PROGRESS', 'IN_PROGRESS', 'device'],
  ['IN_PROGRESS', 'SUCCEEDED', 'device'],
  ['IN_PROGRESS', 'FAILED', 'device'],
  ['IN_PROGRESS', 'REJECTED', 'device'],
  ['IN_PROGRESS', 'TIMED_OUT', 'service'],
  ['QUEUED', 'CANCELED', 'service'],
  ['QUEUED', 'REMOVED', 'service'],
  ['IN_PROGRESS', 'CANCELED', 'service', true],
];

function isAllowed(from: JobStatus, to: JobStatus, actor: JobActor, force: boolean): boolean {
  return allowed.some(([f, t, a, needsForce]) => f === from && t === to && a === actor && (!needsForce || force));
}

describe('jobs', () => {
  it('lists the eight AWS execution statuses', () => {
    assert.deepEqual([...JOB_STATUSES], ['QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED']);
    assert.equal(isJobStatus('QUEUED'), true);
    assert.equal(isJobStatus('queued'), false);
  });

  it('treats every status except QUEUED and IN_PROGRESS as terminal', () => {
    assert.deepEqual(JOB_STATUSES.filter((s) => !isTerminal(s)), ['QUEUED', 'IN_PROGRESS']);
  });

  for (const [from, to, actor, force] of allowed) {
    it(`allows ${actor} ${from} → ${to}${force ? ' with force' : ''}`, () => {
      assert.deepEqual(nextJobState(from, to, actor, { force: force === true }), { ok: true });
    });
  }

  it('refuses IN_PROGRESS → CANCELED without force', () => {
    assert.deepEqual(nextJobState('IN_PROGRESS', 'CANCELED', 'service'), { ok: false, code: 'InvalidStateTransition' });
  });

  it('refuses every other transition, including any out of a terminal state, for both actors', () => {
    for (const from of JOB_STATUSES) {
      for (const to of JOB_STATUSES) {
        for (const actor of ['device', 'service'] as const) {
          for (const force of [false, true]) {
            const r = nextJobState(from, to, actor, { force });
            assert.equal(r.ok, isAllowed(from, to, actor, force), `${actor} ${from}→${to} force=${force}`);
            if (!r.ok) assert.equal(r.code, 'InvalidStateTransition');
          }
        }
      }
    }
  });

  it('never lets a device send QUEUED, TIMED_OUT, REMOVED or CANCELED', () => {
    for (const to of ['QUEUED', 'TIMED_OUT', 'REMOVED', 'CANCELED'] as const) {
      assert.equal(nextJobState('IN_PROGRESS', to, 'device', { force: true }).ok, false);
    }
  });
});
