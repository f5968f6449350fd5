/**
 * Issue 5: the HTTP API under hostile input (PostgreSQL + Mosquitto).
 *
 * Every operation of the served `/openapi.json` gets generated requests (test/helpers/http-fuzz-cases.ts): hostile
 * path parameters (`../`, `+`, `#`, `$`, NUL, overlong, lone surrogates, invalid percent-escapes, raw non-UTF-8
 * bytes), fuzzed query strings and headers, admin / operator / viewer / device / missing / bogus tokens, and bodies
 * of the wrong type or shape, with unknown and prototype keys, not JSON, not UTF-8, huge or deeply nested. Then
 * requests malformed below the routes (request line, headers, framing) are written byte for byte.
 *
 * Every answer must be a 2xx (where the request may be valid) or a catalogued 4xx `{error, message, code}`, never
 * a 5xx; the cases that must be refused (no token, a viewer mutating, the fuzz device reaching for another device
 * or an admin route, a malformed body) must be. Afterwards the server answers /healthz, Object.prototype is clean,
 * and a sentinel device — never named by an admin request — has the same device row, shadows, migrations, jobs and
 * broker credentials, byte for byte.
 *
 * Reproduce with the seed it prints: `SWITCHYARD_FUZZ_SEED=<n> npm test -- test/integration/http-fuzz.test.ts`.
 */
import assert from 'node:assert/strict';
import { STATUS_CODES } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { ERROR_CATALOGUE } from '../../packages/server/src/errors.ts';
import { httpFuzzCases, operationsOf, hostIsSafe, type FuzzCase, type FuzzContext } from '../helpers/http-fuzz-cases.ts';
import { protocolFuzzCases } from '../helpers/http-fuzz-protocol.ts';
import { createHttpClient, nodeCanSend, rawRequestBytes, type HttpAnswer } from '../helpers/raw-http.ts';
import { realServers } from '../helpers/real.ts';
import { startTestSwitchyard, uniqueId, type TestEnv } from '../helpers/switchyard.ts';

const SEED = Number(process.env.SWITCHYARD_FUZZ_SEED ?? 20_250_105);
const { skip } = realServers(['postgres', 'mosquitto']);

/** Problems with one answer, or [] when it is acceptable for the case. */
export function judge(c: FuzzCase, a: HttpAnswer): string[] {
  const where = `${c.call.method} ${c.call.path.slice(0, 120)} (${c.family}, ${c.route})`;
  if (a.status <= 0) return [`${where}: no answer (${a.failure})`];
  const problems: string[] = [];
  const isHead = c.call.method === 'HEAD' && !c.raw;
  if (a.status >= 500) {
    const notReady = c.route === 'GET /readyz' && a.status === 503;
    if (!notReady) problems.push(`${where}: ${a.status} ${a.body.toString('utf8').slice(0, 200)}`);
    return problems;
  }
  if (a.status < 400) {
    if (c.reject.length > 0) problems.push(`${where}: ${a.status} although it must be refused (${c.reject.join('; ')})`);
    if (a.status >= 300 && !(a.status === 304 && c.route.endsWith('/config'))) problems.push(`${where}: unexpected ${a.status}`);
    return problems;
  }
  if (isHead) return problems;
  let body: Record<string, unknown>;
  try {
    body = JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return [`${where}: ${a.status} with a body that is not JSON: ${JSON.stringify(a.body.toString('latin1').slice(0, 120))}`];
  }
  const code = body.code as keyof typeof ERROR_CATALOGUE;
  if (typeof code !== 'string' || !(code in ERROR_CATALOGUE)) problems.push(`${where}: ${a.status} with uncatalogued code ${JSON.stringify(body.code)}`);
  else if (ERROR_CATALOGUE[code].status !== a.status) problems.push(`${where}: ${a.status} with code ${code}, catalogued as ${ERROR_CATALOGUE[code].status}`);
  if (body.error !== STATUS_CODES[a.status]) problems.push(`${where}: error ${JSON.stringify(body.error)} is not the reason phrase of ${a.status}`);
  if (typeof body.message !== 'string' || body.message.length === 0) problems.push(`${where}: no message`);
  return problems;
}

/** Runs `work` over `items` with at most `concurrency` at once. */
export async function inBatches<T>(items: readonly T[], concurrency: number, work: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i]!, i);
      }
    }),
  );
}

/** The sentinel's rows in every table that holds a device's data, as text. */
async function sentinelRows(env: TestEnv, uuid: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const tables: Array<[string, string, string]> = [
    ['devices', 'uuid', 'uuid'],
    ['device_shadows', 'device_uuid', 'shadow_name'],
    ['broker_migrations', 'device_uuid', 'id'],
    ['device_jobs', 'device_uuid', 'job_id'],
    ['device_broker_credentials', 'device_uuid', 'broker_id'],
  ];
  for (const [table, key, order] of tables) {
    const exists = await env.sy.db.query<{ n: string }>(`SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = 'public' AND table_name = $1`, [table]);
    if (Number(exists.rows[0]!.n) === 0) continue;
    const { rows } = await env.sy.db.query<{ dump: string | null }>(`SELECT jsonb_agg(to_jsonb(t) ORDER BY t.${order})::text AS dump FROM ${table} t WHERE t.${key} = $1`, [uuid]);
    out[table] = rows[0]!.dump ?? '[]';
  }
  return out;
}

describe('HTTP API under hostile input (PostgreSQL + Mosquitto)', { skip, timeout: 600_000 }, () => {
  let env: TestEnv;
  before(async () => {
    env = await startTestSwitchyard('postgres', {
      brokers: 3,
      // Limits off (they would answer most of the fuzz 429; device-limits.test.ts covers them); no migration times out
      // while the suite runs (the sentinel's must not change).
      env: { SWITCHYARD_DEVICE_RATE_LIMIT: '0', SWITCHYARD_DEVICE_MAX_IN_FLIGHT: '0', SWITCHYARD_MIGRATION_TIMEOUT_S: '86400' },
    });
  });
  after(async () => {
    await env?.stop();
  });

  it('answers every generated request with a 2xx or a catalogued 4xx, stays up and leaves the sentinel unchanged', async () => {
    const started = Date.now();
    const [b1, b2, b3] = env.brokers.map((b) => b.id) as [number, number, number];
    const ok = async (method: string, path: string, body?: unknown): Promise<any> => {
      const res = await env.api(method, path, body);
      assert.ok(res.status >= 200 && res.status < 300, `${method} ${path}: ${res.status} ${JSON.stringify(res.body)}`);
      return res.body;
    };
    const token = async (scope: string): Promise<{ id: number; token: string }> => ok('POST', '/api/v1/tokens', { name: uniqueId(`fuzz-${scope}`), scope });
    const operator = await token('operator');
    const viewer = await token('viewer');
    const victimTokens = [await token('viewer'), await token('operator')];

    const sentinel = await env.createDevice({ uuid: uniqueId('sentinel') });
    const device = await env.createDevice({ uuid: uniqueId('fuzzdev') });
    const victims = [await env.createDevice({ uuid: uniqueId('victim') }), await env.createDevice({ uuid: uniqueId('victim') }), await env.createDevice({ uuid: uniqueId('victim') })];
    const jobsOf = async (uuid: string, n: number): Promise<string[]> => {
      const ids: string[] = [];
      for (let i = 0; i < n; i++) ids.push((await ok('POST', `/api/v1/devices/${uuid}/jobs`, { jobType: 'reboot', jobData: { i, note: 'seed' } })).jobId);
      return ids;
    };
    for (const d of [sentinel, device, ...victims]) {
      await ok('POST', `/api/v1/devices/${d.uuid}/shadows/config`, { state: { desired: { led: 'on', rate: 5 }, reported: { led: 'off' } } });
      await ok('POST', `/api/v1/devices/${d.uuid}/shadow`, { state: { reported: { fw: '1.0.0' } } });
    }
    const doomed: string[] = [];
    for (let i = 0; i < 6; i++) doomed.push((await env.createDevice({ uuid: uniqueId('doomed') })).uuid);
    const sentinelJobs = await jobsOf(sentinel.uuid, 2);
    const deviceJobs = await jobsOf(device.uuid, 3);
    const victimJobs = (await Promise.all(victims.map((v) => jobsOf(v.uuid, 2)))).flat();
    // The sentinel has a migration that stays open (channel poll: nothing to deliver; no timeout during the run).
    await ok('PUT', `/api/v1/devices/${sentinel.uuid}/broker`, { brokerId: b3, channel: 'poll' });
    await ok('PUT', `/api/v1/devices/${victims[0]!.uuid}/broker`, { brokerId: b2, channel: 'poll' });
    const migrationIds = ((await ok('GET', '/api/v1/migrations?limit=100')).items as Array<{ id: number }>).map((m) => m.id);
    env.sy.outbox.wake();
    await new Promise((r) => setTimeout(r, 300));
    const before = await sentinelRows(env, sentinel.uuid);

    const doc = await ok('GET', '/openapi.json');
    const ctx: FuzzContext = {
      tokens: { admin: env.adminToken, operator: operator.token, viewer: viewer.token, device: device.token },
      sentinel: { uuid: sentinel.uuid, jobIds: sentinelJobs },
      device: { uuid: device.uuid, jobIds: deviceJobs },
      victims: { uuids: victims.map((v) => v.uuid), jobIds: victimJobs, brokerIds: [b2], tokenIds: victimTokens.map((t) => t.id), doomed },
      readOnly: { migrationIds, brokerIds: [b1, b3], tokenIds: [operator.id, viewer.id] },
    };
    const operations = operationsOf(doc);
    const perOperation = Math.ceil(11_000 / operations.length);
    const cases = [...httpFuzzCases(doc, ctx, perOperation, SEED), ...protocolFuzzCases(ctx, 900, SEED + 7)];
    assert.ok(cases.length >= 10_000, `at least 10,000 cases (${cases.length})`);
    for (const c of cases) {
      if (!c.call.body || c.raw || !c.route.includes('/brokers')) continue;
      let host: unknown;
      try {
        host = (JSON.parse(c.call.body.toString('utf8')) as { host?: unknown }).host;
      } catch {
        continue;
      }
      assert.ok(hostIsSafe(host), `a generated broker host must stay on loopback: ${JSON.stringify(host)}`);
    }

    const client = createHttpClient(Number(new URL(env.url).port), { maxSockets: 12, timeoutMs: 15_000 });
    const problems: string[] = [];
    const statuses = new Map<number, number>();
    const routes = new Set<string>();
    let rawCount = 0;
    const succeeded = new Map<string, number>();
    const verbose = process.env.SWITCHYARD_FUZZ_VERBOSE === '1';
    try {
      await inBatches(cases, 12, async (c) => {
        routes.add(c.route);
        // HEAD goes raw too: when node's parser refuses a request it cannot know it was a HEAD, so the answer may carry a
        // body that node's client would take for garbage.
        const viaRaw = c.raw !== undefined || c.call.method === 'HEAD' || !nodeCanSend(c.call);
        if (viaRaw) rawCount++;
        const answer = viaRaw ? await client.sendRaw(c.raw ?? rawRequestBytes(c.call)) : await client.sendHttp(c.call);
        statuses.set(answer.status, (statuses.get(answer.status) ?? 0) + 1);
        if (answer.status >= 200 && answer.status < 300) succeeded.set(c.route, (succeeded.get(c.route) ?? 0) + 1);
        if (verbose && c.who === 'admin' && c.family.endsWith('body:valid') && answer.status >= 400) {
          process.stderr.write(`# ${c.route} ${answer.status} ${answer.body.toString('utf8').slice(0, 160)} ← ${c.call.body?.toString('utf8').slice(0, 120)}\n`);
        }
        problems.push(...judge(c, answer));
      });
    } finally {
      client.close();
    }
    assert.deepEqual(problems.slice(0, 25), [], `${problems.length} problem(s); seed ${SEED}`);
    for (const op of operations) assert.ok(routes.has(`${op.method} ${op.template}`), `no case for ${op.method} ${op.template}`);

    // Still up, nothing polluted, the sentinel untouched.
    assert.equal((await env.api('GET', '/healthz', undefined, { token: null })).status, 200);
    assert.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype is untouched');
    assert.equal(({} as Record<string, unknown>).isAdmin, undefined, 'Object.prototype is untouched');
    await env.sy.shadows.drain();
    assert.deepEqual(await sentinelRows(env, sentinel.uuid), before, 'the sentinel device is unchanged');
    const still = await env.api('GET', `/api/v1/devices/${device.uuid}/shadows/config`, undefined, { token: device.token });
    assert.ok([200, 404].includes(still.status), `the fuzz device's token still works (${still.status})`);

    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const byStatus = [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}: ${n}`).join(', ');
    const neverOk = operations.map((op) => `${op.method} ${op.template}`).filter((r) => !succeeded.has(r));
    process.stderr.write(
      `# http-fuzz: ${cases.length} requests (${rawCount} written raw) over ${operations.length} operations in ${seconds} s, seed ${SEED}\n#   ${byStatus}\n` +
        `#   operations never answered 2xx: ${neverOk.length === 0 ? 'none' : neverOk.join(', ')}\n`,
    );
  });
});
