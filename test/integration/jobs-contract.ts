/**
 * Device jobs (AWS IoT Jobs execution semantics) with a device played by a plain MQTT client and by HTTP:
 * notifications through the outbox, the device requests and their AWS answers, every documented transition
 * and the invalid ones, version mismatches, statusDetails rules, cancel with/without force, and timeouts
 * enforced by the server while the device says nothing. Run against PGlite + Aedes and PostgreSQL + Mosquitto.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestSwitchyard, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

let tokenSeq = 0;

export function jobsContract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`device jobs (${kind})`, { skip, timeout: 120_000 }, () => {
    let env: TestEnv;
    before(async () => {
      env = await startTestSwitchyard(kind, { env: { SWITCHYARD_MIGRATION_SWEEP_MS: '200' } });
    });
    after(async () => {
      await env?.stop();
    });

    const jobsBase = (uuid: string): string => `iot/device/${uuid}/jobs`;

    async function onlineDevice(): Promise<{ uuid: string; token: string; client: DeviceClient }> {
      const d = await env.createDevice({ brokerIndex: 0 });
      const client = await env.connectDevice(d, 0);
      await client.subscribe([`${jobsBase(d.uuid)}/#`]);
      await client.publish(`iot/device/${d.uuid}/status`, { state: 'online', brokerId: env.brokers[0]!.id, at: new Date().toISOString() });
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}`)).body.online === true, { timeoutMs: 5000, message: 'presence online' });
      return { ...d, client };
    }

    /** A jobs request with a fresh clientToken; resolves with the reply that echoes it. */
    async function request(client: DeviceClient, uuid: string, path: string, body: Record<string, unknown> = {}): Promise<{ topic: string; payload: any; ok: boolean }> {
      const clientToken = `jt${++tokenSeq}`;
      const topic = `${jobsBase(uuid)}/${path}`;
      const reply = client.waitFor(
        (m) => (m.topic === `${topic}/accepted` || m.topic === `${topic}/rejected`) && m.payload?.clientToken === clientToken,
        5000,
        `reply on ${topic}`,
      );
      await client.publish(topic, { ...body, clientToken });
      const m = await reply;
      return { ...m, ok: m.topic.endsWith('/accepted') };
    }

    async function createJob(uuid: string, body: Record<string, unknown> = {}): Promise<any> {
      const res = await env.api('POST', `/api/v1/devices/${uuid}/jobs`, { jobType: 'reboot', jobData: { delay: 1 }, ...body });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return res.body;
    }

    it('queues a job, notifies through the outbox and answers the device workflow with AWS shapes', async () => {
      const d = await onlineDevice();
      const job = await createJob(d.uuid, { jobData: { url: 'https://example.com/fw.bin' } });
      assert.equal(job.status, 'QUEUED');
      assert.match(job.jobId, /^[A-Za-z0-9_-]{1,64}$/);
      assert.equal(job.versionNumber, 1);

      const next = await d.client.waitFor((m) => m.topic === `${jobsBase(d.uuid)}/notify-next`, 5000, 'notify-next');
      assert.equal(next.payload.execution.jobId, job.jobId);
      assert.equal(next.payload.execution.status, 'QUEUED');
      assert.deepEqual(next.payload.execution.jobDocument, { url: 'https://example.com/fw.bin' });
      assert.ok(Math.abs(next.payload.timestamp - Date.now() / 1000) < 60, 'timestamp in epoch seconds');
      const notify = await d.client.waitFor((m) => m.topic === `${jobsBase(d.uuid)}/notify`, 5000, 'notify');
      assert.equal(notify.payload.jobs.QUEUED[0].jobId, job.jobId);

      const described = await request(d.client, d.uuid, '$next/get');
      assert.ok(described.ok);
      assert.equal(described.payload.execution.jobId, job.jobId);
      assert.deepEqual(described.payload.execution.jobDocument, { url: 'https://example.com/fw.bin' });
      assert.equal(typeof described.payload.timestamp, 'number');

      const pending = await request(d.client, d.uuid, 'get');
      assert.ok(pending.ok);
      assert.deepEqual(pending.payload.queuedJobs.map((j: any) => j.jobId), [job.jobId]);
      assert.deepEqual(pending.payload.inProgressJobs, []);

      const started = await request(d.client, d.uuid, 'start-next', { statusDetails: { step: 'download' } });
      assert.ok(started.ok, JSON.stringify(started.payload));
      assert.equal(started.payload.execution.status, 'IN_PROGRESS');
      assert.equal(started.payload.execution.versionNumber, 2);
      assert.deepEqual(started.payload.execution.statusDetails, { step: 'download' });

      const mismatch = await request(d.client, d.uuid, `${job.jobId}/update`, { status: 'SUCCEEDED', expectedVersion: 1 });
      assert.equal(mismatch.ok, false);
      assert.equal(mismatch.payload.code, 'VersionMismatch');
      assert.deepEqual(mismatch.payload.executionState, { status: 'IN_PROGRESS', statusDetails: { step: 'download' }, versionNumber: 2 });

      const done = await request(d.client, d.uuid, `${job.jobId}/update`, { status: 'SUCCEEDED', expectedVersion: 2, includeJobExecutionState: true, includeJobDocument: true });
      assert.ok(done.ok, JSON.stringify(done.payload));
      assert.equal(done.payload.executionState.status, 'SUCCEEDED');
      assert.equal(done.payload.executionState.versionNumber, 3);
      assert.deepEqual(done.payload.jobDocument, { url: 'https://example.com/fw.bin' });

      // The queue is empty now: notify-next carries the timestamp alone.
      const empty = await d.client.waitFor((m) => m.topic === `${jobsBase(d.uuid)}/notify-next` && m.payload.execution === undefined, 5000, 'empty notify-next');
      assert.deepEqual(Object.keys(empty.payload), ['timestamp']);
      const terminal = await request(d.client, d.uuid, `${job.jobId}/get`);
      assert.equal(terminal.payload.code, 'TerminalStateReached');
      const admin = await env.api('GET', `/api/v1/jobs/${job.jobId}`);
      assert.equal(admin.body.status, 'SUCCEEDED');
      assert.equal(admin.body.versionNumber, 3);
      assert.ok(admin.body.finishedAt);
    });

    // from → to by the device: accepted or InvalidStateTransition (reference §2.3).
    const TABLE: Array<{ from: 'QUEUED' | 'IN_PROGRESS' | 'SUCCEEDED' | 'CANCELED' | 'FAILED'; to: string; ok: boolean }> = [
      { from: 'QUEUED', to: 'IN_PROGRESS', ok: true },
      { from: 'QUEUED', to: 'REJECTED', ok: true },
      { from: 'QUEUED', to: 'SUCCEEDED', ok: false },
      { from: 'QUEUED', to: 'FAILED', ok: false },
      { from: 'QUEUED', to: 'CANCELED', ok: false },
      { from: 'QUEUED', to: 'TIMED_OUT', ok: false },
      { from: 'IN_PROGRESS', to: 'IN_PROGRESS', ok: true },
      { from: 'IN_PROGRESS', to: 'SUCCEEDED', ok: true },
      { from: 'IN_PROGRESS', to: 'FAILED', ok: true },
      { from: 'IN_PROGRESS', to: 'REJECTED', ok: true },
      { from: 'IN_PROGRESS', to: 'QUEUED', ok: false },
      { from: 'IN_PROGRESS', to: 'REMOVED', ok: false },
      { from: 'SUCCEEDED', to: 'IN_PROGRESS', ok: false },
      { from: 'SUCCEEDED', to: 'SUCCEEDED', ok: false },
      { from: 'FAILED', to: 'IN_PROGRESS', ok: false },
      { from: 'CANCELED', to: 'IN_PROGRESS', ok: false },
    ];

    /** A job for `uuid` in state `from` (driven over HTTP by the device token / admin). */
    async function jobIn(d: { uuid: string; token: string }, from: string): Promise<string> {
      const job = await createJob(d.uuid);
      const upd = (status: string) => env.api('POST', `/api/v1/devices/${d.uuid}/jobs/${job.jobId}`, { status }, { token: d.token });
      if (from === 'IN_PROGRESS' || from === 'SUCCEEDED' || from === 'FAILED') assert.equal((await upd('IN_PROGRESS')).status, 200);
      if (from === 'SUCCEEDED' || from === 'FAILED') assert.equal((await upd(from)).status, 200);
      if (from === 'CANCELED') assert.equal((await env.api('POST', `/api/v1/jobs/${job.jobId}/cancel`, {})).status, 200);
      return job.jobId;
    }

    it('allows exactly the documented device transitions, over MQTT', async () => {
      const d = await onlineDevice();
      for (const row of TABLE) {
        const jobId = await jobIn(d, row.from);
        const r = await request(d.client, d.uuid, `${jobId}/update`, { status: row.to, includeJobExecutionState: true });
        assert.equal(r.ok, row.ok, `${row.from} → ${row.to}: ${JSON.stringify(r.payload)}`);
        if (row.ok) assert.equal(r.payload.executionState.status, row.to);
        else {
          assert.equal(r.payload.code, 'InvalidStateTransition', `${row.from} → ${row.to}`);
          assert.equal(r.payload.executionState.status, row.from);
        }
        // Leave nothing pending for the next row.
        await env.api('POST', `/api/v1/jobs/${jobId}/cancel`, { force: true });
      }
    });

    it('allows exactly the documented device transitions, over HTTP', async () => {
      const d = await env.createDevice();
      for (const row of TABLE) {
        const jobId = await jobIn(d, row.from);
        const r = await env.api('POST', `/api/v1/devices/${d.uuid}/jobs/${jobId}`, { status: row.to, includeJobExecutionState: true }, { token: d.token });
        assert.equal(r.status === 200, row.ok, `${row.from} → ${row.to}: ${r.status} ${JSON.stringify(r.body)}`);
        if (!row.ok) {
          assert.equal(r.status, 409);
          assert.equal(r.body.code, 'JOB_INVALID_STATE_TRANSITION');
          assert.equal(r.body.executionState.status, row.from);
        }
        await env.api('POST', `/api/v1/jobs/${jobId}/cancel`, { force: true });
      }
    });

    it('refuses bad requests over MQTT with the AWS codes and changes nothing', async () => {
      const d = await onlineDevice();
      const job = await createJob(d.uuid);
      const base = jobsBase(d.uuid);
      const cases: Array<[string, Record<string, unknown>, string]> = [
        [`${job.jobId}/update`, { status: 'IN_PROGRESS', statusDetails: Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v'])) }, 'InvalidRequest'],
        [`${job.jobId}/update`, { status: 'IN_PROGRESS', statusDetails: { 'bad key': 'v' } }, 'InvalidRequest'],
        [`${job.jobId}/update`, { status: 'IN_PROGRESS', statusDetails: { k: 'line\nbreak' } }, 'InvalidRequest'],
        [`${job.jobId}/update`, { status: 'IN_PROGRESS', statusDetails: { k: 1 } }, 'InvalidRequest'],
        [`${job.jobId}/update`, { status: 'DONE' }, 'InvalidRequest'],
        [`${job.jobId}/update`, {}, 'InvalidRequest'],
        [`${job.jobId}/update`, { status: 'IN_PROGRESS', stepTimeoutInMinutes: 0 }, 'InvalidRequest'],
        [`${job.jobId}/update`, { status: 'IN_PROGRESS', executionNumber: 7 }, 'ResourceNotFound'],
        ['job-does-not-exist/update', { status: 'IN_PROGRESS' }, 'ResourceNotFound'],
        ['job-does-not-exist/get', {}, 'ResourceNotFound'],
      ];
      for (const [path, body, code] of cases) {
        const r = await request(d.client, d.uuid, path, body);
        assert.equal(r.ok, false, `${path} ${JSON.stringify(body)}`);
        assert.equal(r.payload.code, code, `${path} ${JSON.stringify(body)}: ${JSON.stringify(r.payload)}`);
        assert.equal(typeof r.payload.message, 'string');
      }
      const invalidJson = d.client.waitFor((m) => m.topic === `${base}/${job.jobId}/update/rejected` && m.payload?.code === 'InvalidJson', 5000, 'InvalidJson');
      await d.client.publish(`${base}/${job.jobId}/update`, '{not json');
      await invalidJson;
      if (kind === 'postgres') {
        // The embedded brokers refuse a device's publish on a topic that maps to no operation before it reaches
        // the server; the test Mosquitto has no ACL, so the server answers it.
        const invalidTopic = d.client.waitFor((m) => m.topic === `${base}/$next/update/rejected` && m.payload?.code === 'InvalidTopic', 5000, 'InvalidTopic');
        await d.client.publish(`${base}/$next/update`, { status: 'IN_PROGRESS' });
        await invalidTopic;
      }
      const still = await env.api('GET', `/api/v1/jobs/${job.jobId}`);
      assert.equal(still.body.status, 'QUEUED');
      assert.equal(still.body.versionNumber, 1);
    });

    it('serves the device side over HTTP: pending list, $next, start next, update, version mismatch', async () => {
      const d = await env.createDevice();
      const other = await env.createDevice();
      const job = await createJob(d.uuid);
      const dev = (m: string, p: string, b?: unknown) => env.api(m, `/api/v1/devices/${d.uuid}${p}`, b, { token: d.token });
      const list = await dev('GET', '/jobs');
      assert.equal(list.status, 200);
      assert.deepEqual(list.body.queuedJobs.map((j: any) => j.jobId), [job.jobId]);
      assert.equal((await dev('GET', '/jobs/$next')).body.execution.jobId, job.jobId);
      const started = await dev('PUT', '/jobs/$next', { statusDetails: { step: 'one' } });
      assert.equal(started.status, 200, JSON.stringify(started.body));
      assert.equal(started.body.execution.status, 'IN_PROGRESS');
      const mismatch = await dev('POST', `/jobs/${job.jobId}`, { status: 'FAILED', expectedVersion: 1 });
      assert.equal(mismatch.status, 409);
      assert.equal(mismatch.body.code, 'JOB_VERSION_MISMATCH');
      assert.equal(mismatch.body.executionState.versionNumber, 2);
      const bad = await dev('POST', `/jobs/${job.jobId}`, { status: 'FAILED', statusDetails: { k: '' } });
      assert.equal(bad.status, 400);
      assert.equal(bad.body.code, 'VALIDATION_FAILED');
      const failed = await dev('POST', `/jobs/${job.jobId}`, { status: 'FAILED', statusDetails: { reason: 'disk full' }, expectedVersion: 2 });
      assert.equal(failed.status, 200, JSON.stringify(failed.body));
      assert.deepEqual((await dev('GET', '/jobs/$next')).body.execution, undefined);
      assert.equal((await dev('GET', `/jobs/${job.jobId}`)).status, 410);
      // Another device's token reaches nothing here; a device cannot create or cancel jobs.
      assert.equal((await env.api('GET', `/api/v1/devices/${d.uuid}/jobs`, undefined, { token: other.token })).status, 403);
      assert.equal((await env.api('POST', `/api/v1/devices/${d.uuid}/jobs`, { jobType: 'x', jobData: {} }, { token: d.token })).status, 403);
      assert.equal((await env.api('POST', `/api/v1/jobs/${job.jobId}/cancel`, {}, { token: d.token })).status, 403);
    });

    it('lists and filters jobs for the admin; cancels QUEUED, and IN_PROGRESS only with force', async () => {
      const d = await env.createDevice();
      const a = await createJob(d.uuid, { jobType: 'alpha' });
      const b = await createJob(d.uuid, { jobType: 'beta' });
      const list = await env.api('GET', `/api/v1/jobs?deviceUuid=${d.uuid}`);
      assert.equal(list.body.total, 2);
      assert.deepEqual(list.body.items.map((j: any) => j.jobId), [b.jobId, a.jobId]);
      assert.equal((await env.api('GET', `/api/v1/jobs?deviceUuid=${d.uuid}&jobType=alpha`)).body.total, 1);
      assert.equal((await env.api('GET', `/api/v1/jobs?status=BOGUS`)).status, 400);
      assert.equal((await env.api('GET', `/api/v1/jobs/job-nope`)).status, 404);
      assert.equal((await env.api('POST', `/api/v1/devices/no-such-device/jobs`, { jobType: 'x', jobData: {} })).status, 404);

      assert.equal((await env.api('POST', `/api/v1/jobs/${b.jobId}/cancel`, {})).body.status, 'CANCELED');
      assert.equal((await env.api('POST', `/api/v1/devices/${d.uuid}/jobs/${a.jobId}`, { status: 'IN_PROGRESS' }, { token: d.token })).status, 200);
      const noForce = await env.api('POST', `/api/v1/jobs/${a.jobId}/cancel`, {});
      assert.equal(noForce.status, 409);
      assert.equal(noForce.body.code, 'JOB_INVALID_STATE_TRANSITION');
      assert.equal((await env.api('POST', `/api/v1/jobs/${a.jobId}/cancel`, { force: true })).body.status, 'CANCELED');
      const late = await env.api('POST', `/api/v1/devices/${d.uuid}/jobs/${a.jobId}`, { status: 'SUCCEEDED' }, { token: d.token });
      assert.equal(late.status, 409, 'the device can no longer update a force-canceled execution');
      assert.equal((await env.api('GET', `/api/v1/jobs?deviceUuid=${d.uuid}&status=CANCELED`)).body.total, 2);
    });

    it('times out an IN_PROGRESS execution whose device never answers (in-progress and step timers)', async () => {
      const d = await onlineDevice();
      const inProgress = await createJob(d.uuid, { inProgressTimeoutSeconds: 1 });
      const started = await request(d.client, d.uuid, 'start-next');
      assert.equal(started.payload.execution.jobId, inProgress.jobId);
      assert.equal(typeof started.payload.execution.approximateSecondsBeforeTimedOut, 'number');
      // The device says nothing more: the sweeper times it out and the empty queue is announced.
      const timedOut = await waitFor(async () => {
        const j = (await env.api('GET', `/api/v1/jobs/${inProgress.jobId}`)).body;
        return j.status === 'TIMED_OUT' ? j : null;
      }, { timeoutMs: 8000, intervalMs: 100, message: 'TIMED_OUT (in-progress timer)' });
      assert.ok(timedOut.finishedAt);
      await d.client.waitFor((m) => m.topic === `${jobsBase(d.uuid)}/notify-next` && m.payload.execution === undefined, 5000, 'empty notify-next after the timeout');
      const late = await request(d.client, d.uuid, `${inProgress.jobId}/update`, { status: 'SUCCEEDED' });
      assert.equal(late.payload.code, 'InvalidStateTransition');
      assert.equal(late.payload.executionState.status, 'TIMED_OUT');

      const step = await createJob(d.uuid, { stepTimeoutSeconds: 1 });
      assert.ok((await request(d.client, d.uuid, `${step.jobId}/update`, { status: 'IN_PROGRESS' })).ok);
      await waitFor(async () => (await env.api('GET', `/api/v1/jobs/${step.jobId}`)).body.status === 'TIMED_OUT', {
        timeoutMs: 8000,
        intervalMs: 100,
        message: 'TIMED_OUT (step timer)',
      });
      // A QUEUED job never times out.
      const queued = await createJob(d.uuid, { inProgressTimeoutSeconds: 1 });
      await new Promise((r) => setTimeout(r, 1500));
      assert.equal((await env.api('GET', `/api/v1/jobs/${queued.jobId}`)).body.status, 'QUEUED');
    });
  });
}
