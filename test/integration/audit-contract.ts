/**
 * The audit log on a whole server: refused and failed mutating requests (without bodies), device-driven migration
 * steps, command acks and job status changes (actor `device:<uuid>`), timers (actor `system`), and
 * `GET /api/v1/audit` with its filters and paging. Run against PGlite + Aedes and PostgreSQL + Mosquitto.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hashToken } from '../../packages/server/src/auth/tokens.ts';
import { startTestSwitchyard, uniqueId, type DeviceClient, type TestEnv } from '../helpers/switchyard.ts';
import { waitFor } from '../helpers/wait.ts';

export function auditContract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`audit log (${kind})`, { skip, timeout: 120_000 }, () => {
    let env: TestEnv;
    const secrets: string[] = [];
    before(async () => {
      env = await startTestSwitchyard(kind, { env: { SWITCHYARD_MIGRATION_TIMEOUT_S: '3', SWITCHYARD_MIGRATION_SWEEP_MS: '200' } });
    });
    after(async () => {
      await env?.stop();
    });

    const audit = async (query: string): Promise<{ items: any[]; total: number }> => {
      const res = await env.api('GET', `/api/v1/audit?${query}`);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      return res.body;
    };
    const waitForRow = (query: string, what: string): Promise<any> =>
      waitFor(async () => (await audit(query)).items[0], { timeoutMs: 8000, message: what });

    async function createToken(scope: string): Promise<{ id: number; token: string; actor: string }> {
      const name = uniqueId(scope);
      const res = await env.api('POST', '/api/v1/tokens', { name, scope });
      assert.equal(res.status, 201);
      secrets.push(res.body.token);
      return { id: res.body.id, token: res.body.token, actor: `token:${res.body.id}:${name}` };
    }

    async function device(): Promise<{ uuid: string; token: string }> {
      const d = await env.createDevice({ brokerIndex: 0 });
      secrets.push(d.token);
      return d;
    }

    it('records refused and failed mutating requests with actor, route and code, never the body', async () => {
      const viewer = await createToken('viewer');
      const broker = env.brokers[0]!;
      const secret = `pw-${uniqueId('secret')}`;
      const anon = await env.api('POST', '/api/v1/brokers', { name: 'x', protocol: 'mqtt', host: 'h', port: 1, password: secret }, { token: null });
      assert.equal(anon.status, 401);
      const refused = await env.api('PATCH', `/api/v1/brokers/${broker.id}`, { password: secret }, { token: viewer.token });
      assert.equal(refused.status, 403);
      const invalid = await env.api('POST', '/api/v1/brokers', { name: uniqueId('b'), protocol: 'mqtt', host: 'h', port: 70000, password: secret });
      assert.equal(invalid.status, 400);
      const hostile = await env.api('PUT', '/api/v1/devices/..%2F%2B%23/broker', { brokerId: broker.id });
      assert.equal(hostile.status, 400);
      assert.equal((await env.api('GET', '/api/v1/tokens', undefined, { token: viewer.token })).status, 403, 'a refused read');

      const mine = await audit(`actor=${encodeURIComponent(viewer.actor)}`);
      assert.equal(mine.total, 1, 'one row: the refused PATCH (reads are not audited)');
      const row = mine.items[0];
      assert.deepEqual(
        { action: row.action, targetType: row.targetType, targetId: row.targetId, outcome: row.outcome, details: row.details },
        { action: 'request.refused', targetType: 'broker', targetId: String(broker.id), outcome: 'error', details: { method: 'PATCH', route: '/api/v1/brokers/:id', status: 403, code: 'FORBIDDEN' } },
      );
      const anonRow = (await audit('actor=anonymous&action=request.refused')).items.find((r) => r.details.route === '/api/v1/brokers');
      assert.deepEqual(anonRow.details, { method: 'POST', route: '/api/v1/brokers', status: 401, code: 'UNAUTHORIZED' });
      const adminRows = await audit('actor=admin&outcome=error&limit=10');
      assert.ok(adminRows.items.some((r) => r.details.code === 'VALIDATION_FAILED' && r.details.route === '/api/v1/brokers'));
      const hostileRow = adminRows.items.find((r) => r.details.route === '/api/v1/devices/:uuid/broker');
      assert.equal(hostileRow.targetId, null, 'a hostile path parameter is not copied into the row');
      const all = JSON.stringify((await audit('limit=500')).items);
      assert.ok(!all.includes(secret), 'a request body reached the audit log');
    });

    it('audits the device-driven steps of a move and its command acks, with the device as actor', async () => {
      const [a, b] = env.brokers;
      const d = await device();
      const client: DeviceClient = await env.connectDevice(d, 0);
      const base = `iot/device/${d.uuid}`;
      await client.subscribe([`${base}/command/#`, `${base}/shadow/name/device-state/#`]);
      await client.publish(`${base}/status`, { state: 'online', brokerId: a!.id, at: new Date().toISOString() });
      await waitFor(async () => (await env.api('GET', `/api/v1/devices/${d.uuid}`)).body.online === true, { message: 'online' });

      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: b!.id, channel: 'command' });
      assert.equal(res.status, 200);
      const migrationId = res.body.migration.id;
      const command = await client.waitFor((m) => m.topic === `${base}/command/broker-change`);
      await client.publish(`${base}/command/broker-change/ack`, { commandId: command.payload.commandId, status: 'received' });
      const ack = await waitForRow(`actor=device:${d.uuid}&action=migration.command_ack`, 'command ack row');
      assert.ok(['pending', 'notified'].includes(ack.details.status), ack.details.status); // the outbox's step may land first
      assert.deepEqual(ack.details, { migrationId, toBrokerId: b!.id, status: ack.details.status, attempts: 0, commandId: command.payload.commandId, ack: 'received', viaBrokerId: a!.id });
      assert.equal(ack.targetId, d.uuid);

      const report = (c: DeviceClient, mqtt: Record<string, unknown>) => c.request(`${base}/shadow/name/device-state`, 'update', { state: { reported: { mqtt } } });
      await report(client, { status: 'error', brokerId: a!.id, targetBrokerId: b!.id, error: 'connection refused' });
      await report(client, { status: 'migrating', brokerId: a!.id, targetBrokerId: b!.id });
      const onB = await env.connectDevice(d, 1);
      await onB.subscribe([`${base}/shadow/name/device-state/#`]);
      await report(onB, { status: 'connected', brokerId: b!.id, previousBrokerId: a!.id });
      await waitFor(async () => (await env.api('GET', `/api/v1/migrations/${migrationId}`)).body.status === 'completed', { message: 'completed' });

      const steps = (await audit(`actor=device:${d.uuid}&action=migration.*`)).items.reverse();
      assert.deepEqual(steps.map((r) => r.action), ['migration.command_ack', 'migration.attempt_failed', 'migration.completed']);
      // `migrating` after an error report leaves the status as it was (already migrating): no row of its own.
      assert.deepEqual(steps[1].details, { migrationId, toBrokerId: b!.id, status: 'migrating', attempts: 1, error: 'connection refused', viaBrokerId: a!.id });
      assert.deepEqual(steps[2].details, { migrationId, toBrokerId: b!.id, status: 'completed', attempts: 1, viaBrokerId: b!.id });
      assert.equal(steps[2].targetId, d.uuid);
      // The assignment itself was the admin's.
      assert.equal((await audit(`targetId=${d.uuid}&action=device.assign_broker`)).items[0].actor, 'admin');
    });

    it('audits a move that runs out of time as the system', async () => {
      const d = await device();
      const res = await env.api('PUT', `/api/v1/devices/${d.uuid}/broker`, { brokerId: env.brokers[1]!.id, channel: 'poll' });
      assert.equal(res.status, 200);
      const row = await waitForRow(`targetId=${d.uuid}&action=migration.timed_out`, 'timed_out row');
      assert.equal(row.actor, 'system');
      assert.equal(row.details.migrationId, res.body.migration.id);
      assert.equal(row.details.status, 'timed_out');
    });

    it('audits job status changes made by the device and by the timers, not its progress reports', async () => {
      const d = await device();
      const asDevice = (m: string, p: string, body?: unknown) => env.api(m, `/api/v1/devices/${d.uuid}${p}`, body, { token: d.token });
      const first = await env.api('POST', `/api/v1/devices/${d.uuid}/jobs`, { jobType: 'update', jobData: {} });
      const second = await env.api('POST', `/api/v1/devices/${d.uuid}/jobs`, { jobType: 'reboot', jobData: {}, inProgressTimeoutSeconds: 1 });
      assert.equal(first.status, 201);
      assert.equal((await asDevice('PUT', '/jobs/$next', {})).status, 200);
      assert.equal((await asDevice('POST', `/jobs/${first.body.jobId}`, { status: 'IN_PROGRESS', statusDetails: { progress: '50' } })).status, 200);
      assert.equal((await asDevice('POST', `/jobs/${first.body.jobId}`, { status: 'SUCCEEDED' })).status, 200);
      assert.equal((await asDevice('PUT', '/jobs/$next', {})).status, 200);
      const timedOut = await waitForRow(`targetId=${d.uuid}&action=job.timed_out`, 'job.timed_out row');
      assert.equal(timedOut.actor, 'system');
      assert.deepEqual(timedOut.details, { jobId: second.body.jobId, jobType: 'reboot', from: 'IN_PROGRESS', to: 'TIMED_OUT', versionNumber: timedOut.details.versionNumber });

      const moves = (await audit(`actor=device:${d.uuid}&action=job.update`)).items.reverse().map((r) => `${r.details.jobId === first.body.jobId ? 1 : 2}:${r.details.from}>${r.details.to}`);
      assert.deepEqual(moves, ['1:QUEUED>IN_PROGRESS', '1:IN_PROGRESS>SUCCEEDED', '2:QUEUED>IN_PROGRESS']);
    });

    it('filters by actor, action, target, outcome and time, and pages newest first', async () => {
      const op = await createToken('operator');
      const made: number[] = [];
      for (let i = 0; i < 5; i++) made.push((await createToken('viewer')).id);
      const full = await audit('action=token.create&limit=500');
      assert.ok(full.total >= 6 && full.items.length === full.total);
      const ids = full.items.map((r) => r.id);
      assert.deepEqual(ids, [...ids].sort((x, y) => y - x), 'newest first');

      const one = await audit(`action=token.create&targetType=token&targetId=${made[2]}`);
      assert.equal(one.total, 1);
      assert.equal(one.items[0].actor, 'admin');
      assert.equal(one.items[0].details.scope, 'viewer');

      const p1 = await audit('action=token.create&limit=2&offset=0');
      const p2 = await audit('action=token.create&limit=2&offset=2');
      assert.deepEqual([...p1.items, ...p2.items].map((r) => r.id), ids.slice(0, 4));
      assert.equal(p1.total, full.total);
      const after = await audit(`action=token.create&limit=2&beforeId=${p1.items[1].id}`);
      assert.deepEqual(after.items.map((r) => r.id), ids.slice(2, 4));

      const job = await env.api('POST', `/api/v1/devices/${(await device()).uuid}/jobs`, { jobType: 'x', jobData: {} }, { token: op.token });
      assert.equal(job.status, 201);
      const byPrefix = await audit(`actor=${encodeURIComponent(`token:${op.id}:`)}*`);
      assert.deepEqual(byPrefix.items.map((r) => r.action), ['job.create']);
      for (const outcome of ['ok', 'error']) assert.ok((await audit(`outcome=${outcome}&limit=500`)).items.every((r) => r.outcome === outcome));
      assert.ok((await audit('action=token.*&limit=500')).items.every((r) => r.action.startsWith('token.')));
      assert.equal((await audit('action=%25*')).total, 0, 'a % is a character, not a wildcard');
      assert.equal((await audit('actor=_dmin')).total, 0, 'an _ is a character, not a wildcard');

      const oldest = full.items.find((r) => r.targetId === String(made[0]));
      const since = await audit(`action=token.create&since=${encodeURIComponent(oldest.at)}&limit=500`);
      assert.ok(made.every((id) => since.items.some((r) => r.targetId === String(id))));
      const until = await audit(`action=token.create&until=${encodeURIComponent(oldest.at)}&limit=500`);
      assert.ok(!until.items.some((r) => made.includes(Number(r.targetId))), 'until is exclusive');
    });

    it('refuses bad filters with a specific 400', async () => {
      const bad: Array<[string, RegExp]> = [
        ['outcome=maybe', /outcome/],
        ['since=yesterday', /since/],
        ['until=2024-06-30T23:59:60Z', /until/],
        ['since=2030-01-01T00:00:00Z&until=2020-01-01T00:00:00Z', /since/],
        ['limit=0', /limit/],
        ['limit=501', /limit/],
        ['beforeId=0', /beforeId/],
        ['actor=a%00b', /actor/],
        ['targetType=Broker', /targetType/],
        ['password=x', /password/],
      ];
      for (const [q, field] of bad) {
        const res = await env.api('GET', `/api/v1/audit?${q}`);
        assert.equal(res.status, 400, `${q}: ${res.status} ${JSON.stringify(res.body)}`);
        assert.equal(res.body.code, 'VALIDATION_FAILED');
        assert.match(res.body.message, field);
      }
    });

    it('holds no token, token hash or request body in any row', async () => {
      const { rows } = await env.sy.db.query<{ row: string }>('SELECT row_to_json(a)::text AS row FROM audit_log a');
      const text = rows.map((r) => r.row).join('\n');
      assert.ok(rows.length > 20);
      for (const s of [...secrets, env.adminToken]) {
        assert.ok(!text.includes(s), 'a token in the audit log');
        assert.ok(!text.includes(hashToken(s)), 'a token hash in the audit log');
      }
    });
  });
}
