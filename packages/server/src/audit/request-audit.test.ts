import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jobAudit, migrationAudit } from './audit-entries.ts';
import { createRefusalLimiter, targetOf } from './request-audit.ts';

describe('targetOf', () => {
  it('takes the target from the route and its path parameters', () => {
    assert.deepEqual(targetOf('/api/v1/devices/:uuid/broker', { uuid: 'dev-1' }), { targetType: 'device', targetId: 'dev-1' });
    assert.deepEqual(targetOf('/api/v1/jobs/:jobId/cancel', { jobId: 'job-1' }), { targetType: 'job', targetId: 'job-1' });
    assert.deepEqual(targetOf('/api/v1/brokers/:id', { id: '7' }), { targetType: 'broker', targetId: '7' });
    assert.deepEqual(targetOf('/api/v1/tokens/:id', { id: 3 }), { targetType: 'token', targetId: '3' });
    assert.deepEqual(targetOf('/api/v1/brokers', {}), { targetType: 'broker', targetId: null });
    assert.deepEqual(targetOf(undefined, undefined), { targetType: 'unknown', targetId: null });
    assert.deepEqual(targetOf('/api/v1/devices/:uuid/jobs/$next', { uuid: 'd' }), { targetType: 'device', targetId: 'd' });
  });

  it('records no hostile or oversized parameter, only null', () => {
    for (const bad of ['../x', 'a/b', 'a+b', '#', 'nul\u0000', 'x'.repeat(129), '', 'é']) {
      assert.equal(targetOf('/api/v1/devices/:uuid', { uuid: bad }).targetId, null, JSON.stringify(bad));
    }
    assert.equal(targetOf('/api/v1/brokers/:id', { id: 1e300 }).targetId, null);
  });
});

describe('refusal limiter', () => {
  it('lets a burst of 4× the rate per actor through, then the rate', () => {
    let t = 0;
    const allow = createRefusalLimiter(5, 1000, () => t);
    let passed = 0;
    for (let i = 0; i < 100; i++) if (allow('anonymous')) passed++;
    assert.equal(passed, 20);
    t = 1000;
    passed = 0;
    for (let i = 0; i < 100; i++) if (allow('anonymous')) passed++;
    assert.equal(passed, 5);
    assert.equal(allow('admin'), true, 'another actor has its own bucket');
  });

  it('bounds all actors together', () => {
    const allow = createRefusalLimiter(5, 10, () => 0);
    let passed = 0;
    for (let i = 0; i < 100; i++) if (allow(`actor-${i}`)) passed++;
    assert.equal(passed, 20, 'burst of 2× the total rate');
  });
});

describe('audit entries', () => {
  it('describe a migration step without more than 500 characters of the device’s error', () => {
    const e = migrationAudit({ id: '12', device_uuid: 'd1', to_broker_id: 2, status: 'migrating', attempts: 1, error: 'x'.repeat(900) }, 'device:d1', 'migration.attempt_failed', { viaBrokerId: 1 });
    assert.equal(e.targetId, 'd1');
    assert.equal(e.details!.migrationId, 12);
    assert.equal((e.details!.error as string).length, 500);
    assert.equal(e.details!.viaBrokerId, 1);
    const ok = migrationAudit({ id: 1, device_uuid: 'd1', to_broker_id: 2, status: 'completed', attempts: 0, error: null }, 'device:d1', 'migration.completed');
    assert.equal('error' in ok.details!, false);
  });

  it('describe a job status change', () => {
    const e = jobAudit({ job_id: 'job-1', device_uuid: 'd1', job_type: 'reboot', status: 'SUCCEEDED', version_number: 3 }, 'device:d1', 'job.update', 'IN_PROGRESS');
    assert.deepEqual(e, { actor: 'device:d1', action: 'job.update', targetType: 'device', targetId: 'd1', details: { jobId: 'job-1', jobType: 'reboot', from: 'IN_PROGRESS', to: 'SUCCEEDED', versionNumber: 3 } });
  });
});
