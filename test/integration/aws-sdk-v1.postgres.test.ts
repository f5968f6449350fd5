/**
 * AWS's v1 device SDK (`aws-iot-device-sdk`, unmodified: `thingShadow` and `jobs`) against Switchyard over mutual
 * TLS: a Mosquitto TLS listener with `require_certificate true` and `use_identity_as_username true` (a throwaway CA;
 * each device's certificate CN is its uuid) and the broker's own ACL file confining each certificate to
 * `$aws/things/{its CN}/#`. The Switchyard server connects to the same broker's plain listener, anonymously.
 * The v1 SDK cannot speak plain TCP, so this is the only way to run it; it is pure JavaScript (mqtt.js 4) and runs
 * in the test process.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import awsIot, { type DeviceOptions, type Job, type ThingShadow } from 'aws-iot-device-sdk';
import mqtt, { type MqttClient } from 'mqtt';
import { realServers } from '../helpers/real.ts';
import { createTestPki, opensslAvailable, type TestPki } from '../helpers/pki.ts';
import { startMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

const real = realServers(['postgres', 'mosquitto']);
const skip = real.skip || (opensslAvailable() ? false : 'openssl not found');
if (skip && process.env.SWITCHYARD_TEST_REAL === 'required') throw new Error(`SWITCHYARD_TEST_REAL=required but ${skip}`);

/** Anonymous clients (the server, the observer) may use everything; a certificate only its own thing. */
const ACL = ['topic readwrite #', 'topic readwrite $aws/#', '', 'pattern readwrite $aws/things/%u/#', ''].join('\n');

interface Status {
  stat: 'accepted' | 'rejected';
  clientToken: string;
  stateObject: any;
}

/** Runs one thingShadow operation and resolves with its `status` event, or rejects on its `timeout`. */
function operation(shadows: ThingShadow, start: () => string | null): Promise<Status> {
  const token = start();
  assert.ok(token, 'the SDK refused to start the operation (another one is still running)');
  return new Promise((resolve, reject) => {
    const onStatus = (_thing: string, stat: Status['stat'], clientToken: string, stateObject: any): void => {
      if (clientToken !== token) return;
      done();
      resolve({ stat, clientToken, stateObject });
    };
    const onTimeout = (_thing: string, clientToken: string): void => {
      if (clientToken !== token) return;
      done();
      reject(new Error(`operation ${token} timed out`));
    };
    const done = (): void => {
      shadows.off('status', onStatus);
      shadows.off('timeout', onTimeout);
    };
    shadows.on('status', onStatus);
    shadows.on('timeout', onTimeout);
  });
}

describe('AWS IoT device SDK v1 over mutual TLS (PostgreSQL + Mosquitto)', { skip, timeout: 120_000 }, () => {
  let pki: TestPki;
  let broker: TestMosquitto;
  let env: TestEnv;
  let brokerId: number;
  let observer: MqttClient;
  const clients: Array<{ end(force?: boolean, cb?: () => void): void }> = [];

  before(async () => {
    pki = await createTestPki();
    const aclFile = join(pki.dir, 'acl');
    await writeFile(aclFile, ACL);
    await chmod(aclFile, 0o644);
    [broker, env] = await Promise.all([
      startMosquitto({
        tls: { caFile: pki.caFile, certFile: pki.server.cert, keyFile: pki.server.key, requireCertificate: true, useIdentityAsUsername: true },
        extraConfig: `acl_file ${aclFile}`,
      }),
      startTestSwitchyard('postgres', { brokers: 0 }),
    ]);
    const res = await env.api('POST', '/api/v1/brokers', { name: 'mosquitto-mtls', protocol: 'mqtt', host: broker.host, port: broker.port });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    brokerId = res.body.id;
    await env.sy.pool.refresh();
    await env.sy.pool.waitConnected(brokerId, 10_000);
    observer = await mqtt.connectAsync(broker.url, { clientId: uniqueId('observer'), reconnectPeriod: 0, protocolVersion: 4 });
  });
  after(async () => {
    await Promise.all(clients.map((c) => new Promise<void>((resolve) => c.end(true, () => resolve()))));
    await observer?.endAsync(true);
    await env?.stop();
    await broker?.stop();
    await pki?.remove();
  });

  /** A registered device with a client certificate (CN = uuid) and the v1 SDK's connection options for it. */
  async function device(): Promise<{ uuid: string; options: DeviceOptions }> {
    const uuid = uniqueId('sdk1');
    const res = await env.api('POST', '/api/v1/devices', { uuid, brokerId });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    const cert = await pki.client(uuid);
    const options: DeviceOptions = {
      host: 'localhost', // the name in the server certificate (the SDK also uses it for SNI)
      port: broker.tlsPort!,
      keyPath: cert.key,
      certPath: cert.cert,
      caPath: pki.caFile,
      clientId: uuid,
      enableMetrics: false, // else the username carries the SDK's metrics string
      baseReconnectTimeMs: 1000,
      keepalive: 30,
    };
    return { uuid, options };
  }

  async function shadowClient(options: DeviceOptions, operationTimeout = 3000): Promise<ThingShadow> {
    const shadows = awsIot.thingShadow(options, { operationTimeout });
    clients.push(shadows);
    shadows.on('error', () => undefined); // reconnects are the SDK's business; a test that needs the link fails on its own
    await once(shadows, 'connect');
    return shadows;
  }

  function register(shadows: ThingShadow, thing: string, persistentSubscribe: boolean): Promise<void> {
    return new Promise((resolve, reject) => shadows.register(thing, { persistentSubscribe }, (err) => (err ? reject(err) : resolve())));
  }

  it('registers, gets, updates with automatic versioning, receives a delta and deletes (thingShadow)', async () => {
    const { uuid, options } = await device();
    const shadows = await shadowClient(options);
    await register(shadows, uuid, true);

    const missing = await operation(shadows, () => shadows.get(uuid));
    assert.equal(missing.stat, 'rejected');
    assert.equal(missing.stateObject.code, 404);

    const first = await operation(shadows, () => shadows.update(uuid, { state: { reported: { led: 'off' } } }));
    assert.equal(first.stat, 'accepted');
    assert.equal(first.stateObject.version, 1);

    const delta = once(shadows, 'delta');
    const http = await env.api('POST', `/api/v1/devices/${uuid}/shadow`, { state: { desired: { led: 'on' } } });
    assert.equal(http.status, 200);
    const [thing, deltaDoc] = await delta;
    assert.equal(thing, uuid);
    assert.deepEqual(deltaDoc.state, { led: 'on' });
    assert.equal(deltaDoc.version, 2);

    // The SDK adds the last version it saw (2, from the delta) to the next update: the server sees it and accepts it.
    const requests: any[] = [];
    observer.on('message', (topic, raw) => topic === `$aws/things/${uuid}/shadow/update` && requests.push(JSON.parse(raw.toString())));
    await observer.subscribeAsync(`$aws/things/${uuid}/shadow/update`, { qos: 1 });
    const second = await operation(shadows, () => shadows.update(uuid, { state: { reported: { led: 'on' } } }));
    assert.equal(second.stat, 'accepted');
    assert.equal(second.stateObject.version, 3);
    await waitFor(() => requests.length > 0, { message: 'the observed update request' });
    assert.equal(requests[0].version, 2);
    assert.equal(requests[0].clientToken, second.clientToken);

    const got = await operation(shadows, () => shadows.get(uuid));
    assert.equal(got.stat, 'accepted');
    assert.deepEqual(got.stateObject.state, { desired: { led: 'on' }, reported: { led: 'on' } });

    const deleted = await operation(shadows, () => shadows.delete(uuid));
    assert.equal(deleted.stat, 'accepted');
    assert.equal(deleted.stateObject.version, 3);
    assert.equal((await env.api('GET', `/api/v1/devices/${uuid}/shadow`)).status, 404);
  });

  it('rejects a stale version with 409 and accepts again after a get (persistentSubscribe: false)', async () => {
    const { uuid, options } = await device();
    const shadows = await shadowClient(options);
    await register(shadows, uuid, false);
    const first = await operation(shadows, () => shadows.update(uuid, { state: { reported: { mode: 'eco' } } }));
    assert.equal(first.stateObject.version, 1);
    // Someone else writes; this SDK, not subscribed to accepted topics between operations, still believes version 1.
    assert.equal((await env.api('POST', `/api/v1/devices/${uuid}/shadow`, { state: { reported: { note: 'x' } } })).status, 200);
    const stale = await operation(shadows, () => shadows.update(uuid, { state: { reported: { mode: 'boost' } } }));
    assert.equal(stale.stat, 'rejected');
    assert.equal(stale.stateObject.code, 409);
    assert.equal(stale.stateObject.message, 'Version conflict');
    assert.equal((await env.api('GET', `/api/v1/devices/${uuid}/shadow`)).body.state.reported.mode, 'eco', 'the conflict changed nothing');
    const got = await operation(shadows, () => shadows.get(uuid));
    assert.equal(got.stateObject.version, 2);
    const retried = await operation(shadows, () => shadows.update(uuid, { state: { reported: { mode: 'boost' } } }));
    assert.equal(retried.stat, 'accepted');
    assert.equal(retried.stateObject.version, 3);
  });

  it('confines a certificate to its own thing through the broker ACL: requests for another thing go unanswered', async () => {
    const [mine, other] = [await device(), await device()];
    const shadows = await shadowClient(mine.options, 1500);
    const sent: string[] = [];
    shadows.on('packetsend', (packet: { cmd: string; topic?: string }) => packet.cmd === 'publish' && sent.push(packet.topic!));
    await register(shadows, other.uuid, false);
    await assert.rejects(operation(shadows, () => shadows.update(other.uuid, { state: { reported: { hijacked: true } } })), /timed out/);
    assert.ok(sent.includes(`$aws/things/${other.uuid}/shadow/update`), `the SDK did publish the request; sent ${sent.join(', ')}`);
    assert.equal((await env.api('GET', `/api/v1/devices/${other.uuid}/shadow`)).status, 404, 'the other shadow was never written');
  });

  it('delivers $next/get/accepted and notify-next to subscribeToJobs and takes the jobs to SUCCEEDED (jobs)', async () => {
    const { uuid, options } = await device();
    const jobs = awsIot.jobs(options);
    clients.push(jobs);
    jobs.on('error', () => undefined);
    await once(jobs, 'connect');
    const received: Job[] = [];
    const wakers = new Set<() => void>();
    /** The job `jobId` as the SDK handed it to the subscribeToJobs callback (already or later). */
    const jobFromSdk = (jobId: string): Promise<Job> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const job = received.find((j) => j.id === jobId);
          if (!job) return;
          clearTimeout(timer);
          wakers.delete(check);
          resolve(job);
        };
        const timer = setTimeout(() => {
          wakers.delete(check);
          reject(new Error(`job ${jobId} never reached subscribeToJobs; got ${received.map((j) => j.id).join(', ')}`));
        }, 5000);
        wakers.add(check);
        check();
      });
    const jobStatus = (jobId: string, status: string): Promise<unknown> =>
      waitFor(async () => (await env.api('GET', `/api/v1/jobs/${jobId}`)).body.status === status, { message: `job ${jobId} ${status}` });

    // A job queued before the device listens: it learns of it from $next/get/accepted.
    const early = await env.api('POST', `/api/v1/devices/${uuid}/jobs`, { jobType: 'reboot', jobData: { operation: 'reboot', delaySeconds: 1 } });
    assert.equal(early.status, 201);
    jobs.subscribeToJobs(uuid, 'reboot', (err, job) => {
      assert.equal(err, null);
      if (!job) return;
      received.push(job);
      for (const wake of [...wakers]) wake();
    });
    jobs.startJobNotifications(uuid); // publishes to $next/get after the SUBSCRIBE, on the same connection
    const job1 = await jobFromSdk(early.body.jobId);
    assert.equal(job1.operation, 'reboot');
    assert.deepEqual(job1.document, { operation: 'reboot', delaySeconds: 1 });
    job1.inProgress({ step: 'rebooting' });
    await jobStatus(job1.id, 'IN_PROGRESS');
    // The next one is queued now; notify-next announces it once the first one is done.
    const second = await env.api('POST', `/api/v1/devices/${uuid}/jobs`, { jobType: 'reboot', jobData: { operation: 'reboot', delaySeconds: 2 } });
    assert.equal(second.status, 201);
    job1.succeeded({ took: '1s' });
    await jobStatus(job1.id, 'SUCCEEDED');
    const job2 = await jobFromSdk(second.body.jobId);
    assert.equal(job2.status.status, 'QUEUED');
    job2.inProgress();
    await jobStatus(job2.id, 'IN_PROGRESS');
    job2.succeeded();
    await jobStatus(job2.id, 'SUCCEEDED');
    assert.deepEqual((await env.api('GET', `/api/v1/jobs/${job1.id}`)).body.statusDetails, { took: '1s' });
    // notify-next may repeat what $next/get/accepted said (both carry the head of the queue): the ids are what counts.
    assert.deepEqual([...new Set(received.map((j) => j.id))], [job1.id, job2.id]);
  });
});
