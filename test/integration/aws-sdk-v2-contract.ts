/**
 * AWS's own v2 device SDK (`aws-iot-device-sdk-v2`: `IotShadowClientv2`, `IotJobsClientv2`, unmodified) against
 * Switchyard's `$aws/things/{uuid}/…` namespace over plain TCP: PGlite + the embedded Aedes brokers (MQTT 3.1.1,
 * username/password = uuid/token) and PostgreSQL + Mosquitto (MQTT 5, anonymous). The SDK correlates every answer
 * by the `clientToken` it generated, so each accepted call also proves the echo. Includes a device written only
 * with SDK calls that follows a broker move (./../helpers/aws-sdk-v2-device.ts).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../helpers/switchyard.ts';
import { SdkServiceError, startSdkV2FollowingDevice, startSdkV2Host, type SdkV2Device, type SdkV2Host } from '../helpers/aws-sdk-v2.ts';
import { waitFor } from '../helpers/wait.ts';

/** Asserts that `p` rejects with a `…/rejected` answer and returns its body. */
async function rejection(p: Promise<unknown>): Promise<any> {
  const err = await p.then(
    (v) => assert.fail(`expected a rejection, got ${JSON.stringify(v)}`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SdkServiceError, String(err));
  assert.ok(err.modeledError, `no modeled error (internal: ${err.internalError})`);
  return err.modeledError;
}

export function awsSdkV2Contract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`AWS IoT device SDK v2 (${kind})`, { skip, timeout: 120_000 }, () => {
    let env: TestEnv;
    let host: SdkV2Host;
    before(async () => {
      [env, host] = await Promise.all([startTestSwitchyard(kind), startSdkV2Host()]);
    });
    after(async () => {
      const code = await host?.stop();
      await env?.stop();
      // Every SDK handle was closed and the host left on its own, promptly.
      if (host) assert.equal(code, 0, `SDK host exit code; stderr:\n${host.output()}`);
    });

    /** A registered device connected with the SDK the way the broker wants it: Aedes uuid/token, Mosquitto anonymous. */
    async function sdkDevice(brokerIndex = 0): Promise<{ uuid: string; token: string; sdk: SdkV2Device }> {
      const d = await env.createDevice({ uuid: uniqueId('sdk2'), brokerIndex });
      const b = env.brokers[brokerIndex]!;
      const sdk = await host.connect({
        protocol: kind === 'embedded' ? 'mqtt311' : 'mqtt5',
        host: b.host,
        port: b.port,
        clientId: d.uuid,
        ...(kind === 'embedded' ? { username: d.uuid, password: d.token } : {}),
        operationTimeoutSeconds: 3,
      });
      return { ...d, sdk };
    }

    it('answers the shadow operations of IotShadowClientv2: 404, update, get with delta, 409, named shadows, delete', async () => {
      const { uuid, sdk } = await sdkDevice();
      const thingName = uuid;
      const missing = await rejection(sdk.shadow('getShadow', { thingName }));
      assert.equal(missing.code, 404);
      assert.match(missing.message, /No shadow exists/);
      assert.equal(typeof missing.timestamp, 'number');

      const updated = await sdk.shadow('updateShadow', { thingName, state: { reported: { led: 'off', temp: 21 } } });
      assert.equal(updated.version, 1);
      assert.deepEqual(updated.state, { reported: { led: 'off', temp: 21 } });
      assert.equal(typeof updated.metadata.reported.led.timestamp, 'number');
      assert.equal(typeof updated.clientToken, 'string');

      const desired = await env.api('POST', `/api/v1/devices/${uuid}/shadow`, { state: { desired: { led: 'on' } } });
      assert.equal(desired.status, 200);
      const got = await sdk.shadow('getShadow', { thingName });
      assert.equal(got.version, 2);
      assert.deepEqual(got.state, { desired: { led: 'on' }, reported: { led: 'off', temp: 21 }, delta: { led: 'on' } });

      const conflict = await rejection(sdk.shadow('updateShadow', { thingName, state: { reported: { led: 'on' } }, version: 999 }));
      assert.equal(conflict.code, 409);
      assert.equal(conflict.message, 'Version conflict');
      assert.equal((await env.api('GET', `/api/v1/devices/${uuid}/shadow`)).body.version, 2, 'the conflict changed nothing');
      const caughtUp = await sdk.shadow('updateShadow', { thingName, state: { reported: { led: 'on' } }, version: 2 });
      assert.equal(caughtUp.version, 3);
      assert.equal((await sdk.shadow('getShadow', { thingName })).state.delta, undefined);

      // A named shadow is the same store the HTTP API and the `iot/device/…` namespace see.
      const named = await sdk.shadow('updateNamedShadow', { thingName, shadowName: 'config', state: { reported: { interval: 30 } } });
      assert.equal(named.version, 1);
      assert.deepEqual((await sdk.shadow('getNamedShadow', { thingName, shadowName: 'config' })).state, { reported: { interval: 30 } });
      assert.deepEqual((await env.api('GET', `/api/v1/devices/${uuid}/shadows/config`)).body.state, { reported: { interval: 30 } });
      const forbidden = await rejection(sdk.shadow('updateNamedShadow', { thingName, shadowName: 'device-state', state: { desired: { mqtt: { brokerId: 1 } } } }));
      assert.equal(forbidden.code, 403);

      const deleted = await sdk.shadow('deleteShadow', { thingName });
      assert.equal(deleted.version, 3);
      assert.equal((await rejection(sdk.shadow('getShadow', { thingName }))).code, 404);
      assert.equal((await env.api('GET', `/api/v1/devices/${uuid}/shadow`)).status, 404);
      assert.equal((await sdk.shadow('deleteNamedShadow', { thingName, shadowName: 'config' })).version, 1);
      await sdk.disconnect();
    });

    it('streams the delta of an HTTP desired change and the documents of each update', async () => {
      const { uuid, sdk } = await sdkDevice();
      const thingName = uuid;
      const deltas = await sdk.stream('createShadowDeltaUpdatedStream', { thingName });
      const documents = await sdk.stream('createShadowUpdatedStream', { thingName });
      await sdk.shadow('updateShadow', { thingName, state: { reported: { mode: 'eco' } } });
      const res = await env.api('POST', `/api/v1/devices/${uuid}/shadow`, { state: { desired: { mode: 'boost', fan: 3 } } });
      assert.equal(res.status, 200);
      const delta = await deltas.next('publish');
      assert.deepEqual(delta.state, { mode: 'boost', fan: 3 });
      assert.equal(delta.version, res.body.version);
      assert.equal(typeof delta.metadata.mode.timestamp, 'number');
      const docs = await documents.next('publish', (m) => m.current?.version === res.body.version);
      assert.deepEqual(docs.previous.state, { reported: { mode: 'eco' } });
      assert.deepEqual(docs.current.state, { desired: { mode: 'boost', fan: 3 }, reported: { mode: 'eco' } });
      assert.equal(deltas.events.filter((e) => e.kind === 'error').length, 0, 'every delta parsed');
      await deltas.close();
      await documents.close();
      await sdk.disconnect();
    });

    it('runs the jobs workflow of IotJobsClientv2: notify-next, pending, start-next, describe, update with expectedVersion', async () => {
      const { uuid, sdk } = await sdkDevice();
      const thingName = uuid;
      const next = await sdk.stream('createNextJobExecutionChangedStream', { thingName });
      const changed = await sdk.stream('createJobExecutionsChangedStream', { thingName });
      const created = await env.api('POST', `/api/v1/devices/${uuid}/jobs`, { jobType: 'reboot', jobData: { operation: 'reboot', delaySeconds: 1 } });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      const jobId: string = created.body.jobId;

      const notified = await next.next('publish', (m) => m.execution?.jobId === jobId);
      assert.equal(notified.execution.status, 'QUEUED');
      assert.deepEqual(notified.execution.jobDocument, { operation: 'reboot', delaySeconds: 1 });
      assert.equal(typeof notified.timestamp, 'number');
      const listed = await changed.next('publish', (m) => m.jobs?.QUEUED?.some((j: any) => j.jobId === jobId));
      assert.equal(listed.jobs.QUEUED[0].versionNumber, 1);

      const pending = await sdk.jobs('getPendingJobExecutions', { thingName });
      assert.deepEqual(pending.queuedJobs.map((j: any) => j.jobId), [jobId]);
      assert.deepEqual(pending.inProgressJobs, []);

      const started = await sdk.jobs('startNextPendingJobExecution', { thingName, statusDetails: { step: 'download' } });
      assert.equal(started.execution.jobId, jobId);
      assert.equal(started.execution.status, 'IN_PROGRESS');
      assert.equal(started.execution.versionNumber, 2);
      assert.deepEqual(started.execution.jobDocument, { operation: 'reboot', delaySeconds: 1 });

      const described = await sdk.jobs('describeJobExecution', { thingName, jobId, includeJobDocument: true });
      assert.equal(described.execution.status, 'IN_PROGRESS');
      assert.deepEqual(described.execution.statusDetails, { step: 'download' });
      assert.equal((await sdk.jobs('describeJobExecution', { thingName, jobId: '$next' })).execution.jobId, jobId);

      const stale = await rejection(sdk.jobs('updateJobExecution', { thingName, jobId, status: 'SUCCEEDED', expectedVersion: 1 }));
      assert.equal(stale.code, 'VersionMismatch');
      assert.equal(stale.executionState.versionNumber, 2);
      const done = await sdk.jobs('updateJobExecution', { thingName, jobId, status: 'SUCCEEDED', expectedVersion: 2, includeJobExecutionState: true });
      assert.equal(done.executionState.status, 'SUCCEEDED');
      assert.equal(done.executionState.versionNumber, 3);
      // The queue is empty again: notify-next without an execution.
      await next.next('publish', (m) => m.execution === undefined);
      assert.equal((await env.api('GET', `/api/v1/jobs/${jobId}`)).body.status, 'SUCCEEDED');
      // Nothing pending: AWS answers both with no execution at all.
      assert.equal((await sdk.jobs('describeJobExecution', { thingName, jobId: '$next' })).execution, undefined);
      assert.equal((await sdk.jobs('startNextPendingJobExecution', { thingName })).execution, undefined);

      const unknown = await rejection(sdk.jobs('describeJobExecution', { thingName, jobId: 'no-such-job' }));
      assert.equal(unknown.code, 'ResourceNotFound');
      const terminal = await rejection(sdk.jobs('updateJobExecution', { thingName, jobId, status: 'IN_PROGRESS' }));
      assert.equal(terminal.code, 'InvalidStateTransition');
      await next.close();
      await changed.close();
      await sdk.disconnect();
    });

    it('moves a device written with the SDK to the broker of PUT /devices/:uuid/broker, and back', async () => {
      const d = await env.createDevice({ uuid: uniqueId('sdk2-move'), brokerIndex: 0 });
      const [a, b] = env.brokers as [TestEnv['brokers'][0], TestEnv['brokers'][0]];
      const device = startSdkV2FollowingDevice({
        thingName: d.uuid,
        brokerId: a.id,
        host: a.host,
        port: a.port,
        ...(kind === 'embedded' ? { username: d.uuid, password: d.token } : {}),
      });
      try {
        await device.waitForEvent((e) => e.event === 'connected');
        for (const [to, from] of [[b, a], [a, b]] as const) {
          const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: to.id });
          assert.equal(res.status, 200, JSON.stringify(res.body));
          const migration = await waitFor(
            async () => {
              const m = (await env.api('GET', `/api/v1/migrations/${res.body.migration.id}`)).body;
              return m.status === 'completed' || m.status === 'timed_out' ? m : null;
            },
            { timeoutMs: 20_000, intervalMs: 100, message: `migration ${res.body.migration.id} to end` },
          ).catch((err: Error) => assert.fail(`${err.message}\n--- device ---\n${device.output()}`));
          assert.equal(migration.status, 'completed');
          assert.equal(migration.fromBrokerId, from.id);
          assert.equal(migration.toBrokerId, to.id);
          await device.waitForEvent((e) => e.event === 'moved' && e.to === to.id);
          const shadow = (await env.api('GET', `/api/v1/devices/${d.uuid}/shadows/device-state`)).body;
          assert.equal(shadow.state.reported.mqtt.brokerId, to.id);
          assert.equal(shadow.state.reported.mqtt.previousBrokerId, from.id);
          assert.equal(shadow.state.delta, undefined, 'desired.mqtt and reported.mqtt agree');
        }
        assert.deepEqual(device.events().filter((e) => e.event === 'error'), []);
      } finally {
        const code = await device.stop();
        assert.equal(code, 0, `device exit code; output:\n${device.output()}`);
      }
    });
  });
}
