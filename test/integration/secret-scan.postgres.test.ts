/**
 * Issue 5: no secret leaks. A scenario exercises every path a secret takes — operator tokens (created, used,
 * revoked), brokers with the server's passwords (Mosquitto with dynamic security, a password file; a wrong password
 * first, then a changed one), devices with tokens (provisioned on dynsec brokers, rotated, deleted), a move completed
 * by the real agent, failed authentication of every kind, bad input that carries a password — with the server's log
 * captured at debug level. Then every token and password is looked for, in clear in the log, the audit rows,
 * shadows, migrations, outbox rows, credential and registry tables and every HTTP answer after creation, and as its
 * sha256 in the log and the answers. A hit fails and says which secret was found where (never the secret itself).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { createAgent } from '../../packages/agent/src/index.ts';
import { dynsecMissingReason, startDynsecMosquitto, type DynsecMosquitto } from '../helpers/mosquitto-dynsec.ts';
import { startMosquitto, type TestMosquitto } from '../helpers/mosquitto.ts';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, uniqueId, type ApiResponse, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

const real = realServers(['postgres', 'mosquitto']);
const skip = real.skip || (dynsecMissingReason() ?? false);
const sha256 = (s: string): string => createHash('sha256').update(s).digest('hex');

describe('secrets stay secret (PostgreSQL, Mosquitto with dynamic security and a password file)', { skip, timeout: 300_000 }, () => {
  let env: TestEnv;
  const lines: string[] = [];
  const cleanups: Array<() => Promise<unknown>> = [];
  /** Every secret of the run, labelled (the label is what a failure shows). */
  const secrets: Array<{ label: string; value: string }> = [];
  /** Every HTTP answer that may not hold a secret (all but the one that creates it). */
  const answers: Array<{ where: string; body: string }> = [];
  /** The answers that create a secret (the one place it may show), to prove that the scan sees secrets. */
  const creations: string[] = [];

  const secret = (label: string, value: string): string => {
    secrets.push({ label, value });
    return value;
  };
  /** `env.api` that keeps the answer for the scan; `creates` marks the one answer allowed to show a new secret. */
  const call = async (method: string, path: string, body?: unknown, o: { token?: string | null; raw?: string; creates?: boolean } = {}): Promise<ApiResponse> => {
    const res = await env.api(method, path, body, o);
    const text = typeof res.body === 'string' ? res.body : JSON.stringify(res.body ?? '');
    if (o.creates && res.status < 300) creations.push(text);
    else answers.push({ where: `${method} ${path} → ${res.status}`, body: text });
    return res;
  };
  const ok = async (method: string, path: string, body?: unknown, o: { token?: string | null; creates?: boolean } = {}): Promise<any> => {
    const res = await call(method, path, body, o);
    assert.ok(res.status >= 200 && res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };

  before(async () => {
    env = await startTestSwitchyard('postgres', { brokers: 1, captureLog: { lines }, env: { SWITCHYARD_MIGRATION_SWEEP_MS: '200' } });
    secret('the admin token', env.adminToken);
  });
  after(async () => {
    for (const fn of cleanups.reverse()) await fn().catch(() => undefined);
    await env?.stop();
  });

  it('runs a scenario through every path a secret takes, then finds no token or password anywhere', async () => {
    // ── brokers with passwords ──
    const dyn: DynsecMosquitto[] = [];
    for (let i = 0; i < 2; i++) {
      const m = await startDynsecMosquitto();
      cleanups.push(() => m.stop());
      secret(`dynsec broker ${i + 1}'s server password`, m.server.password);
      dyn.push(m);
    }
    const staticRight = secret('the static broker password (second)', randomBytes(18).toString('base64url'));
    const staticWrong = secret('the static broker password (first, wrong)', randomBytes(18).toString('base64url'));
    const pwMosquitto: TestMosquitto = await startMosquitto({ users: [{ username: 'sy-static', password: staticRight }] });
    cleanups.push(() => pwMosquitto.stop());

    const brokerIds: number[] = [];
    for (const [i, m] of dyn.entries()) {
      const b = await ok('POST', '/api/v1/brokers', { name: `scan-dynsec-${i + 1}`, protocol: 'mqtt', host: m.host, port: m.port, provisioner: 'mosquitto-dynsec', username: m.server.username, password: m.server.password });
      brokerIds.push(b.id);
    }
    const staticBroker = await ok('POST', '/api/v1/brokers', { name: 'scan-static', protocol: 'mqtt', host: pwMosquitto.host, port: pwMosquitto.port, username: 'sy-static', password: staticWrong });
    await env.sy.pool.refresh();
    // The wrong password is refused (and logged as a failure) until it is changed.
    await new Promise((r) => setTimeout(r, 500));
    await ok('PATCH', `/api/v1/brokers/${staticBroker.id}`, { password: staticRight });
    await env.sy.pool.refresh();
    for (const id of [...brokerIds, staticBroker.id]) await env.sy.pool.waitConnected(id, 15_000);
    // Bad input that carries a password: refused, and the answer does not repeat it.
    const carried = secret('a password sent with bad input', randomBytes(18).toString('base64url'));
    assert.equal((await call('POST', '/api/v1/brokers', { name: 'bad-port', protocol: 'mqtt', host: '127.0.0.1', port: 70_000, password: carried })).status, 400);
    assert.equal((await call('POST', '/api/v1/brokers', { name: 'scan-static', protocol: 'mqtt', host: '127.0.0.1', port: 1883, username: 'x', password: carried })).status, 409);
    assert.equal((await call('PATCH', `/api/v1/brokers/${staticBroker.id}`, { password: carried, host: 'not a host' })).status, 400);
    assert.equal((await call('POST', '/api/v1/brokers', { name: 'bad-cert', protocol: 'mqtts', host: '127.0.0.1', port: 8883, password: carried, caCert: `-----BEGIN CERTIFICATE-----\n${carried}\n-----END CERTIFICATE-----` })).status, 400);
    assert.equal((await call('POST', '/api/v1/brokers', `{"name":"bad-json","password":"${carried}",}` as unknown as object)).status, 400);

    // ── operator tokens ──
    const apiToken = async (scope: string): Promise<{ id: number; token: string }> => {
      const t = await ok('POST', '/api/v1/tokens', { name: uniqueId(`scan-${scope}`), scope }, { creates: true });
      secret(`the ${scope} API token`, t.token);
      return t;
    };
    const operator = await apiToken('operator');
    const viewer = await apiToken('viewer');
    await apiToken('admin');
    await ok('GET', '/api/v1/devices', undefined, { token: viewer.token });
    assert.equal((await call('POST', '/api/v1/devices', {}, { token: viewer.token })).status, 403);
    await ok('DELETE', `/api/v1/tokens/${viewer.id}`);
    assert.equal((await call('GET', '/api/v1/devices', undefined, { token: viewer.token })).status, 401, 'a revoked token');

    // ── devices: provisioned, rotated, deleted ──
    const device = async (brokerId: number, label: string): Promise<{ uuid: string; token: string }> => {
      const d = await ok('POST', '/api/v1/devices', { uuid: uniqueId('scan'), brokerId }, { creates: true });
      secret(`${label}'s token`, d.token);
      return { uuid: d.uuid, token: d.token };
    };
    const mover = await device(brokerIds[0]!, 'the moving device');
    const rotated = await device(brokerIds[0]!, 'the rotated device (old)');
    const onStatic = await device(staticBroker.id, 'the device on the static broker');
    const doomed = await device(env.brokers[0]!.id, 'the deleted device');
    await waitFor(() => dyn[0]!.canLogin(mover.uuid, mover.token), { timeoutMs: 15_000, message: 'the device provisioned on dynsec broker 1' });
    const fresh = await ok('POST', `/api/v1/devices/${rotated.uuid}/token`, undefined, { creates: true });
    secret('the rotated device (new)’s token', fresh.token);
    assert.equal((await call('GET', `/api/v1/devices/${rotated.uuid}/config`, undefined, { token: rotated.token })).status, 401, 'the old token after rotation');
    await ok('GET', `/api/v1/devices/${rotated.uuid}/config`, undefined, { token: fresh.token });
    await ok('DELETE', `/api/v1/devices/${doomed.uuid}`);
    assert.equal((await call('GET', `/api/v1/devices/${doomed.uuid}/config`, undefined, { token: doomed.token })).status, 401, 'a deleted device');

    // ── a move, completed by the real agent (provisioned on the target first, deprovisioned from the source) ──
    const stateDir = await mkdtemp(join(tmpdir(), 'sy-scan-agent-'));
    cleanups.push(() => rm(stateDir, { recursive: true, force: true }));
    const agent = createAgent({
      config: { apiUrl: env.url, deviceUuid: mover.uuid, deviceToken: mover.token, stateDir, heartbeatMs: 0 },
      migration: { connectTimeoutMs: 5000, verifyTimeoutMs: 5000, backoff: { baseMs: 200, maxMs: 1000 } },
      reconnectBackoff: { baseMs: 100, maxMs: 1000 },
    });
    cleanups.push(() => agent.stop());
    await agent.start();
    await waitFor(() => agent.state().connectedBrokerId === brokerIds[0], { timeoutMs: 15_000, message: 'the agent on dynsec broker 1' });
    const move = await ok('PUT', `/api/v1/devices/${mover.uuid}/broker`, { brokerId: brokerIds[1] });
    const done = await waitFor(
      async () => {
        const m = (await call('GET', `/api/v1/migrations/${move.migration.id}`)).body;
        return ['completed', 'failed', 'timed_out'].includes(m.status) ? m : null;
      },
      { timeoutMs: 30_000, intervalMs: 100, message: 'the move to end' },
    );
    assert.equal(done.status, 'completed', JSON.stringify(done));
    await agent.stop();
    // The other channels carry the same assignment (a command, a job).
    await ok('PUT', `/api/v1/devices/${onStatic.uuid}/broker`, { brokerId: env.brokers[0]!.id, channel: 'command' });
    await ok('PUT', `/api/v1/devices/${rotated.uuid}/broker`, { brokerId: brokerIds[1], channel: 'job' });

    // ── failed authentication of every kind ──
    for (const header of [`Bearer sya_${randomBytes(16).toString('hex')}`, `Bearer syd_${randomBytes(16).toString('hex')}`, `Bearer ${env.adminToken}x`, `Basic ${Buffer.from(`admin:${operator.token}`).toString('base64')}`, `bearer  ${mover.token} extra`]) {
      const res = await fetch(`${env.url}/api/v1/brokers`, { headers: { authorization: header } });
      answers.push({ where: `GET /api/v1/brokers with a bad Authorization → ${res.status}`, body: await res.text() });
      assert.ok(res.status === 401 || res.status === 403, `${res.status} for a bad Authorization header`);
    }
    assert.equal((await call('GET', '/api/v1/brokers', undefined, { token: fresh.token })).status, 403, 'a device token on an admin route');
    assert.equal((await call('GET', `/api/v1/devices/${onStatic.uuid}/config`, undefined, { token: fresh.token })).status, 403, "another device's config");
    const refused = await mqtt.connectAsync(`mqtt://${dyn[1]!.host}:${dyn[1]!.port}`, { clientId: mover.uuid, username: mover.uuid, password: `${mover.token}x`, reconnectPeriod: 0, protocolVersion: 4 }).then(
      (c) => c.endAsync().then(() => false),
      () => true,
    );
    assert.ok(refused, 'a wrong device password is refused by the broker');

    // ── reads that must not show a secret ──
    await ok('GET', '/api/v1/brokers');
    await ok('GET', `/api/v1/brokers/${staticBroker.id}`);
    await ok('GET', '/api/v1/tokens?includeRevoked=true');
    await ok('GET', '/api/v1/devices');
    await ok('GET', `/api/v1/devices/${mover.uuid}`);
    await ok('GET', '/api/v1/audit?limit=500');
    await ok('GET', '/api/v1/migrations?limit=500');
    await ok('GET', `/api/v1/devices/${mover.uuid}/shadows/device-state`);
    await ok('GET', '/api/v1/jobs');
    await new Promise((r) => setTimeout(r, 500)); // the last outbox deliveries and their log lines

    // ── the scan ──
    const places: Array<{ where: string; text: string; hashes: boolean }> = [{ where: 'the server log', text: lines.join(''), hashes: true }];
    assert.ok(lines.length > 100, `the log was captured (${lines.length} lines)`);
    for (const table of ['audit_log', 'device_shadows', 'broker_migrations', 'outbox', 'device_jobs', 'device_broker_credentials', 'mqtt_broker_config', 'api_tokens', 'devices']) {
      const { rows } = await env.sy.db.query(`SELECT * FROM ${table}`);
      // Hashes are what registry tables store on purpose (devices.token_hash, api_tokens, credential rows).
      places.push({ where: `table ${table}`, text: JSON.stringify(rows), hashes: false });
    }
    for (const a of answers) places.push({ where: `the answer of ${a.where}`, text: a.body, hashes: true });
    assert.ok(secrets.length >= 14, `${secrets.length} secrets`);
    const hits: string[] = [];
    for (const { label, value } of secrets) {
      for (const p of places) {
        if (p.text.includes(value)) hits.push(`${label} in ${p.where}`);
        else if (p.hashes && p.text.includes(sha256(value))) hits.push(`the sha256 of ${label} in ${p.where}`);
      }
    }
    if (process.env.SWITCHYARD_SCAN_LOG) await writeFile(process.env.SWITCHYARD_SCAN_LOG, lines.join(''));
    assert.deepEqual(hits, [], `${hits.length} secret(s) found`);
    // The scan is not blind: each token created over the API is found in the one answer that created it.
    const created = secrets.filter((s) => /token/.test(s.label) && s.label !== 'the admin token');
    assert.equal(created.filter((s) => creations.some((c) => c.includes(s.value))).length, created.length, 'every created token shows in its creation answer');
    process.stderr.write(`# secret-scan: ${secrets.length} secrets, ${lines.length} log lines, ${answers.length} HTTP answers and 9 tables scanned\n`);
  });
});
