/**
 * Device jobs end to end: real `switchyard-agent` processes, the server (process or embedded) and two brokers.
 * A move through `channel: 'job'` (the `change-broker` job SUCCEEDED and the migration completed, the broker
 * itself has the device), a device offline while its job was queued (it runs it when started), and an unknown
 * job type (REJECTED).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startAgentProcess, type TestProcess } from '../helpers/processes.ts';
import { waitFor } from '../helpers/wait.ts';
import { uniqueId } from '../helpers/switchyard.ts';
import { startE2E, type E2EEnv } from './e2e-env.ts';

const FINAL_JOB = ['SUCCEEDED', 'FAILED', 'TIMED_OUT', 'REJECTED', 'REMOVED', 'CANCELED'];

export function jobsE2E(kind: 'postgres' | 'embedded', skip: string | false): void {
  describe(`device jobs, end to end (${kind})`, { skip, timeout: 300_000 }, () => {
    let env: E2EEnv;
    const agents: TestProcess[] = [];
    before(async () => {
      env = await startE2E(kind);
    });
    after(async () => {
      await Promise.all(agents.map((a) => a.stop()));
      await env?.stop();
    });

    async function newDevice(): Promise<{ uuid: string; token: string; stateDir: string }> {
      const uuid = uniqueId('e2e-job');
      const res = await env.api('POST', '/api/v1/devices', { uuid, brokerId: env.brokers[0]!.id });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      return { uuid, token: res.body.token, stateDir: await env.tmp() };
    }

    /** An agent listening on the job channel only: nothing else can move it. */
    function agent(d: { uuid: string; token: string; stateDir: string }): TestProcess {
      const p = startAgentProcess({ apiUrl: env.apiUrl, uuid: d.uuid, token: d.token, stateDir: d.stateDir, extraArgs: ['--channels', 'job'] });
      agents.push(p);
      return p;
    }

    async function onlineOn(uuid: string, brokerIndex: number, p?: TestProcess): Promise<void> {
      const id = env.brokers[brokerIndex]!.id;
      await waitFor(
        async () => {
          const dev = (await env.api('GET', `/api/v1/devices/${uuid}`)).body;
          return dev.online && dev.connectedBrokerId === id && (await env.connectedOn(brokerIndex, uuid));
        },
        { timeoutMs: 30_000, intervalMs: 100, message: `device online on broker ${id}` },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- agent output ---\n${p?.output().slice(-4000) ?? '(none)'}`);
      });
    }

    async function jobEnds(jobId: string, p?: TestProcess): Promise<any> {
      return waitFor(
        async () => {
          const j = (await env.api('GET', `/api/v1/jobs/${jobId}`)).body;
          return FINAL_JOB.includes(j.status) ? j : null;
        },
        { timeoutMs: 30_000, intervalMs: 100, message: `job ${jobId} to end` },
      ).catch((err: Error) => {
        throw new Error(`${err.message}\n--- agent output ---\n${p?.output().slice(-4000) ?? '(none)'}`);
      });
    }

    async function changeBrokerJob(uuid: string, migrationId: number): Promise<any> {
      const list = (await env.api('GET', `/api/v1/jobs?deviceUuid=${uuid}&jobType=change-broker`)).body;
      const job = list.items.find((j: any) => j.migrationId === migrationId);
      assert.ok(job, `a change-broker job for migration ${migrationId}: ${JSON.stringify(list)}`);
      return job;
    }

    async function migrationEnds(id: number): Promise<any> {
      return waitFor(
        async () => {
          const m = (await env.api('GET', `/api/v1/migrations/${id}`)).body;
          return ['completed', 'failed', 'superseded', 'canceled', 'timed_out'].includes(m.status) ? m : null;
        },
        { timeoutMs: 30_000, intervalMs: 100, message: `migration ${id} to end` },
      );
    }

    it('moves a device through a change-broker job: the job SUCCEEDED, the migration completed, the broker has it', async () => {
      const d = await newDevice();
      const p = agent(d);
      await onlineOn(d.uuid, 0, p);
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id, channel: 'job' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const migrationId = res.body.migration.id;
      const job = await changeBrokerJob(d.uuid, migrationId);
      assert.deepEqual(Object.keys(job.jobData).sort(), ['broker', 'brokerId', 'host', 'port', 'protocol', 'version']);
      assert.equal(job.jobData.brokerId, env.brokers[1]!.id);
      assert.equal(job.jobData.version, res.body.shadowVersion);
      const ended = await jobEnds(job.jobId, p);
      assert.equal(ended.status, 'SUCCEEDED', JSON.stringify(ended));
      const m = await migrationEnds(migrationId);
      assert.equal(m.status, 'completed');
      assert.equal(m.channel, 'job');
      await onlineOn(d.uuid, 1, p);
      await waitFor(async () => !(await env.connectedOn(0, d.uuid)), { timeoutMs: 10_000, message: 'the device left broker 0' });
    });

    it('runs a job queued while the device was offline when the device starts', async () => {
      const d = await newDevice();
      const first = agent(d);
      await onlineOn(d.uuid, 0, first);
      await first.stop();
      await waitFor(async () => !(await env.connectedOn(0, d.uuid)), { timeoutMs: 10_000, message: 'the agent left broker 0' });
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id, channel: 'job' });
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const job = await changeBrokerJob(d.uuid, res.body.migration.id);
      assert.equal(job.status, 'QUEUED');
      await new Promise((r) => setTimeout(r, 500));
      assert.equal((await env.api('GET', `/api/v1/jobs/${job.jobId}`)).body.status, 'QUEUED', 'nobody ran it while the device was away');
      const second = agent(d);
      const ended = await jobEnds(job.jobId, second);
      assert.equal(ended.status, 'SUCCEEDED', JSON.stringify(ended));
      assert.equal((await migrationEnds(res.body.migration.id)).status, 'completed');
      await onlineOn(d.uuid, 1, second);
    });

    it('rejects a job of a type the agent has no handler for, and runs the next one', async () => {
      const d = await newDevice();
      const p = agent(d);
      await onlineOn(d.uuid, 0, p);
      const created = await env.api('POST', `/api/v1/devices/${d.uuid}/jobs`, { jobType: 'make-coffee', jobData: { sugar: 2 } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const ended = await jobEnds(created.body.jobId, p);
      assert.equal(ended.status, 'REJECTED');
      assert.match(ended.statusDetails.reason, /unknown job type make-coffee/);
      // A malformed change-broker document is REJECTED too (not retryable), and nothing moves.
      const bad = await env.api('POST', `/api/v1/devices/${d.uuid}/jobs`, { jobType: 'change-broker', jobData: { brokerId: 'b' } });
      const badEnded = await jobEnds(bad.body.jobId, p);
      assert.equal(badEnded.status, 'REJECTED');
      assert.match(badEnded.statusDetails.reason, /not a broker assignment/);
      assert.equal(await env.connectedOn(0, d.uuid), true);
    });
  });
}
