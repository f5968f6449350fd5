/**
 * API tokens and scopes, on a whole server: create / list / revoke (the secret only in the create answer), a
 * revoked token refused on its very next request (on another instance too, on PostgreSQL), and the scope of every
 * route — found by walking the served `/openapi.json`, so that no route is forgotten: a viewer gets 403 on every
 * mutating route and passes every read; an operator gets 403 on every admin route and passes assign, jobs and
 * shadows. Run against PGlite + Aedes and PostgreSQL + Mosquitto.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Command } from 'commander';
import { hashToken } from '../../packages/server/src/auth/tokens.ts';
import { CliError } from '../../packages/server/src/cli/admin-client.ts';
import { registerAuditCommand, registerTokenCommands } from '../../packages/server/src/cli/tokens-command.ts';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../helpers/switchyard.ts';

const MUTATING = ['put', 'post', 'patch', 'delete'] as const;

interface Op {
  method: string;
  path: string;
  scope: string | undefined;
}

/** Every `/api/v1` operation of the served OpenAPI document with its declared scope. */
async function operations(env: TestEnv): Promise<Op[]> {
  const res = await env.api('GET', '/openapi.json', undefined, { token: null });
  assert.equal(res.status, 200);
  const ops: Op[] = [];
  for (const [path, item] of Object.entries(res.body.paths as Record<string, Record<string, any>>)) {
    if (!path.startsWith('/api/v1/')) continue;
    for (const method of ['get', 'put', 'post', 'patch', 'delete']) {
      const op = item[method];
      if (op) ops.push({ method, path, scope: op['x-switchyard-scope'] });
    }
  }
  return ops;
}

/** A status only (the body of `/events` never ends): the request is aborted once the headers are in. */
async function statusOf(env: TestEnv, method: string, url: string, token: string, body?: unknown): Promise<{ status: number; body: any }> {
  const ctrl = new AbortController();
  const headers: Record<string, string> = { authorization: `Bearer ${token}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${env.url}${url}`, { method: method.toUpperCase(), headers, signal: ctrl.signal, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
  let parsed: any = null;
  if ((res.headers.get('content-type') ?? '').startsWith('application/json')) parsed = await res.json();
  ctrl.abort();
  return { status: res.status, body: parsed };
}

export function tokensContract(kind: 'embedded' | 'postgres', skip: string | false): void {
  describe(`API tokens and scopes (${kind})`, { skip, timeout: 120_000 }, () => {
    let env: TestEnv;
    /** Every token created here: none may appear anywhere but in its create answer. */
    const secrets: string[] = [];

    before(async () => {
      env = await startTestSwitchyard(kind);
    });
    after(async () => {
      await env?.stop();
    });

    async function createToken(scope: 'admin' | 'operator' | 'viewer', name = uniqueId(scope)): Promise<{ id: number; token: string; name: string; actor: string }> {
      const res = await env.api('POST', '/api/v1/tokens', { name, scope });
      assert.equal(res.status, 201, JSON.stringify(res.body));
      secrets.push(res.body.token);
      return { id: res.body.id, token: res.body.token, name, actor: `token:${res.body.id}:${name}` };
    }

    /** Fills OpenAPI path parameters with plausible values of existing things. */
    const fill = (path: string, uuid: string): string =>
      path.replace('{uuid}', uuid).replace('{id}', String(env.brokers[0]!.id)).replace('{jobId}', 'job-0123').replace('{name}', 'probe');

    it('creates, lists and revokes tokens; the token itself is only in the create answer', async () => {
      const name = uniqueId('ci bot');
      const created = await env.api('POST', '/api/v1/tokens', { name, scope: 'operator' });
      assert.equal(created.status, 201, JSON.stringify(created.body));
      secrets.push(created.body.token);
      assert.deepEqual(Object.keys(created.body).sort(), ['createdAt', 'createdBy', 'id', 'name', 'scope', 'token']);
      assert.match(created.body.token, /^syo_[A-Za-z0-9_-]{43}$/);
      assert.equal(created.body.scope, 'operator');
      assert.equal(created.body.createdBy, 'admin');
      assert.equal(created.headers.get('cache-control'), 'no-store');
      assert.equal(created.headers.get('location'), `/api/v1/tokens/${created.body.id}`);
      assert.match((await createToken('viewer')).token, /^syv_/);
      assert.match((await createToken('admin')).token, /^sya_/);

      const id = created.body.id as number;
      const list = await env.api('GET', '/api/v1/tokens');
      assert.equal(list.status, 200);
      assert.equal(list.body.total, list.body.items.length);
      const listed = list.body.items.find((t: any) => t.id === id);
      assert.deepEqual(listed, { id, name, scope: 'operator', createdAt: created.body.createdAt, createdBy: 'admin', lastUsedAt: null, revokedAt: null, revokedBy: null });
      const one = await env.api('GET', `/api/v1/tokens/${id}`);
      assert.deepEqual(one.body, listed);

      // It works, and its use is recorded.
      assert.equal((await env.api('GET', '/api/v1/devices', undefined, { token: created.body.token })).status, 200);
      assert.ok((await env.api('GET', `/api/v1/tokens/${id}`)).body.lastUsedAt);

      const revoked = await env.api('DELETE', `/api/v1/tokens/${id}`);
      assert.equal(revoked.status, 204);
      assert.equal((await env.api('GET', '/api/v1/tokens')).body.items.some((t: any) => t.id === id), false, 'revoked tokens are not listed by default');
      const all = await env.api('GET', '/api/v1/tokens?includeRevoked=true');
      const gone = all.body.items.find((t: any) => t.id === id);
      assert.ok(gone.revokedAt);
      assert.equal(gone.revokedBy, 'admin');
      assert.equal((await env.api('DELETE', `/api/v1/tokens/${id}`)).status, 204, 'revoking twice changes nothing');
      assert.equal((await env.api('GET', `/api/v1/tokens/${id}`)).body.revokedAt, gone.revokedAt);

      const missing = await env.api('DELETE', '/api/v1/tokens/2000000000');
      assert.equal(missing.status, 404);
      assert.equal(missing.body.code, 'TOKEN_NOT_FOUND');

      // Neither the token nor its hash in any answer.
      for (const text of [JSON.stringify(list.body), JSON.stringify(all.body), JSON.stringify(one.body)]) {
        for (const s of secrets) {
          assert.ok(!text.includes(s), 'a token in a list answer');
          assert.ok(!text.includes(hashToken(s)), 'a token hash in a list answer');
        }
      }
    });

    it('refuses bad token requests with a specific 400 and creates nothing', async () => {
      const before = (await env.api('GET', '/api/v1/tokens?includeRevoked=true&limit=500')).body.total;
      const cases: Array<[unknown, RegExp]> = [
        [{ scope: 'viewer' }, /name/],
        [{ name: 'x' }, /scope/],
        [{ name: 'x', scope: 'root' }, /scope/],
        [{ name: ' padded', scope: 'viewer' }, /name/],
        [{ name: 'bell\u0007', scope: 'viewer' }, /name/],
        [{ name: 'x'.repeat(101), scope: 'viewer' }, /name/],
        [{ name: 'x', scope: 'viewer', token: 'sya_mine' }, /token/],
      ];
      for (const [body, field] of cases) {
        const res = await env.api('POST', '/api/v1/tokens', body);
        assert.equal(res.status, 400, JSON.stringify(body));
        assert.equal(res.body.code, 'VALIDATION_FAILED');
        assert.match(res.body.message, field);
      }
      assert.equal((await env.api('DELETE', '/api/v1/tokens/abc')).status, 400);
      assert.equal((await env.api('GET', '/api/v1/tokens?limit=0')).status, 400);
      assert.equal((await env.api('GET', '/api/v1/tokens?includeRevoked=true&limit=500')).body.total, before);
    });

    it('answers 401 to a revoked operator token on its very next request', async () => {
      const op = await createToken('operator');
      assert.equal((await env.api('GET', '/api/v1/brokers', undefined, { token: op.token })).status, 200);
      assert.equal((await env.api('DELETE', `/api/v1/tokens/${op.id}`)).status, 204);
      const res = await env.api('GET', '/api/v1/brokers', undefined, { token: op.token });
      assert.equal(res.status, 401);
      assert.equal(res.body.code, 'UNAUTHORIZED');
      assert.match(res.headers.get('www-authenticate') ?? '', /invalid_token/);
    });

    it('ends the event stream a token opened when the token is revoked, and only that one', async () => {
      const viewer = await createToken('viewer');
      const other = await createToken('viewer');
      const open = async (token: string) => {
        const res = await fetch(`${env.url}/api/v1/events`, { headers: { authorization: `Bearer ${token}` } });
        assert.equal(res.status, 200);
        const reader = res.body!.getReader();
        let text = '';
        const ended = (async () => {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return text;
            text += Buffer.from(value).toString('utf8');
          }
        })();
        return { ended, text: () => text, cancel: () => reader.cancel() };
      };
      const revokedStream = await open(viewer.token);
      const keptStream = await open(other.token);
      assert.equal((await env.api('DELETE', `/api/v1/tokens/${viewer.id}`)).status, 204);
      const text = await Promise.race([revokedStream.ended, new Promise<string>((_, reject) => setTimeout(() => reject(new Error('the stream did not end within 5 s')), 5000))]);
      assert.match(text, /event: closed\ndata: \{"reason":"token revoked"\}/);
      await new Promise((r) => setTimeout(r, 200));
      assert.doesNotMatch(keptStream.text(), /event: closed/, 'the other token\'s stream stays open');
      await keptStream.cancel();
    });

    it('answers 401 on another instance too, as soon as the revocation committed', { skip: kind !== 'postgres' && 'one process on PGlite' }, async () => {
      const other = await env.startInstance();
      const op = await createToken('operator');
      const there = (token: string) => fetch(`${other.url}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal((await there(op.token)).status, 200);
      assert.equal((await env.api('DELETE', `/api/v1/tokens/${op.id}`)).status, 204);
      assert.equal((await there(op.token)).status, 401);
      await other.stop();
    });

    it('gives a viewer 403 on every mutating route of the OpenAPI document, before anything else, and lets it read', async () => {
      const ops = await operations(env);
      const viewer = await createToken('viewer');
      const device = await env.createDevice();
      for (const op of ops) assert.ok(['viewer', 'operator', 'admin'].includes(op.scope!), `${op.method} ${op.path} has no x-switchyard-scope`);
      const mutating = ops.filter((o) => (MUTATING as readonly string[]).includes(o.method));
      assert.ok(mutating.length >= 12, `only ${mutating.length} mutating routes found`);
      for (const op of mutating) {
        // An empty object would fail validation (400) if anything but the scope check ran first.
        const res = await statusOf(env, op.method, fill(op.path, device.uuid), viewer.token, {});
        assert.equal(res.status, 403, `${op.method} ${op.path} answered ${res.status} to a viewer`);
        assert.equal(res.body.code, 'FORBIDDEN');
        assert.equal(res.body.tokenScope, 'viewer');
        assert.equal(res.body.requiredScope, op.scope);
      }
      // Nothing changed: the device and the brokers are there as they were.
      assert.equal((await env.api('GET', `/api/v1/devices/${device.uuid}`)).status, 200);
      assert.equal((await env.api('GET', '/api/v1/brokers')).body.total, env.brokers.length);

      const reads = ops.filter((o) => o.method === 'get');
      for (const op of reads) {
        const res = await statusOf(env, 'get', fill(op.path, device.uuid), viewer.token);
        if (op.scope === 'viewer') assert.notEqual(res.status, 403, `GET ${op.path} refused a viewer`);
        else assert.equal(res.status, 403, `GET ${op.path} (scope ${op.scope}) let a viewer in`);
        assert.notEqual(res.status, 401);
      }
      assert.equal((await statusOf(env, 'get', '/api/v1/devices', viewer.token)).status, 200);
      assert.equal((await statusOf(env, 'get', '/api/v1/events', viewer.token)).status, 200);
      assert.equal((await statusOf(env, 'get', '/api/v1/audit', viewer.token)).status, 403, 'the audit log is admin-only');
      assert.equal((await statusOf(env, 'get', '/api/v1/tokens', viewer.token)).status, 403);
    });

    it('gives an operator 403 on every admin route and lets it assign, run jobs and write shadows', async () => {
      const ops = await operations(env);
      const op = await createToken('operator');
      const device = await env.createDevice({ brokerIndex: 0 });
      const adminOnly = ops.filter((o) => o.scope === 'admin');
      for (const path of ['/api/v1/brokers', '/api/v1/tokens', '/api/v1/devices']) {
        assert.ok(adminOnly.some((o) => o.method === 'post' && o.path === path), `POST ${path} is not admin-only`);
      }
      for (const o of adminOnly) {
        const res = await statusOf(env, o.method, fill(o.path, device.uuid), op.token, o.method === 'get' ? undefined : {});
        assert.equal(res.status, 403, `${o.method} ${o.path} answered ${res.status} to an operator`);
      }
      for (const o of ops.filter((x) => x.scope === 'operator')) {
        const res = await statusOf(env, o.method, fill(o.path, device.uuid), op.token, {});
        assert.notEqual(res.status, 403, `${o.method} ${o.path} refused an operator`);
      }

      const call = (method: string, path: string, body?: unknown) => env.api(method, path, body, { token: op.token });
      const assigned = await call('PUT', `/api/v1/devices/${device.uuid}/broker`, { brokerId: env.brokers[1]!.id });
      assert.equal(assigned.status, 200, JSON.stringify(assigned.body));
      const migration = await env.api('GET', `/api/v1/migrations/${assigned.body.migration.id}`);
      assert.equal(migration.body.requestedBy, op.actor);
      const job = await call('POST', `/api/v1/devices/${device.uuid}/jobs`, { jobType: 'reboot', jobData: {} });
      assert.equal(job.status, 201, JSON.stringify(job.body));
      assert.equal((await call('POST', `/api/v1/jobs/${job.body.jobId}/cancel`, {})).status, 200);
      assert.equal((await call('POST', `/api/v1/devices/${device.uuid}/shadows/settings`, { state: { desired: { led: 'on' } } })).status, 200);
      assert.equal((await call('GET', `/api/v1/devices/${device.uuid}/shadows/settings`)).body.state.desired.led, 'on');
      assert.equal((await call('DELETE', `/api/v1/devices/${device.uuid}/shadows/settings`)).status, 200);

      // Each change is in the audit log under the operator's token.
      const audit = await env.api('GET', `/api/v1/audit?actor=${encodeURIComponent(op.actor)}&limit=500`);
      assert.equal(audit.status, 200);
      const actions = audit.body.items.map((r: any) => r.action).sort();
      for (const a of ['device.assign_broker', 'job.create', 'job.cancel', 'shadow.update', 'shadow.delete']) assert.ok(actions.includes(a), `no ${a} row: ${actions.join(', ')}`);
      const shadowRow = audit.body.items.find((r: any) => r.action === 'shadow.update');
      assert.deepEqual({ t: shadowRow.targetType, id: shadowRow.targetId, o: shadowRow.outcome, n: shadowRow.details.shadowName }, { t: 'device', id: device.uuid, o: 'ok', n: 'settings' });
    });

    it('keeps device tokens to their own routes, whatever the scopes', async () => {
      const d = await env.createDevice();
      secrets.push(d.token);
      const mine = (m: string, p: string, body?: unknown) => env.api(m, p, body, { token: d.token });
      assert.equal((await mine('GET', `/api/v1/devices/${d.uuid}/config`)).status, 200);
      assert.equal((await mine('POST', `/api/v1/devices/${d.uuid}/shadow`, { state: { reported: { t: 1 } } })).status, 200);
      assert.equal((await mine('GET', '/api/v1/tokens')).status, 403);
      assert.equal((await mine('POST', '/api/v1/tokens', { name: 'x', scope: 'admin' })).status, 403);
      assert.equal((await mine('GET', '/api/v1/audit')).status, 403);
      // A device's own shadow writes are not audited (docs/operations.md): no shadow.update row for it.
      const rows = await env.api('GET', `/api/v1/audit?targetId=${d.uuid}&action=shadow.*`);
      assert.equal(rows.body.total, 0);
    });

    it('drives tokens and the audit log from the CLI', { skip: kind !== 'embedded' && 'the CLI only speaks HTTP: once is enough' }, async () => {
      const out: string[] = [];
      const run = async (args: string[]): Promise<string[]> => {
        out.length = 0;
        const p = new Command().exitOverride();
        const withClient = (cmd: Command): Command => cmd.option('--api-url <url>').option('--token <token>');
        registerTokenCommands(p, withClient, (l) => out.push(l));
        registerAuditCommand(p, withClient, (l) => out.push(l));
        await p.parseAsync(['node', 'switchyard', ...args, '--api-url', env.url, '--token', env.adminToken]);
        return [...out];
      };
      const created = JSON.parse((await run(['tokens', 'create', '--name', 'cli bot', '--scope', 'operator', '--json']))[0]!);
      secrets.push(created.token);
      assert.equal(created.scope, 'operator');
      const shown = await run(['tokens', 'create', '--name', 'cli viewer', '--scope', 'viewer']);
      const viewerToken = shown[1]!;
      secrets.push(viewerToken);
      assert.match(viewerToken, /^syv_/);
      assert.match(shown.join('\n'), /shown only now/);

      const listed = (await run(['tokens', 'list'])).join('\n');
      assert.match(listed, /cli bot/);
      assert.ok(!listed.includes(created.token) && !listed.includes(viewerToken), 'a token in the list output');
      assert.deepEqual(await run(['tokens', 'revoke', String(created.id)]), [`token ${created.id} revoked`]);
      assert.equal((await env.api('GET', '/api/v1/devices', undefined, { token: created.token })).status, 401);
      assert.match((await run(['tokens', 'list', '--all'])).join('\n'), /REVOKEDAT/);

      const rows = JSON.parse((await run(['audit', '--action', 'token.*', '--target-id', String(created.id), '--since', '1h', '--json']))[0]!);
      assert.deepEqual(rows.items.map((r: any) => r.action), ['token.revoke', 'token.create']);
      const table = (await run(['audit', '--actor', 'admin', '--outcome', 'ok', '--limit', '3'])).join('\n').split('\n');
      assert.match(table[0]!, /^ID +AT +ACTOR +ACTION/);
      assert.equal(table.length, 5, 'header, 3 rows, count');
      assert.match(table[4]!, /^3 of \d+$/);
      await assert.rejects(run(['tokens', 'revoke', '2000000000']), (err: unknown) => err instanceof CliError && err.exitCode === 1 && /TOKEN_NOT_FOUND/.test(err.message));
    });

    it('never lets a token or its hash reach the audit log or a list answer', async () => {
      const { rows } = await env.sy.db.query<{ row: string }>('SELECT row_to_json(a)::text AS row FROM audit_log a');
      const text = rows.map((r) => r.row).join('\n');
      assert.ok(text.includes('token.create') && text.includes('token.revoke'));
      const tokens = JSON.stringify((await env.api('GET', '/api/v1/tokens?includeRevoked=true&limit=500')).body);
      for (const s of [...secrets, env.adminToken]) {
        for (const needle of [s, hashToken(s)]) {
          assert.ok(!text.includes(needle), 'a token or token hash in the audit log');
          assert.ok(!tokens.includes(needle), 'a token or token hash in GET /tokens');
        }
      }
    });
  });
}
